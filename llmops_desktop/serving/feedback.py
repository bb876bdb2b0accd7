"""Thumbs up/down on generated replies, kept in the catalog and exported as JSONL.

The table is schema step 5 (``catalog/migrations/0005_feedback.sql``).
One row per rated reply: the reply, the conversation that led to it (system prompt and
messages), the sampling settings, and the deployment and artifact that produced it, so a
later fine-tune or evaluation can use the ratings as data. Rating the same reply again
(``reply_id``) replaces its rating; a rating of 0 takes it back (unless it brings a
correction: a corrected reply was not right, and is kept as a -1 with its correction).

Step 10 links a rating to its request row (``request_id``, found by the response id the
client got), the prompt version served (``prompt_ref``, NAME@VERSION) and where it came from
(``source``: chat for a ChatSession's, the Playground's or ``llmops chat``'s; api for
``POST /v1/feedback``; playground for rows from before step 10).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.catalog.catalog import current_user


@dataclass(frozen=True)
class Feedback:
    """A rated reply. ``messages`` is the conversation sent to the model (without the
    system prompt, which is kept apart); ``prompt`` is its last user message."""

    reply_id: str
    rating: int
    reply: str
    prompt: str = ""
    messages: list[dict[str, str]] = field(default_factory=list)
    system_prompt: str = ""
    deployment_id: int | None = None
    artifact_id: int | None = None
    artifact_ref: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    comment: str = ""
    ts: str = ""
    user: str = ""
    request_id: int | None = None
    prompt_ref: str = ""
    correction: str = ""
    source: str = "playground"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = ("reply_id", "ts", "user", "rating", "deployment_id", "artifact_id", "artifact_ref",
            "system_prompt", "messages", "prompt", "reply", "params", "ttft_ms",
            "tokens_per_s", "comment", "request_id", "prompt_ref", "correction", "source")


def rate(catalog: Catalog, feedback: Feedback) -> None:
    """Store (or replace) the rating of a reply; ``rating == 0`` removes it."""
    if feedback.rating not in (-1, 0, 1):
        raise ValueError("rating must be -1, 0 or 1")
    if feedback.rating == 0 and feedback.correction:
        feedback = replace(feedback, rating=-1)
    with catalog.transaction() as conn:
        if feedback.rating == 0:
            conn.execute("DELETE FROM feedback WHERE reply_id = ?", (feedback.reply_id,))
            return
        row = {**feedback.to_json(), "ts": utcnow(), "user": current_user(),
               "messages": json.dumps(feedback.messages, ensure_ascii=False),
               "params": json.dumps(feedback.params)}
        conn.execute(
            f"INSERT INTO feedback ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))}) "
            "ON CONFLICT(reply_id) DO UPDATE SET rating = excluded.rating, ts = excluded.ts, "
            "user = excluded.user, comment = excluded.comment, correction = excluded.correction, "
            "request_id = COALESCE(excluded.request_id, feedback.request_id)",
            tuple(row[c] for c in _COLUMNS))


def feedback_rows(catalog: Catalog, *, artifact_id: int | None = None, since: str | None = None,
                  prompt: str | None = None) -> list[Feedback]:
    """Rated replies, oldest first; ``since`` an ISO date or time (UTC), ``prompt`` a prompt's
    NAME (every version) or NAME@VERSION."""
    rows = feedback_records(catalog, artifact_id=artifact_id, since=since, prompt=prompt)
    return [f for _, f in rows]


def feedback_records(catalog: Catalog, *, artifact_id: int | None = None,
                     since: str | None = None, prompt: str | None = None
                     ) -> list[tuple[int, Feedback]]:
    """(row id, rating) pairs, oldest first; the filters of :func:`feedback_rows`."""
    where: list[str] = []
    params: list[Any] = []
    if artifact_id is not None:
        where.append("artifact_id = ?")
        params.append(artifact_id)
    if since:
        where.append("ts >= ?")
        params.append(since)
    if prompt:
        where.append("(prompt_ref = ? OR prompt_ref LIKE ?)" if "@" not in prompt
                     else "prompt_ref = ?")
        params += [prompt, prompt + "@%"] if "@" not in prompt else [prompt]
    sql = (f"SELECT id, {','.join(_COLUMNS)} FROM feedback"
           + (" WHERE " + " AND ".join(where) if where else ""))
    rows = catalog.conn.execute(sql + " ORDER BY id", params).fetchall()
    out = []
    for row_id, *r in rows:
        data = dict(zip(_COLUMNS, r))
        data["messages"] = json.loads(data["messages"] or "[]")
        data["params"] = json.loads(data["params"] or "{}")
        out.append((int(row_id), Feedback(**data)))
    return out


def link_request(catalog: Catalog, response_id: str, feedback: Feedback) -> Feedback:
    """``feedback`` linked to the request row of the reply the server sent as
    ``response_id`` (and to the prompt version it served), when the log holds it."""
    row = find_request(catalog, response_id) if response_id else None
    if row is None:
        return feedback
    return replace(feedback, request_id=row["id"],
                   prompt_ref=feedback.prompt_ref or row["prompt_ref"] or "")


def find_request(catalog: Catalog, response_id: str) -> dict[str, Any] | None:
    """The request log row of the reply the client got as ``response_id``."""
    cur = catalog.conn.execute(
        "SELECT id, deployment_id, artifact_id, prompt_ref, model, endpoint, ts FROM request_log "
        "WHERE response_id = ? ORDER BY id DESC LIMIT 1", (response_id,))
    row = cur.fetchone()
    return None if row is None else dict(zip([d[0] for d in cur.description], row))


def iter_jsonl(rows: list[Feedback]) -> Iterator[str]:
    """One JSON object per rated reply, in the shape fine-tuning tools read: the chat
    ``messages`` (system, the conversation, the rated reply as the assistant's turn),
    ``label`` (``true`` for a thumbs up), and the provenance."""
    for f in rows:
        messages = ([{"role": "system", "content": f.system_prompt}] if f.system_prompt else [])
        messages += [*f.messages, {"role": "assistant", "content": f.reply}]
        yield json.dumps({
            "messages": messages, "label": f.rating > 0, "rating": f.rating,
            "prompt": f.prompt, "completion": f.reply, "artifact_id": f.artifact_id,
            "artifact": f.artifact_ref, "deployment_id": f.deployment_id, "params": f.params,
            "ttft_ms": f.ttft_ms, "tokens_per_s": f.tokens_per_s, "user": f.user, "ts": f.ts,
            "comment": f.comment, "correction": f.correction, "prompt_ref": f.prompt_ref,
            "request_id": f.request_id, "source": f.source,
        }, ensure_ascii=False)


def export_jsonl(catalog: Catalog, dest: Path | IO[str], *,
                 artifact_id: int | None = None) -> int:
    """Write the feedback as JSONL to a path (atomically) or an open text stream."""
    rows = feedback_rows(catalog, artifact_id=artifact_id)
    if not isinstance(dest, Path):
        for line in iter_jsonl(rows):
            dest.write(line + "\n")
        return len(rows)
    tmp = dest.with_name(f".{dest.name}.part")
    with open(tmp, "w", encoding="utf-8") as fh:
        for line in iter_jsonl(rows):
            fh.write(line + "\n")
    tmp.replace(dest)
    return len(rows)
