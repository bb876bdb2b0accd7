"""Step 2, after its SQL: fill the content digest of artifacts made before the step."""

from __future__ import annotations

import sqlite3

from llmops_desktop.hashing import content_digest


def upgrade(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT id FROM artifacts").fetchall()
    for (artifact_id,) in rows:
        files = conn.execute(
            "SELECT relpath, sha256 FROM artifact_files WHERE artifact_id = ?", (artifact_id,)
        ).fetchall()
        conn.execute("UPDATE artifacts SET content_digest = ? WHERE id = ?",
                     (content_digest(files), artifact_id))
