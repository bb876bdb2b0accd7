"""Deployments and their request log in the catalog.

The two tables are schema step 4 (``catalog/migrations/0004_deployments.sql``).

A deployment row is one server process: its settings (never the API key), state
(starting → running → stopped, or failed), pid and address. The request log has one row
per generation request, written in batches by :class:`~llmops_desktop.serving.recorder.
RequestRecorder`. Rows outlive the artifact: removing it sets ``artifact_id`` to NULL.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.errors import NotFoundError

DEPLOYMENT_STATES = ("starting", "running", "stopped", "failed")


@dataclass(frozen=True)
class Deployment:
    id: int
    name: str
    artifact_id: int | None
    artifact_ref: str
    engine: str
    host: str
    port: int | None
    url: str
    settings: dict[str, Any]
    state: str
    pid: int | None
    error: str | None
    created_at: str
    started_at: str | None
    stopped_at: str | None


@dataclass(frozen=True)
class RequestRecord:
    """One generation request as the server saw it. Times in milliseconds from arrival;
    ``tokens_per_s`` is completion tokens over the time the engine spent on them (queueing
    excluded, prompt processing included); ``status`` is HTTP's (499: client gone)."""

    deployment_id: int
    artifact_id: int | None
    ts: str
    endpoint: str
    model: str
    stream: bool
    status: int
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    queue_ms: float | None = None
    tokens_per_s: float | None = None
    finish_reason: str | None = None
    error: str | None = None
    response_id: str | None = None  # the ``id`` the client got (a rating names it)
    prompt_ref: str | None = None  # NAME@VERSION when a versioned prompt was served

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_REQUEST_COLUMNS = ("deployment_id", "artifact_id", "ts", "endpoint", "model", "stream",
                    "status", "error", "finish_reason", "queue_ms", "ttft_ms", "latency_ms",
                    "prompt_tokens", "completion_tokens", "tokens_per_s", "response_id",
                    "prompt_ref")


def insert_requests(conn: sqlite3.Connection, records: Iterable[RequestRecord]) -> int:
    """Append records in one transaction; returns how many."""
    rows = [tuple(int(v) if isinstance(v, bool) else v
                  for v in (getattr(r, c) for c in _REQUEST_COLUMNS)) for r in records]
    if not rows:
        return 0
    marks = ",".join("?" * len(_REQUEST_COLUMNS))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(f"INSERT INTO request_log ({','.join(_REQUEST_COLUMNS)}) "
                         f"VALUES ({marks})", rows)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(rows)


def request_log(catalog: Catalog, *, deployment_id: int | None = None,
                artifact_id: int | None = None, limit: int = 1000) -> list[RequestRecord]:
    """The newest requests first."""
    where, params = [], []
    if deployment_id is not None:
        where.append("deployment_id = ?")
        params.append(deployment_id)
    if artifact_id is not None:
        where.append("artifact_id = ?")
        params.append(artifact_id)
    sql = ("SELECT " + ",".join(_REQUEST_COLUMNS) + " FROM request_log"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC LIMIT ?")
    rows = catalog.conn.execute(sql, (*params, limit)).fetchall()
    return [RequestRecord(**{**dict(zip(_REQUEST_COLUMNS, r)), "stream": bool(r[5])})
            for r in rows]


def create_deployment(catalog: Catalog, *, name: str, artifact_id: int, artifact_ref: str,
                      engine: str, host: str, settings: dict[str, Any],
                      pid: int | None = None) -> int:
    """A new deployment row, ``starting``; ``pid`` is the server process's (default: this
    one's), so a crash before it is ready is still recognised by :func:`reconcile`."""
    with catalog.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO deployments (name, artifact_id, artifact_ref, engine, host, settings, "
            "state, pid, created_at) VALUES (?, ?, ?, ?, ?, ?, 'starting', ?, ?)",
            (name, artifact_id, artifact_ref, engine, host, json.dumps(settings),
             os.getpid() if pid is None else pid, utcnow()))
        deployment_id = int(cur.lastrowid)
        catalog.audit("serve", artifact_id=artifact_id,
                      details={"deployment_id": deployment_id, "name": name, "engine": engine,
                               "host": host})
    return deployment_id


def update_deployment(catalog: Catalog, deployment_id: int, *, state: str,
                      **values: Any) -> None:
    """Move a deployment to ``state``, setting the timestamps that go with it."""
    if state not in DEPLOYMENT_STATES:
        raise ValueError(f"unknown deployment state {state!r}")
    allowed = {"port", "url", "pid", "error"}
    if set(values) - allowed:
        raise ValueError(f"unknown deployment fields {set(values) - allowed}")
    values["state"] = state
    if state == "running":
        values["started_at"] = utcnow()
    elif state in ("stopped", "failed"):
        values["stopped_at"] = utcnow()
    sets = ", ".join(f"{k} = ?" for k in values)
    with catalog.transaction() as conn:
        conn.execute(f"UPDATE deployments SET {sets} WHERE id = ?",
                     (*values.values(), deployment_id))


def deployment(catalog: Catalog, deployment_id: int) -> Deployment:
    cur = catalog.conn.execute("SELECT * FROM deployments WHERE id = ?", (deployment_id,))
    row = cur.fetchone()
    if row is None:
        raise NotFoundError(f"No deployment #{deployment_id}.")
    data = dict(zip([d[0] for d in cur.description], row))
    return Deployment(**{**data, "settings": json.loads(data["settings"] or "{}")})


def deployments(catalog: Catalog, *, limit: int = 200) -> list[Deployment]:
    ids = [r[0] for r in catalog.conn.execute(
        "SELECT id FROM deployments ORDER BY id DESC LIMIT ?", (limit,))]
    return [deployment(catalog, i) for i in ids]


def is_server_process(pid: int | None) -> bool:
    """Whether ``pid`` is alive and one of our servers (not a recycled pid)."""
    if not pid:
        return False
    import psutil

    try:
        cmdline = psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # alive, another user's: leave it be
    text = " ".join(cmdline)
    return "llmops_desktop.serving" in text or ("llmops" in text and " serve" in text)


def reconcile(catalog: Catalog) -> list[Deployment]:
    """The deployments still serving; those the catalog calls live whose process is gone
    (killed, crashed, machine restarted) are marked failed, saying so."""
    alive = []
    ids = [r[0] for r in catalog.conn.execute(
        "SELECT id FROM deployments WHERE state IN ('starting', 'running') ORDER BY id")]
    for d in (deployment(catalog, i) for i in ids):
        if is_server_process(d.pid):
            alive.append(d)
        else:
            update_deployment(catalog, d.id, state="failed",
                              error="The server process ended without stopping cleanly "
                                    "(killed, crashed, or the machine restarted).")
    return alive
