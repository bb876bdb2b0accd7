"""Monitor history in the catalog: one row per series per interval, so charts outlive a restart.

The tables are schema step 7 (``catalog/migrations/0007_monitor_history.sql``).
``monitor_series`` names each series once (with the label of what it measured, say the
deployment's name, which stays readable after the deployment is gone);
``monitor_history`` holds, per series and per interval (10 s), the mean, minimum and
maximum of the samples that fell in it. :class:`Downsampler` folds samples into those
intervals in memory and hands back finished rows; the sampler writes them in one
transaction every ~30 s, never per sample. :func:`prune` drops rows older than the
retention setting.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from llmops_desktop.monitor.series import metric_of

INTERVAL_S = 10.0


@dataclass(frozen=True)
class HistoryRow:
    series: str
    ts: float  # the interval's start, Unix seconds
    mean: float
    min: float
    max: float
    n: int


class Downsampler:
    """Folds samples into fixed intervals; :meth:`add` returns the intervals it closed."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._open: dict[str, list[float]] = {}  # series -> [start, sum, min, max, n]

    def add(self, t: float, values: dict[str, float]) -> list[HistoryRow]:
        start = math.floor(t / self.interval_s) * self.interval_s
        done: list[HistoryRow] = []
        for key, value in values.items():
            if value is None or math.isnan(value) or not metric_of(key).persist:
                continue
            acc = self._open.get(key)
            if acc is not None and acc[0] != start:
                done.append(_row(key, acc))
                acc = None
            if acc is None:
                self._open[key] = [start, value, value, value, 1]
            else:
                acc[1] += value
                acc[2] = min(acc[2], value)
                acc[3] = max(acc[3], value)
                acc[4] += 1
        # a series that stopped reporting: close its interval once time has moved on
        for key in [k for k, acc in self._open.items() if acc[0] < start and k not in values]:
            done.append(_row(key, self._open.pop(key)))
        return done

    def drain(self) -> list[HistoryRow]:
        """Every interval still open (at shutdown: a partial last interval is kept)."""
        rows = [_row(k, acc) for k, acc in self._open.items()]
        self._open.clear()
        return rows


def _row(key: str, acc: list[float]) -> HistoryRow:
    return HistoryRow(key, acc[0], acc[1] / acc[4], acc[2], acc[3], int(acc[4]))


def write_rows(conn: sqlite3.Connection, rows: Iterable[HistoryRow],
               labels: dict[str, str] | None = None) -> int:
    """Append rows in one transaction (a row for the same series and interval replaces
    the older one); ``labels`` names series for the ``monitor_series`` table."""
    rows = list(rows)
    if not rows:
        return 0
    labels = labels or {}
    conn.execute("BEGIN IMMEDIATE")
    try:
        ids = _series_ids(conn, {r.series for r in rows}, labels)
        conn.executemany(
            "INSERT OR REPLACE INTO monitor_history (series_id, ts, mean, min, max, n) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [(ids[r.series], r.ts, r.mean, r.min, r.max, r.n) for r in rows])
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return len(rows)


def _series_ids(conn: sqlite3.Connection, names: set[str], labels: dict[str, str]
                ) -> dict[str, int]:
    ids = {}
    for name in names:
        label = labels.get(name, "")
        row = conn.execute("SELECT id, label FROM monitor_series WHERE name = ?",
                           (name,)).fetchone()
        if row is None:
            cur = conn.execute("INSERT INTO monitor_series (name, label, unit) VALUES (?, ?, ?)",
                               (name, label, metric_of(name).unit))
            ids[name] = int(cur.lastrowid)
        else:
            ids[name] = int(row[0])
            if label and label != row[1]:
                conn.execute("UPDATE monitor_series SET label = ? WHERE id = ?", (label, row[0]))
    return ids


def read_history(conn: sqlite3.Connection, t0: float, t1: float,
                 names: Iterable[str] | None = None, prefix: str = ""
                 ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{series: (interval midpoints, means)}`` for intervals starting in [t0, t1]."""
    sql = ("SELECT s.name, h.ts, h.mean FROM monitor_history h JOIN monitor_series s "
           "ON s.id = h.series_id WHERE h.ts >= ? AND h.ts <= ?")
    params: list[object] = [t0 - INTERVAL_S, t1]
    if names is not None:
        names = list(names)
        if not names:
            return {}
        sql += f" AND s.name IN ({','.join('?' * len(names))})"
        params += names
    if prefix:
        sql += " AND s.name LIKE ? ESCAPE '\\'"
        params.append(prefix.replace("_", "\\_").replace("%", "\\%") + "%")
    sql += " ORDER BY s.name, h.ts"
    grouped: dict[str, tuple[list[float], list[float]]] = {}
    for name, ts, mean in conn.execute(sql, params):
        t, v = grouped.setdefault(name, ([], []))
        t.append(ts + INTERVAL_S / 2)
        v.append(mean)
    return {k: (np.asarray(t), np.asarray(v)) for k, (t, v) in grouped.items()}


def series_labels(conn: sqlite3.Connection) -> dict[str, str]:
    return {name: label for name, label in conn.execute(
        "SELECT name, label FROM monitor_series")}


def history_span(conn: sqlite3.Connection) -> tuple[float, float] | None:
    row = conn.execute("SELECT MIN(ts), MAX(ts) FROM monitor_history").fetchone()
    if row is None or row[0] is None:
        return None
    return float(row[0]), float(row[1]) + INTERVAL_S


def prune(conn: sqlite3.Connection, before: float) -> int:
    """Delete history older than ``before`` (Unix s), and series left without any."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        deleted = 0
        for (series_id,) in conn.execute("SELECT id FROM monitor_series").fetchall():
            cur = conn.execute("DELETE FROM monitor_history WHERE series_id = ? AND ts < ?",
                               (series_id, before))
            deleted += cur.rowcount
        conn.execute("DELETE FROM monitor_series WHERE id NOT IN "
                     "(SELECT DISTINCT series_id FROM monitor_history)")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return deleted
