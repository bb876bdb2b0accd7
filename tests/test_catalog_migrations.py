"""Schema steps are files the catalog owns, and they make the schema the app always made.

``catalog_schema_history.json`` records, for every released version, the tables and indexes
that the app wrote before its migrations became files; a catalog built from that record
stands for a user's old catalog.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.catalog.schema import MIGRATIONS, SCHEMA_VERSION, migrate, sql_statements
from llmops_desktop.hashing import content_digest

HISTORY = json.loads((Path(__file__).parent / "catalog_schema_history.json").read_text())
RECORDED = {int(v): rows for v, rows in HISTORY["versions"].items()}


def _normal(sql: str | None) -> str | None:
    return None if sql is None else " ".join(sql.split()).replace("( ", "(").replace(" )", ")")


def _schema(conn: sqlite3.Connection) -> list[tuple]:
    rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                        "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name").fetchall()
    return [(t, n, tbl, _normal(sql)) for t, n, tbl, sql in rows]


def _recorded(version: int) -> list[tuple]:
    return [(t, n, tbl, _normal(sql)) for t, n, tbl, sql in RECORDED[version]]


def _old_catalog(path: Path, version: int) -> None:
    """A catalog as the app at ``version`` left it, with one artifact in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    rows = sorted(RECORDED[version], key=lambda r: r[0] != "table")  # tables, then indexes
    for _type, _name, _table, sql in rows:
        conn.execute(sql)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO models (id, name, created_at) VALUES (1, 'old', '2025-01-01')")
    conn.execute("INSERT INTO artifacts (id, model_id, version, kind, state, storage, path, "
                 "size_bytes, created_at) VALUES (1, 1, 1, 'gguf', 'ready', 'copy', '/m', 3, "
                 "'2025-01-01')")
    conn.execute("INSERT INTO artifact_files VALUES (1, 'm.gguf', 3, ?)", ("ab" * 32,))
    conn.close()


def test_the_recorded_history_covers_every_step() -> None:
    assert sorted(RECORDED) == list(range(1, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_each_step_makes_the_schema_the_app_always_made(tmp_path, version) -> None:
    conn = sqlite3.connect(tmp_path / "catalog.db", isolation_level=None)
    migrate(conn, target=version)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == version
    assert _schema(conn) == _recorded(version)


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
def test_a_catalog_from_any_older_app_opens_and_moves_forward(home, version) -> None:
    _old_catalog(home.catalog_path, version)
    with Catalog.open(home) as catalog:
        assert catalog.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert _schema(catalog.conn) == _recorded(SCHEMA_VERSION)
        old = catalog.artifact(1)
        assert old.model_name == "old" and old.kind == "gguf"
        if version < 2:  # step 2 fills the digest of what was there before it
            assert old.content_digest == content_digest([("m.gguf", "ab" * 32)])
        assert catalog.set_tags(1, add=["migrated"]) == ("migrated",)


def test_steps_are_numbered_files_in_the_catalog_package() -> None:
    folder = Path(__file__).resolve().parents[1] / "llmops_desktop" / "catalog" / "migrations"
    numbers = sorted({int(p.name[:4]) for p in folder.glob("[0-9][0-9][0-9][0-9]_*.sql")})
    assert numbers == list(range(1, len(MIGRATIONS) + 1))
    assert [m.number for m in MIGRATIONS] == numbers


def test_a_semicolon_inside_a_string_or_comment_does_not_split_a_statement() -> None:
    script = ("-- a comment; with a semicolon\n"
              "CREATE TABLE t (x TEXT DEFAULT 'a;b');\n"
              "INSERT INTO t VALUES ('c;d');\n"
              "-- trailing comment\n")
    statements = list(sql_statements(script))
    assert len(statements) == 2
    conn = sqlite3.connect(":memory:")
    for s in statements:
        conn.execute(s)
    assert conn.execute("SELECT x FROM t").fetchone() == ("c;d",)
