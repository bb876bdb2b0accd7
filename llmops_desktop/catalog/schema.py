"""The catalog's schema as forward migrations, read from ``catalog/migrations/``.

Step N is ``NNNN_name.sql`` (and, where data must be transformed, ``NNNN_name.py`` with
``upgrade(conn)``, run after the SQL). ``PRAGMA user_version`` holds the number of steps
applied. A database made by an older app is migrated forward on open, inside one
transaction per step; a database from a newer app is refused rather than damaged. The
catalog owns every table; no feature package is imported here.
"""

from __future__ import annotations

import importlib
import re
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources

from llmops_desktop.errors import CatalogError

MIGRATIONS_PACKAGE = "llmops_desktop.catalog.migrations"
_STEP_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.(sql|py)$")


def sql_statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, one by one (``;`` inside strings or comments is
    not a separator), without comment-only pieces."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if any(x.strip() and not x.strip().startswith("--") for x in buffer.splitlines()):
                yield buffer.strip()
            buffer = ""
    if any(x.strip() and not x.strip().startswith("--") for x in buffer.splitlines()):
        raise CatalogError(f"A schema step ends in an unfinished statement: {buffer.strip()!r}. "
                           "Reinstall LLMOps Desktop.")


@dataclass(frozen=True)
class Migration:
    """One schema step: its SQL, then its Python ``upgrade(conn)`` if it has one."""

    number: int
    name: str
    sql: str = ""
    module: str | None = None

    def __call__(self, conn: sqlite3.Connection) -> None:
        # conn.execute, never executescript: that would commit the caller's transaction.
        for statement in sql_statements(self.sql):
            conn.execute(statement)
        if self.module is not None:
            importlib.import_module(self.module).upgrade(conn)


def load_migrations(package: str = MIGRATIONS_PACKAGE) -> list[Migration]:
    """Every step in the package, in order; refuses gaps and duplicate numbers."""
    found: dict[int, dict[str, str]] = {}
    for entry in resources.files(package).iterdir():
        match = _STEP_NAME.match(entry.name)
        if match is None:
            continue
        number, name, ext = int(match[1]), match[2], match[3]
        step = found.setdefault(number, {"name": name})
        if step["name"] != name or ext in step:
            raise CatalogError(f"Schema step {number} is defined twice in {package}. "
                               "Reinstall LLMOps Desktop.")
        step[ext] = entry.read_text(encoding="utf-8") if ext == "sql" else entry.name
    if sorted(found) != list(range(1, len(found) + 1)):
        raise CatalogError(f"Schema steps in {package} are not numbered 1..N: "
                           f"{sorted(found)}. Reinstall LLMOps Desktop.")
    return [Migration(n, s["name"], s.get("sql", ""),
                      f"{package}.{n:04d}_{s['name']}" if "py" in s else None)
            for n, s in sorted(found.items())]


# Append new steps as new files; never reorder or change a released one.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = list(load_migrations())
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
