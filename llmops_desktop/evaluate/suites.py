"""Suite versions in the catalog and on disk, hashed and versioned as datasets are.

A version is imported once and never changes: its items are written in canonical form
to ``suites/<name>-v<N>-<sha12>/items.jsonl`` (hashed while written) beside a copy of
the original file. The judge's prompts and the pass thresholds are part of the version
(its metadata), so a run names exactly what it was judged and gated by.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow
from llmops_desktop.datasets.formats import detect_format, read_rows
from llmops_desktop.datasets.shapes import BadRow, RowError
from llmops_desktop.datasets.store import describe_bad_rows, find_version_row, iter_canonical
from llmops_desktop.errors import ConflictError, EmptySourceError, InvalidInputError
from llmops_desktop.evaluate.errors import SuiteBadRowsError, SuiteNotFoundError
from llmops_desktop.evaluate.layouts import detect_layout, to_item
from llmops_desktop.hashing import sha256_file
from llmops_desktop.safepath import safe_join

ITEMS_FILE = "items.jsonl"
DETECT_ROWS = 50

POINTWISE_PROMPT = (
    "You are a strict evaluator. Rate the assistant's answer to the user's request on a "
    "scale of 1 to 10 by this rubric.\n\nRubric: {rubric}\n\nRequest:\n{prompt}\n\n"
    "Answer:\n{answer}\n\nReply with one line of JSON: {{\"score\": N, \"reason\": \"...\"}}")
PAIRWISE_PROMPT = (
    "You are a strict evaluator. Two assistants answered the same request. Judge which "
    "answer is better by this rubric.\n\nRubric: {rubric}\n\nRequest:\n{prompt}\n\n"
    "Answer A:\n{answer_a}\n\nAnswer B:\n{answer_b}\n\nReply with one line of JSON: "
    "{{\"winner\": \"A\" or \"B\" or \"tie\", \"reason\": \"...\"}}")

_THRESHOLD = re.compile(r"^\s*([A-Za-z_][\w:.-]*)\s*>=\s*(?:(parent)\s*-\s*)?([0-9.]+)\s*$")


@dataclass(frozen=True)
class SuiteVersion:
    id: int
    suite_id: int
    name: str
    version: int
    path: Path
    source: str
    format: str
    layout: str
    sha256: str
    source_sha256: str
    items: int
    kinds: dict[str, int]
    metadata: dict[str, Any]
    created_at: str

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def items_path(self) -> Path:
        return self.path / ITEMS_FILE

    @property
    def thresholds(self) -> list[dict[str, Any]]:
        return list(self.metadata.get("thresholds") or [])

    @property
    def judge_prompts(self) -> dict[str, str]:
        return dict(self.metadata.get("judge_prompts") or {})

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "version": self.version, "ref": self.ref,
                "path": str(self.path), "source": self.source, "format": self.format,
                "layout": self.layout, "sha256": self.sha256,
                "source_sha256": self.source_sha256, "items": self.items, "kinds": self.kinds,
                "metadata": self.metadata, "created_at": self.created_at}

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> SuiteVersion:
        return cls(id=r["id"], suite_id=r["suite_id"], name=r["name"], version=r["version"],
                   path=Path(r["path"]), source=r["source"], format=r["format"],
                   layout=r["layout"], sha256=r["sha256"], source_sha256=r["source_sha256"],
                   items=r["items"], kinds=json.loads(r["kinds"] or "{}"),
                   metadata=json.loads(r["metadata"] or "{}"), created_at=r["created_at"])


_SELECT = """SELECT v.*, s.name AS name FROM eval_suite_versions v
             JOIN eval_suites s ON s.id = v.suite_id"""




def suites_dir(catalog: Catalog) -> Path:
    return catalog.home.root / "suites"


def list_suites(catalog: Catalog) -> list[SuiteVersion]:
    return [SuiteVersion.from_row(r) for r in catalog.rows(_SELECT + " ORDER BY s.name, v.version")]


def resolve_suite(catalog: Catalog, ref: str | int) -> SuiteVersion:
    """A version by ``name`` (the latest), ``name@N`` or its numeric id."""
    return SuiteVersion.from_row(find_version_row(
        catalog, _SELECT, "s.name", ref, lambda text: SuiteNotFoundError(
            f"No suite {text!r}. 'llmops suite list' shows the suites you have; "
            "'llmops suite import FILE --name NAME' adds one.")))


def iter_items(suite: SuiteVersion) -> Iterator[dict[str, Any]]:
    yield from iter_canonical(suite.items_path, f"The items of {suite.ref} are missing "
                              f"({suite.items_path}). Import the suite again.")


def verify_suite(suite: SuiteVersion) -> None:
    """Raise if the stored items are not what was imported (their sha256 in the metadata;
    the version's own sha256 covers the items, the judge prompts and the thresholds)."""
    if sha256_file(suite.items_path) != suite.metadata.get("items_sha256"):
        from llmops_desktop.errors import CorruptFileError

        raise CorruptFileError(f"The items of {suite.ref} changed on disk since they were "
                               "imported (sha256 differs). Import the suite again.")


def parse_thresholds(specs: Sequence[str]) -> list[dict[str, Any]]:
    """``acc>=0.5`` (at least 0.5) or ``acc>=parent-0.02`` (no worse than the parent's
    run by more than 0.02)."""
    out = []
    for text in specs:
        m = _THRESHOLD.match(text)
        if not m:
            raise InvalidInputError(f"Threshold {text!r}: write METRIC>=VALUE (acc>=0.6) or "
                                    "METRIC>=parent-DROP (acc>=parent-0.02).")
        metric, parent, value = m.group(1), m.group(2), float(m.group(3))
        out.append({"metric": metric, "max_drop": value} if parent
                   else {"metric": metric, "min": value})
    return out


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "suite"


def import_suite(catalog: Catalog, path: str | os.PathLike[str], *, name: str,
                 fmt: str | None = None, layout: str | None = None,
                 thresholds: Sequence[str] = (), judge_prompt: str | None = None,
                 pairwise_prompt: str | None = None, keep_good_rows: bool = False,
                 description: str = "") -> SuiteVersion:
    """Import a file as the next version of suite ``name``.

    Bad rows are never dropped silently: without ``keep_good_rows`` the import is refused
    with a :class:`SuiteBadRowsError` listing them by line."""
    src = Path(path).expanduser().absolute()
    if not src.is_file():
        raise InvalidInputError(f"{src} does not exist or is not a file.")
    fmt = detect_format(src, fmt)
    name = (name or "").strip()
    if not name or "@" in name or name.isdigit():
        raise InvalidInputError(f"Suite name {name!r} is not allowed: it must not be empty, "
                                "contain '@' or be a plain number.")
    rules = parse_thresholds(thresholds)
    columns: dict[str, None] = {}
    for i, raw in enumerate(read_rows(src, fmt)):
        if isinstance(raw.data, dict):
            columns.update(dict.fromkeys(raw.data))
        if i >= DETECT_ROWS:
            break
    if not columns:
        raise EmptySourceError(f"{src.name} holds no rows with named fields; nothing to import.")
    if layout is None:
        try:
            layout = detect_layout(columns)
        except RowError as exc:
            raise InvalidInputError(f"{src.name}: {exc}") from None
    prompts = {"pointwise": judge_prompt or POINTWISE_PROMPT,
               "pairwise": pairwise_prompt or PAIRWISE_PROMPT}
    staging = suites_dir(catalog) / ".staging" / uuid.uuid4().hex
    staging.mkdir(parents=True)
    try:
        bad: list[BadRow] = []
        kinds: dict[str, int] = {}
        h = hashlib.sha256()
        good = 0
        with open(staging / ITEMS_FILE, "w", encoding="utf-8", newline="\n") as out:
            for raw in read_rows(src, fmt):
                if raw.blank:
                    continue
                if raw.error is not None:
                    bad.append(BadRow(raw.line, raw.error))
                    continue
                try:
                    item = to_item(raw.data, layout)
                except (RowError, ValueError, TypeError) as exc:
                    bad.append(BadRow(raw.line, str(exc)))
                    continue
                item["line"] = raw.line
                line = json.dumps(item, ensure_ascii=False, sort_keys=True,
                                  separators=(",", ":")) + "\n"
                h.update(line.encode("utf-8"))
                out.write(line)
                good += 1
                kinds[item["kind"]] = kinds.get(item["kind"], 0) + 1
        if bad and not keep_good_rows:
            raise SuiteBadRowsError(
                f"{src.name}: {len(bad)} of {good + len(bad)} rows are not {layout} items, so "
                f"nothing was imported. {describe_bad_rows(bad)}. Fix them, or import with "
                "--keep-good-rows to import the rest and record these in the version.",
                [b.to_json() for b in bad])
        if good == 0:
            raise EmptySourceError(f"{src.name} has no usable items; nothing was imported.")
        items_sha = h.hexdigest()
        # The judge prompts and thresholds are part of what is versioned.
        h.update(json.dumps({"judge_prompts": prompts, "thresholds": rules},
                            sort_keys=True).encode())
        sha = h.hexdigest()
        source_sha = hashlib.sha256(src.read_bytes()).hexdigest()
        metadata = {"items_sha256": items_sha, "columns": list(columns), "bad_rows": [b.to_json() for b in bad],
                    "judge_prompts": prompts, "thresholds": rules}
        with catalog.transaction() as conn:
            existing = catalog.rows(_SELECT + " WHERE s.name = ? AND v.sha256 = ?", (name, sha))
            if existing:
                v = SuiteVersion.from_row(existing[0])
                raise ConflictError(f"These items are already {v.ref} (same sha256); nothing was "
                                    "imported.")
            row = conn.execute("SELECT id FROM eval_suites WHERE name = ?", (name,)).fetchone()
            suite_id = int(row[0]) if row else int(conn.execute(
                "INSERT INTO eval_suites (name, description, created_at) VALUES (?, ?, ?)",
                (name, description, utcnow())).lastrowid)
            version = conn.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM eval_suite_versions "
                                   "WHERE suite_id = ?", (suite_id,)).fetchone()[0]
            final = safe_join(suites_dir(catalog), f"{_slug(name)}-v{version}-{sha[:12]}",
                              what="suite folder")
            cur = conn.execute(
                "INSERT INTO eval_suite_versions (suite_id, version, path, source, format, layout, "
                "sha256, source_sha256, items, kinds, metadata, created_at) VALUES "
                "(?,?,?,?,?,?,?,?,?,?,?,?)",
                (suite_id, version, str(final), str(src), fmt, layout, sha, source_sha, good,
                 json.dumps(kinds), json.dumps(metadata), utcnow()))
            version_id = int(cur.lastrowid)
            catalog.audit("suite-import", details={"suite": f"{name}@{version}", "source": str(src),
                                                   "items": good, "bad_rows": len(bad),
                                                   "sha256": sha})
            shutil.copyfile(src, staging / f"source{src.suffix.lower()}")
            if final.exists():
                shutil.rmtree(final)
            os.replace(staging, final)
        return resolve_suite(catalog, version_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
