"""The catalog's schema as a list of forward migrations.

``PRAGMA user_version`` holds the number of migrations applied. A database
made by an older app is migrated forward on open, inside one transaction per
step; a database from a newer app is refused rather than damaged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from llmops_desktop.errors import CatalogError


def _run_script(conn: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated statements inside the caller's transaction.

    (``executescript`` would commit the open transaction first.)"""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _v1(conn: sqlite3.Connection) -> None:
    _run_script(conn, 
        """
        CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            description TEXT NOT NULL DEFAULT '',
            license TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL
        );
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,
            params TEXT NOT NULL DEFAULT '{}',
            state TEXT NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued','running','succeeded','failed','cancelled','interrupted')),
            pid INTEGER,
            log_path TEXT,
            progress REAL,
            message TEXT NOT NULL DEFAULT '',
            result TEXT,
            error TEXT,
            created_at TEXT NOT NULL,
            started_at TEXT,
            finished_at TEXT
        );
        CREATE TABLE artifacts (
            id INTEGER PRIMARY KEY,
            model_id INTEGER NOT NULL REFERENCES models(id),
            version INTEGER NOT NULL,
            kind TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending','ready','failed')),
            storage TEXT NOT NULL CHECK (storage IN ('copy','hardlink','reference')),
            path TEXT NOT NULL,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            parent_id INTEGER REFERENCES artifacts(id),
            job_id INTEGER REFERENCES jobs(id),
            params TEXT NOT NULL DEFAULT '{}',
            metadata TEXT NOT NULL DEFAULT '{}',
            source TEXT NOT NULL DEFAULT '',
            created_at TEXT NOT NULL,
            UNIQUE (model_id, version)
        );
        CREATE TABLE artifact_files (
            artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
            relpath TEXT NOT NULL,
            size INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            PRIMARY KEY (artifact_id, relpath)
        );
        CREATE TABLE audit_log (
            id INTEGER PRIMARY KEY,
            ts TEXT NOT NULL,
            user TEXT NOT NULL,
            host TEXT NOT NULL,
            action TEXT NOT NULL,
            artifact_id INTEGER,
            job_id INTEGER,
            details TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX artifacts_parent ON artifacts(parent_id);
        CREATE INDEX jobs_state ON jobs(state);
        """
    )


def _v2(conn: sqlite3.Connection) -> None:
    """Tags, a content digest for duplicate detection, and the job's child start time
    (so a recycled pid is never mistaken for our job)."""
    _run_script(conn, 
        """
        CREATE TABLE tags (
            artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
            tag TEXT NOT NULL,
            PRIMARY KEY (artifact_id, tag)
        );
        ALTER TABLE artifacts ADD COLUMN content_digest TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN pid_started REAL;
        CREATE INDEX artifacts_digest ON artifacts(content_digest);
        CREATE INDEX audit_artifact ON audit_log(artifact_id);
        """
    )
    # Fill the digest of artifacts made before v2 from their recorded files.
    from llmops_desktop.hashing import content_digest

    rows = conn.execute("SELECT id FROM artifacts").fetchall()
    for (artifact_id,) in rows:
        files = conn.execute(
            "SELECT relpath, sha256 FROM artifact_files WHERE artifact_id = ?", (artifact_id,)
        ).fetchall()
        conn.execute("UPDATE artifacts SET content_digest = ? WHERE id = ?",
                     (content_digest(files), artifact_id))


def _v3(conn: sqlite3.Connection) -> None:
    """Evaluation results (perplexity and the like), kept apart from the immutable artifact."""
    _run_script(conn, """
        CREATE TABLE evaluations (
            id INTEGER PRIMARY KEY,
            artifact_id INTEGER NOT NULL REFERENCES artifacts(id) ON DELETE CASCADE,
            metric TEXT NOT NULL,
            value REAL NOT NULL,
            dataset TEXT NOT NULL DEFAULT '',
            dataset_sha256 TEXT NOT NULL DEFAULT '',
            params TEXT NOT NULL DEFAULT '{}',
            job_id INTEGER REFERENCES jobs(id),
            created_at TEXT NOT NULL
        );
        CREATE INDEX evaluations_artifact ON evaluations(artifact_id)
    """)


def _v4(conn: sqlite3.Connection) -> None:
    """Deployments and their request log (the serving layer owns the statements)."""
    from llmops_desktop.serving.store import migration_deployments

    migration_deployments(conn)


def _v5(conn: sqlite3.Connection) -> None:
    """Ratings of generated replies (the playground's thumbs up/down)."""
    from llmops_desktop.serving.feedback import migration_feedback

    migration_feedback(conn)


def _v6(conn: sqlite3.Connection) -> None:
    """Datasets for fine-tuning and their hashed versions (the datasets package owns them)."""
    from llmops_desktop.datasets.store import migration_datasets

    migration_datasets(conn)


def _v7(conn: sqlite3.Connection) -> None:
    """Monitor history: downsampled GPU, system and deployment series (the monitor owns them)."""
    from llmops_desktop.monitor.history import migration_monitor

    migration_monitor(conn)


def _v8(conn: sqlite3.Connection) -> None:
    """Governance status of artifacts: draft, approved, deprecated (the share package owns it)."""
    from llmops_desktop.share.governance import migration_status

    migration_status(conn)


# Append new steps at the end; never reorder or change a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations the database lacks, each step in its own transaction."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        raise CatalogError(
            f"This catalog was written by a newer LLMOps Desktop (schema {current}, this app "
            f"knows {SCHEMA_VERSION}). Upgrade the app, or point LLMOPS_HOME at another folder.")
    for version in range(current, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version](conn)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return target
