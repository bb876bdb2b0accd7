"""Ratings become data: a dataset version of SFT or preference rows made from feedback.

``sft``: every liked reply and every correction, as a chat row (system prompt, the
conversation, the reply as the assistant's turn). ``preference``: for each conversation
(the same system prompt and messages), every liked reply against every disliked one, and
every correction against the reply it corrects, and every blind-arena pick that is not a
tie (the preferred reply against the other; :mod:`llmops_desktop.evaluate.arena`); rows are
``{"prompt": [messages…], "chosen": …, "rejected": …}`` (the ``preference`` shape). The
version's metadata records the feedback rows it came from (``from_feedback.ids``), the
arena battles (``from_feedback.arena_ids``) and the filters used.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.serving.feedback import Feedback, feedback_records

KINDS = ("sft", "preference")


@dataclass(frozen=True)
class FeedbackRows:
    rows: list[dict[str, Any]]
    feedback_ids: list[int]  # the feedback rows the data came from
    battle_ids: list[int] = field(default_factory=list)  # the arena battles it came from


def _conversation(f: Feedback) -> list[dict[str, str]]:
    system = [{"role": "system", "content": f.system_prompt}] if f.system_prompt else []
    return system + [{"role": m["role"], "content": m["content"]} for m in f.messages]


def _key(f: Feedback) -> str:
    return json.dumps(_conversation(f), sort_keys=True, ensure_ascii=False)


def sft_rows(records: list[tuple[int, Feedback]]) -> FeedbackRows:
    rows, used = [], []
    for row_id, f in records:
        conv = _conversation(f)
        if not conv:
            continue  # a rating whose conversation the server no longer knew
        taken = False
        if f.rating > 0 and f.reply.strip() and not f.correction:
            rows.append({"messages": conv + [{"role": "assistant", "content": f.reply}]})
            taken = True
        if f.correction.strip():
            rows.append({"messages": conv + [{"role": "assistant", "content": f.correction}]})
            taken = True
        if taken:
            used.append(row_id)
    return FeedbackRows(rows, used)


def preference_rows(records: list[tuple[int, Feedback]]) -> FeedbackRows:
    groups: dict[str, dict[str, list[tuple[int, Feedback]]]] = {}
    rows: list[dict[str, Any]] = []
    used: set[int] = set()
    seen: set[tuple[str, str, str]] = set()

    def add(key: str, prompt: list[dict[str, str]], chosen: str, rejected: str,
            ids: tuple[int, ...]) -> None:
        if not chosen.strip() or not rejected.strip() or chosen == rejected:
            return
        if (key, chosen, rejected) in seen:
            used.update(ids)
            return
        seen.add((key, chosen, rejected))
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
        used.update(ids)

    for row_id, f in records:
        if not f.messages:
            continue
        key = _key(f)
        if f.correction.strip() and f.reply.strip():
            add(key, _conversation(f), f.correction, f.reply, (row_id,))
        g = groups.setdefault(key, {"liked": [], "disliked": []})
        if f.rating > 0 and not f.correction:
            g["liked"].append((row_id, f))
        elif f.rating < 0:
            g["disliked"].append((row_id, f))
    for key, g in groups.items():
        for good_id, good in g["liked"]:
            for bad_id, bad in g["disliked"]:
                add(key, _conversation(good), good.reply, bad.reply, (good_id, bad_id))
    return FeedbackRows(rows, sorted(used))


def build_rows(catalog: Catalog, *, kind: str = "sft", since: str | None = None,
               prompt: str | None = None, artifact_id: int | None = None) -> FeedbackRows:
    if kind not in KINDS:
        raise InvalidInputError(f"--kind must be one of {', '.join(KINDS)}.")
    records = feedback_records(catalog, since=since, prompt=prompt, artifact_id=artifact_id)
    if kind == "sft":
        return sft_rows(records)
    built = preference_rows(records)
    if prompt:  # an arena battle serves no prompt version
        return built
    from llmops_desktop.evaluate.arena import preference_rows as arena_rows

    rows, battle_ids = arena_rows(catalog, since=since, artifact_id=artifact_id)
    return FeedbackRows(built.rows + rows, built.feedback_ids, battle_ids)


def feedback_to_dataset(catalog: Catalog, *, name: str, kind: str = "sft",
                        since: str | None = None, prompt: str | None = None,
                        artifact_id: int | None = None, validation: float = 0.0,
                        seed: int = 0) -> Any:
    """Write the rows as the next version of dataset ``name``; returns the DatasetVersion."""
    from llmops_desktop.datasets.store import import_dataset, resolve_version

    built = build_rows(catalog, kind=kind, since=since, prompt=prompt, artifact_id=artifact_id)
    if not built.rows:
        what = ("liked replies or corrections" if kind == "sft" else
                "pairs (a liked and a disliked reply to the same conversation, a correction, "
                "or an arena pick)")
        raise InvalidInputError(f"The feedback{' since ' + since if since else ''}"
                                f"{' of prompt ' + prompt if prompt else ''} holds no {what}; "
                                "nothing to make a dataset from.")
    staging = catalog.home.datasets_dir / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging) as tmp:
        path = f"{tmp}/feedback-{kind}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for row in built.rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        version = import_dataset(catalog, path, name=name, fmt="jsonl",
                                 shape="chat" if kind == "sft" else "preference",
                                 validation=validation, seed=seed,
                                 description=f"{kind} rows from rated replies")
    provenance = {"kind": kind, "ids": built.feedback_ids, "arena_ids": built.battle_ids,
                  "since": since, "prompt": prompt, "artifact_id": artifact_id}
    with catalog.transaction() as conn:
        conn.execute("UPDATE dataset_versions SET metadata = ?, source = ? WHERE id = ?",
                     (json.dumps({**version.metadata, "from_feedback": provenance}),
                      f"feedback:{kind}", version.id))
        catalog.audit("feedback-to-dataset", details={"dataset": version.ref, "kind": kind,
                                                      "rows": version.rows,
                                                      "feedback_rows": len(built.feedback_ids),
                                                      "arena_battles": len(built.battle_ids)})
    return resolve_version(catalog, version.id)


# ---- llmops feedback to-dataset ----------------------------------------------------------

def add_to_dataset_arguments(parser: Any) -> None:
    parser.add_argument("--name", help="to-dataset: the dataset that gets the new version")
    parser.add_argument("--kind", choices=KINDS, default="sft",
                        help="to-dataset: sft (liked replies and corrections) or preference "
                             "(liked against disliked replies, corrections against originals, "
                             "arena picks)")
    parser.add_argument("--since", metavar="DATE",
                        help="to-dataset: only ratings from this date (UTC, YYYY-MM-DD[THH:MM])")
    parser.add_argument("--prompt", metavar="NAME[@VERSION]",
                        help="to-dataset: only replies served with this prompt")


def cmd_to_dataset(args: Any, catalog: Catalog, artifact_id: int | None) -> int:
    from llmops_desktop.cli import common as cli

    if not args.name:
        raise InvalidInputError("feedback to-dataset needs --name NAME (the dataset that gets "
                                "the new version).")
    version = feedback_to_dataset(catalog, name=args.name, kind=args.kind, since=args.since,
                                  prompt=args.prompt, artifact_id=artifact_id)
    if args.json:
        cli.print_json(version.to_json())
    else:
        used = len(version.metadata["from_feedback"]["ids"])
        picks = len(version.metadata["from_feedback"].get("arena_ids", []))
        print(f"{version.ref}: {version.rows} {args.kind} rows from {used} rated repl"
              f"{'ies' if used != 1 else 'y'}"
              f"{f' and {picks} arena pick' + ('s' if picks != 1 else '') if picks else ''}"
              f" (sha256 {version.sha256[:12]})")
    return 0
