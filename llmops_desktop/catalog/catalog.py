"""The local catalog: models, artifacts and their files, jobs, tags, audit log.

A store with explicit state transitions (as MLflow's registry): an artifact
enters the catalog READY, with every file's size and sha256, in one
transaction, and only after its files are verified and renamed into place.
SQLite in WAL mode lets job children write while the window reads.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmops_desktop.catalog.records import (
    Artifact,
    ArtifactFile,
    ArtifactState,
    AuditEntry,
    Evaluation,
    Job,
    JobState,
    Model,
)
from llmops_desktop.catalog.schema import migrate
from llmops_desktop.errors import (
    ArtifactNotFoundError,
    CatalogError,
    DuplicateArtifactError,
    HasDependentsError,
    InvalidInputError,
    JobNotFoundError,
)
from llmops_desktop.hashing import content_digest
from llmops_desktop.paths import Home

_ARTIFACT_SELECT = """
    SELECT a.*, m.name AS model_name, m.description AS description, m.license AS license
    FROM artifacts a JOIN models m ON m.id = a.model_id
"""


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def validate_model_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidInputError("A model name cannot be empty.")
    if "@" in name or "\n" in name or name.isdigit():
        raise InvalidInputError(
            f"Model name {name!r} is not allowed: it must not contain '@' or a newline "
            "and must not be a plain number (those name artifacts on the command line).")
    return name


class Catalog:
    """One connection to ``catalog.db``; open one per thread or process."""

    def __init__(self, home: Home) -> None:
        self.home = home
        try:
            conn = sqlite3.connect(home.catalog_path, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 30000")
            migrate(conn)
        except sqlite3.DatabaseError as exc:
            raise CatalogError(
                f"The catalog at {home.catalog_path} cannot be opened ({exc}). Restore it from "
                "a backup or move it aside; the files under models/ are untouched.") from exc
        self.conn = conn
        self._db: Any = None

    @property
    def db(self) -> Any:
        """The same connection as a ``sqlite_utils.Database``, for introspection and ad-hoc
        queries. Loaded on first use: importing sqlite-utils costs ~0.3 s of start-up,
        so the hot paths below use the connection directly."""
        if self._db is None:
            import sqlite_utils

            self._db = sqlite_utils.Database(self.conn)
        return self._db

    @classmethod
    def open(cls, home: Home | str | os.PathLike[str] | None = None) -> Catalog:
        return cls(home if isinstance(home, Home) else Home.resolve(home))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: everything inside lands together or not at all."""
        if self.conn.in_transaction:  # nested: join the outer one
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """The rows of a query as dicts by column name (for the features' own queries)."""
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    # ---- models ---------------------------------------------------------------------------

    def models(self) -> list[Model]:
        return [Model(**r) for r in self.rows("SELECT * FROM models ORDER BY name")]

    def _model_id(self, name: str, description: str, license: str) -> int:
        row = self.conn.execute("SELECT id, description, license FROM models WHERE name = ?",
                                (name,)).fetchone()
        if row:
            if (description and not row[1]) or (license and not row[2]):
                self.conn.execute(
                    "UPDATE models SET description = COALESCE(NULLIF(description, ''), ?), "
                    "license = COALESCE(NULLIF(license, ''), ?) WHERE id = ?",
                    (description, license, row[0]))
            return int(row[0])
        cur = self.conn.execute(
            "INSERT INTO models (name, description, license, created_at) VALUES (?, ?, ?, ?)",
            (name, description, license, utcnow()))
        return int(cur.lastrowid)

    # ---- artifacts ------------------------------------------------------------------------

    def add_artifact(
        self, *, model_name: str, kind: str, storage: str, path: Path,
        files: Sequence[ArtifactFile], parent_id: int | None = None, job_id: int | None = None,
        params: dict[str, Any] | None = None, metadata: dict[str, Any] | None = None,
        source: str = "", description: str = "", license: str = "",
        tags: Iterable[str] = (), action: str = "import",
    ) -> Artifact:
        """Register a verified artifact as READY, with its files, tags and an audit entry.

        Call inside :meth:`transaction` together with the rename that puts the files in
        place, so a failure on either side leaves nothing behind.
        """
        model_name = validate_model_name(model_name)
        digest = content_digest((f.relpath, f.sha256) for f in files)
        with self.transaction() as conn:
            existing = self.find_by_digest(digest)
            if existing is not None:
                raise DuplicateArtifactError(
                    f"These files are already in the catalog as {existing.ref} (artifact "
                    f"#{existing.id}). Use that artifact, or remove it first with "
                    f"'llmops rm {existing.id}'.", existing_id=existing.id)
            model_id = self._model_id(model_name, description, license)
            version = conn.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM artifacts WHERE model_id = ?",
                (model_id,)).fetchone()[0]
            cur = conn.execute(
                """INSERT INTO artifacts (model_id, version, kind, state, storage, path,
                   size_bytes, parent_id, job_id, params, metadata, source, created_at,
                   content_digest) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (model_id, version, kind, ArtifactState.READY.value, storage, str(path),
                 sum(f.size for f in files), parent_id, job_id, json.dumps(params or {}),
                 json.dumps(metadata or {}), source, utcnow(), digest))
            artifact_id = int(cur.lastrowid)
            conn.executemany(
                "INSERT INTO artifact_files (artifact_id, relpath, size, sha256) VALUES (?,?,?,?)",
                [(artifact_id, f.relpath, f.size, f.sha256) for f in files])
            conn.executemany("INSERT OR IGNORE INTO tags (artifact_id, tag) VALUES (?, ?)",
                             [(artifact_id, t) for t in tags])
            self.audit(action, artifact_id=artifact_id, job_id=job_id,
                       details={"source": source, "storage": storage, "files": len(files)})
        return self.artifact(artifact_id)

    def artifact(self, artifact_id: int) -> Artifact:
        rows = self.rows(_ARTIFACT_SELECT + " WHERE a.id = ?", (artifact_id,))
        if not rows:
            raise ArtifactNotFoundError(
                f"No artifact #{artifact_id}. 'llmops list' shows the artifacts you have.")
        return Artifact.from_row(rows[0], self.tags(artifact_id))

    def artifacts(self, *, state: ArtifactState | None = ArtifactState.READY) -> list[Artifact]:
        where = " WHERE a.state = ?" if state else ""
        rows = self.rows(_ARTIFACT_SELECT + where + " ORDER BY m.name, a.version",
                          (state.value,) if state else ())
        all_tags: dict[int, list[str]] = {}
        for r in self.rows("SELECT artifact_id, tag FROM tags ORDER BY tag"):
            all_tags.setdefault(r["artifact_id"], []).append(r["tag"])
        return [Artifact.from_row(r, tuple(all_tags.get(r["id"], ()))) for r in rows]

    def resolve(self, ref: str | int) -> Artifact:
        """An artifact by id (``3``), by model name (its latest version) or ``name@version``."""
        text = str(ref).strip()
        if text.isdigit():
            return self.artifact(int(text))
        name, _, version = text.partition("@")
        if version:
            if not version.isdigit():
                raise InvalidInputError(f"{text!r}: the part after '@' must be a version number.")
            rows = self.rows(_ARTIFACT_SELECT + " WHERE m.name = ? AND a.version = ?",
                              (name, int(version)))
        else:
            rows = self.rows(_ARTIFACT_SELECT + " WHERE m.name = ? ORDER BY a.version DESC "
                              "LIMIT 1", (name,))
        if not rows:
            raise ArtifactNotFoundError(
                f"No artifact named {text!r}. 'llmops list' shows the artifacts you have.")
        return Artifact.from_row(rows[0], self.tags(rows[0]["id"]))

    def find_by_digest(self, digest: str) -> Artifact | None:
        rows = self.rows(_ARTIFACT_SELECT + " WHERE a.content_digest = ? AND a.state = 'ready'",
                          (digest,))
        return Artifact.from_row(rows[0]) if rows else None

    def files(self, artifact_id: int) -> list[ArtifactFile]:
        return [ArtifactFile(**r) for r in self.rows(
            "SELECT relpath, size, sha256 FROM artifact_files WHERE artifact_id = ? "
            "ORDER BY relpath", (artifact_id,))]

    def children(self, artifact_id: int) -> list[Artifact]:
        rows = self.rows(_ARTIFACT_SELECT + " WHERE a.parent_id = ? ORDER BY a.id",
                          (artifact_id,))
        return [Artifact.from_row(r) for r in rows]

    def ancestors(self, artifact_id: int) -> list[Artifact]:
        """Parent, grandparent, ... up to the root (nearest first)."""
        out: list[Artifact] = []
        seen = {artifact_id}
        current = self.artifact(artifact_id)
        while current.parent_id is not None and current.parent_id not in seen:
            seen.add(current.parent_id)
            current = self.artifact(current.parent_id)
            out.append(current)
        return out

    def descendants(self, artifact_id: int) -> list[Artifact]:
        """Every artifact derived from this one, depth first."""
        out: list[Artifact] = []
        stack = [artifact_id]
        while stack:
            for child in reversed(self.children(stack.pop())):
                out.append(child)
                stack.append(child.id)
        return out

    def remove_artifact(self, artifact_id: int, *, cascade: bool = False) -> list[Artifact]:
        """Remove an artifact (and with ``cascade`` everything derived from it).

        Rows go first, in one transaction; then the files, except for artifacts that
        only reference files in place, whose originals are never touched.
        """
        target = self.artifact(artifact_id)
        with self.transaction() as conn:
            dependents = self.descendants(artifact_id)
            if dependents and not cascade:
                names = ", ".join(f"#{d.id} {d.ref}" for d in dependents[:5])
                raise HasDependentsError(
                    f"{target.ref} cannot be removed: {len(dependents)} artifact(s) derive "
                    f"from it ({names}). Remove those first, or pass --cascade to remove "
                    "them all.")
            doomed = list(reversed(dependents)) + [target]
            for a in doomed:
                conn.execute("DELETE FROM tags WHERE artifact_id = ?", (a.id,))
                conn.execute("DELETE FROM evaluations WHERE artifact_id = ?", (a.id,))
                conn.execute("DELETE FROM artifact_files WHERE artifact_id = ?", (a.id,))
                conn.execute("DELETE FROM artifacts WHERE id = ?", (a.id,))
                self.audit("remove", artifact_id=a.id,
                           details={"ref": a.ref, "path": str(a.path), "cascade": cascade})
            conn.execute("DELETE FROM models WHERE id NOT IN (SELECT model_id FROM artifacts)")
        for a in doomed:
            self._delete_store_path(a)
        return doomed

    def _delete_store_path(self, artifact: Artifact) -> None:
        if artifact.storage == "reference":
            return
        path = artifact.path
        try:
            path.relative_to(self.home.models_dir)
        except ValueError:  # never delete outside our store
            return
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    # ---- evaluations ------------------------------------------------------------------------

    def add_evaluation(self, artifact_id: int, metric: str, value: float, *, dataset: str = "",
                       dataset_sha256: str = "", params: dict[str, Any] | None = None,
                       job_id: int | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO evaluations (artifact_id, metric, value, dataset, dataset_sha256, "
                "params, job_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (artifact_id, metric, float(value), dataset, dataset_sha256,
                 json.dumps(params or {}), job_id, utcnow()))

    def evaluations(self, artifact_id: int) -> list[Evaluation]:
        rows = self.rows("SELECT * FROM evaluations WHERE artifact_id = ? ORDER BY id",
                          (artifact_id,))
        return [Evaluation(**{**r, "params": json.loads(r["params"] or "{}")}) for r in rows]

    # ---- tags -----------------------------------------------------------------------------

    def tags(self, artifact_id: int) -> tuple[str, ...]:
        return tuple(r[0] for r in self.conn.execute(
            "SELECT tag FROM tags WHERE artifact_id = ? ORDER BY tag", (artifact_id,)))

    def set_tags(self, artifact_id: int, add: Iterable[str] = (),
                 remove: Iterable[str] = ()) -> tuple[str, ...]:
        self.artifact(artifact_id)
        add, remove = [t.strip() for t in add if t.strip()], [t.strip() for t in remove]
        with self.transaction() as conn:
            conn.executemany("INSERT OR IGNORE INTO tags (artifact_id, tag) VALUES (?, ?)",
                             [(artifact_id, t) for t in add])
            conn.executemany("DELETE FROM tags WHERE artifact_id = ? AND tag = ?",
                             [(artifact_id, t) for t in remove])
            self.audit("tag", artifact_id=artifact_id, details={"add": add, "remove": remove})
        return self.tags(artifact_id)

    # ---- jobs -----------------------------------------------------------------------------

    def create_job(self, kind: str, params: dict[str, Any]) -> Job:
        with self.transaction() as conn:
            cur = conn.execute("INSERT INTO jobs (kind, params, state, created_at) "
                               "VALUES (?, ?, 'queued', ?)", (kind, json.dumps(params), utcnow()))
            job_id = int(cur.lastrowid)
            log_path = self.home.logs_dir / f"job-{job_id}.log"
            conn.execute("UPDATE jobs SET log_path = ? WHERE id = ?", (str(log_path), job_id))
        return self.job(job_id)

    def job(self, job_id: int) -> Job:
        rows = self.rows("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise JobNotFoundError(f"No job #{job_id}. 'llmops jobs' lists the jobs.")
        return Job.from_row(rows[0])

    def jobs(self, *, states: Iterable[JobState] | None = None, limit: int = 200) -> list[Job]:
        if states is not None:
            values = [s.value for s in states]
            marks = ",".join("?" * len(values))
            rows = self.rows(f"SELECT * FROM jobs WHERE state IN ({marks}) "
                              "ORDER BY id DESC LIMIT ?", (*values, limit))
        else:
            rows = self.rows("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        return [Job.from_row(r) for r in rows]

    _JOB_FIELDS = frozenset({"state", "pid", "pid_started", "progress", "message", "result",
                             "error", "started_at", "finished_at"})

    def update_job(self, job_id: int, **values: Any) -> None:
        unknown = set(values) - self._JOB_FIELDS
        if unknown:
            raise ValueError(f"unknown job fields {unknown}")
        if isinstance(values.get("state"), JobState):
            values["state"] = values["state"].value
        if "result" in values and values["result"] is not None:
            values["result"] = json.dumps(values["result"])
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as conn:
            conn.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values.values(), job_id))

    def finish_job(self, job_id: int, state: JobState, *, error: str | None = None,
                   result: dict[str, Any] | None = None, only_if_unfinished: bool = True) -> bool:
        """Move a job to a final state; False if it had already finished."""
        with self.transaction() as conn:
            where = " AND state IN ('queued','running')" if only_if_unfinished else ""
            cur = conn.execute(
                f"UPDATE jobs SET state = ?, error = ?, result = COALESCE(?, result), "
                f"finished_at = ? WHERE id = ?{where}",
                (state.value, error, json.dumps(result) if result is not None else None,
                 utcnow(), job_id))
            changed = cur.rowcount > 0
            if changed:
                self.audit(f"job-{state.value}", job_id=job_id,
                           details={"error": error} if error else {})
        return changed

    # ---- audit ----------------------------------------------------------------------------

    def audit(self, action: str, *, artifact_id: int | None = None, job_id: int | None = None,
              details: dict[str, Any] | None = None) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO audit_log (ts, user, host, action, artifact_id, job_id, details) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (utcnow(), current_user(), socket.gethostname(), action, artifact_id, job_id,
                 json.dumps(details or {})))

    def audit_entries(self, *, artifact_id: int | None = None, limit: int = 500) -> list[AuditEntry]:
        if artifact_id is None:
            rows = self.rows("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.rows("SELECT * FROM audit_log WHERE artifact_id = ? ORDER BY id DESC "
                              "LIMIT ?", (artifact_id, limit))
        return [AuditEntry(**{**r, "details": json.loads(r["details"] or "{}")}) for r in rows]

    # ---- housekeeping ---------------------------------------------------------------------

    def store_paths(self) -> set[Path]:
        return {Path(r[0]) for r in self.conn.execute("SELECT path FROM artifacts")}

    def counts(self) -> dict[str, int]:
        return {t: self.db[t].count for t in ("models", "artifacts", "artifact_files", "jobs")}
