"""The Evaluate page's matrix: artifacts × metrics of one suite version, each cell the mean
with its 95 % bootstrap interval, as the catalog stored them at the end of each run.

:func:`suite_matrix` reads the latest finished run of every artifact on the version (the
same run ``llmops eval compare`` picks), and for an artifact never evaluated here the run
it brought in a package on a suite with the same content (the version's sha256: items,
judge prompts, thresholds): ``run_id`` None, ``from_package`` the file; figures without
the items' results, so not part of paired comparisons. :class:`MatrixModel` is the thin
table model a ``QTableView`` shows. The rows have the shape of ``compare_runs``' matrix,
so the CSV and HTML exports of ``evaluate.report`` take them as they are.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from llmops_desktop.catalog import Catalog
from llmops_desktop.evaluate import runs as run_store

_Index = QModelIndex | QPersistentModelIndex
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter


def suite_matrix(catalog: Catalog, suite_version_id: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Each artifact's latest finished run on the version, then the runs artifacts brought
    in packages on the same suite content: ``(rows, metrics)``; a row is ``{"artifact",
    "run_id", "items", "metrics": {metric: summary or None}}``, plus ``from_package`` (the
    package's file name) and ``finished_at`` for a carried run, whose ``run_id`` is None."""
    from llmops_desktop.evaluate.suites import resolve_suite
    from llmops_desktop.share.evalruns import carried_on_suite

    latest: dict[int, run_store.EvalRun] = {}
    for run in run_store.runs_of(catalog, suite_version_id=suite_version_id, state="succeeded"):
        latest.setdefault(run.artifact_id, run)  # newest first
    found = [(artifact_id, {"run_id": run.id, "items": run.summary.get("items", 0),
                            "metrics": run.summary.get("metrics", {})})
             for artifact_id, run in sorted(latest.items())]
    carried = carried_on_suite(catalog, resolve_suite(catalog, suite_version_id).sha256)
    for artifact_id, run in sorted(carried.items()):
        if artifact_id in latest:
            continue  # evaluated here: that run is the one to compare
        items = int(run.get("items") or 0)
        found.append((artifact_id, {
            "run_id": None, "items": items,
            "metrics": {m: {**s, "n": items} for m, s in run["metrics"].items()
                        if s.get("ci_low") is not None and s.get("ci_high") is not None},
            "from_package": run.get("from_package") or "a package",
            "finished_at": run.get("finished_at") or ""}))
    metrics = sorted({m for _, row in found for m in row["metrics"]})
    rows = []
    for artifact_id, row in found:
        try:
            ref = catalog.artifact(artifact_id).ref
        except LookupError:
            continue  # removed from the catalog since
        rows.append({"artifact": ref, **row,
                     "metrics": {m: row["metrics"].get(m) for m in metrics}})
    return rows, metrics


def carried_note(row: dict[str, Any]) -> str:
    """Where a carried row's figures come from, for a tooltip."""
    when = f", finished {row['finished_at']}" if row.get("finished_at") else ""
    return (f"measured where it was exported: from the package {row['from_package']}{when}; "
            "its items' results stayed there, so it is not part of paired comparisons")


def format_interval(s: dict[str, Any] | None) -> str:
    """``mean [low, high]`` as a cell shows it."""
    if not s:
        return "—"
    return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


class MatrixModel(QAbstractTableModel):
    """Rows: artifacts; columns: metrics; cells: ``mean [low, high]``."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self.metrics: list[str] = []

    def set_matrix(self, rows: list[dict[str, Any]], metrics: list[str]) -> None:
        self.beginResetModel()
        self.rows, self.metrics = list(rows), list(metrics)
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt's API
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt's API
        return 0 if parent.isValid() else len(self.metrics)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, metric = self.rows[index.row()], self.metrics[index.column()]
        s = row["metrics"].get(metric)
        if role == Qt.ItemDataRole.DisplayRole:
            return format_interval(s)
        if role == Qt.ItemDataRole.ToolTipRole:
            if not s:
                return f"{row['artifact']} has no {metric} figure on this suite"
            where = (f"run #{row['run_id']}" if row["run_id"] is not None
                     else carried_note(row))
            return (f"{row['artifact']} {metric}: mean {s['mean']:.4f}, 95 % interval "
                    f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}] over {s['n']} items ({where})")
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(_RIGHT)
        if role == Qt.ItemDataRole.UserRole:
            return s
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 - Qt's API
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role not in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            return None
        if orientation == Qt.Orientation.Horizontal:
            return self.metrics[section] if section < len(self.metrics) else None
        if section >= len(self.rows):
            return None
        row = self.rows[section]
        carried = row["run_id"] is None
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"{row['items']} items, {carried_note(row)}" if carried
                    else f"run #{row['run_id']}, {row['items']} items")
        return f"{row['artifact']} (package)" if carried else row["artifact"]

    def texts(self) -> list[list[str]]:
        """Every cell as shown (tests and the tour read it)."""
        return [[format_interval(r["metrics"].get(m)) for m in self.metrics] for r in self.rows]
