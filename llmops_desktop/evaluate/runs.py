"""Evaluation runs and every item's result in the catalog.

A run is one artifact over one suite version with one set of parameters (its
``params_key``); a run that did not finish is picked up again by the next job with the
same key, which skips the items already stored (resume). A finished run carries a
summary: each metric's mean with a 95 % bootstrap interval.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.evaluate.errors import EvalRunNotFoundError
from llmops_desktop.evaluate.stats import summarize


@dataclass(frozen=True)
class EvalRun:
    id: int
    suite_version_id: int
    artifact_id: int
    job_id: int | None
    state: str
    params_key: str
    params: dict[str, Any]
    items_total: int
    summary: dict[str, Any]
    created_at: str
    finished_at: str | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> EvalRun:
        return cls(id=r["id"], suite_version_id=r["suite_version_id"],
                   artifact_id=r["artifact_id"], job_id=r["job_id"], state=r["state"],
                   params_key=r["params_key"], params=json.loads(r["params"] or "{}"),
                   items_total=r["items_total"], summary=json.loads(r["summary"] or "{}"),
                   created_at=r["created_at"], finished_at=r["finished_at"])


@dataclass(frozen=True)
class ItemResult:
    item_index: int
    kind: str
    prompt: str
    output: str
    scores: dict[str, float]
    details: dict[str, Any]
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)




def params_key(suite_version_id: int, artifact_id: int, params: dict[str, Any]) -> str:
    text = json.dumps({"suite": suite_version_id, "artifact": artifact_id, **params},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def open_run(catalog: Catalog, suite_version_id: int, artifact_id: int, params: dict[str, Any],
             items_total: int, job_id: int | None) -> tuple[EvalRun, set[int]]:
    """The unfinished run with the same key (and the items it has), or a new run."""
    key = params_key(suite_version_id, artifact_id, params)
    with catalog.transaction() as conn:
        rows = catalog.rows("SELECT * FROM eval_runs WHERE params_key = ? AND state != "
                     "'succeeded' ORDER BY id DESC LIMIT 1", (key,))
        if rows:
            run_id = rows[0]["id"]
            conn.execute("UPDATE eval_runs SET state = 'running', job_id = ? WHERE id = ?",
                         (job_id, run_id))
        else:
            run_id = int(conn.execute(
                "INSERT INTO eval_runs (suite_version_id, artifact_id, job_id, state, params_key, "
                "params, items_total, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (suite_version_id, artifact_id, job_id, "running", key, json.dumps(params),
                 items_total, utcnow())).lastrowid)
    done = {int(r[0]) for r in catalog.conn.execute(
        "SELECT item_index FROM eval_results WHERE run_id = ?", (run_id,))}
    return get_run(catalog, run_id), done


def add_results(catalog: Catalog, run_id: int, results: list[ItemResult]) -> None:
    with catalog.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO eval_results (run_id, item_index, kind, prompt, output, scores, "
            "details, seconds) VALUES (?,?,?,?,?,?,?,?)",
            [(run_id, r.item_index, r.kind, r.prompt, r.output, json.dumps(r.scores),
              json.dumps(r.details), r.seconds) for r in results])


def results(catalog: Catalog, run_id: int) -> list[ItemResult]:
    return [ItemResult(item_index=r["item_index"], kind=r["kind"], prompt=r["prompt"],
                       output=r["output"], scores=json.loads(r["scores"]),
                       details=json.loads(r["details"]), seconds=r["seconds"])
            for r in catalog.rows("SELECT * FROM eval_results WHERE run_id = ? "
                           "ORDER BY item_index", (run_id,))]


def summarize_run(items: list[ItemResult], extra: dict[str, float] | None = None) -> dict[str, Any]:
    by_metric: dict[str, list[float]] = {}
    for r in items:
        for name, value in r.scores.items():
            if value is not None:
                by_metric.setdefault(name, []).append(float(value))
    metrics = {name: summarize(values) for name, values in sorted(by_metric.items())}
    return {"metrics": metrics, "items": len(items), "extra": dict(extra or {}),
            "seconds": sum(r.seconds for r in items)}


def finish_run(catalog: Catalog, run_id: int, state: str, summary: dict[str, Any]) -> EvalRun:
    with catalog.transaction() as conn:
        conn.execute("UPDATE eval_runs SET state = ?, summary = ?, finished_at = ? WHERE id = ?",
                     (state, json.dumps(summary), utcnow(), run_id))
    return get_run(catalog, run_id)


def get_run(catalog: Catalog, run_id: int) -> EvalRun:
    rows = catalog.rows("SELECT * FROM eval_runs WHERE id = ?", (run_id,))
    if not rows:
        raise EvalRunNotFoundError(f"No evaluation run #{run_id}.")
    return EvalRun.from_row(rows[0])


def runs_of(catalog: Catalog, *, artifact_id: int | None = None,
            suite_version_id: int | None = None, state: str | None = None) -> list[EvalRun]:
    """Runs, newest first."""
    where, params = [], []
    for col, value in (("artifact_id", artifact_id), ("suite_version_id", suite_version_id),
                       ("state", state)):
        if value is not None:
            where.append(f"{col} = ?")
            params.append(value)
    sql = "SELECT * FROM eval_runs" + (" WHERE " + " AND ".join(where) if where else "")
    return [EvalRun.from_row(r) for r in catalog.rows(sql + " ORDER BY id DESC", tuple(params))]


def latest_run(catalog: Catalog, artifact_id: int, suite_version_id: int) -> EvalRun:
    found = runs_of(catalog, artifact_id=artifact_id, suite_version_id=suite_version_id,
                    state="succeeded")
    if not found:
        a = catalog.artifact(artifact_id)
        raise EvalRunNotFoundError(f"{a.ref} has no finished run on that suite version; run "
                                   f"'llmops eval {a.ref} --suite NAME' first.")
    return found[0]
