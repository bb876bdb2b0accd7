"""An adapter's before/after comparison: its base and it on the suites its fine-tune named.

A fine-tune that names suites (``--suites``, the Fine-tune page's "Evaluate on suites")
evaluates the adapter and its base when it ends and attaches one evaluation row per metric
to the adapter (:mod:`llmops_desktop.finetune.after_eval`): the adapter's mean with its
95 % interval, the base's, the difference with its paired-bootstrap interval, the test's p
and whether the difference is significant. This table shows those rows, newest suite run
first; it is empty (with a line saying how to get one) for any other artifact.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog, Evaluation

HEADERS = ["Suite", "Metric", "Base", "Adapter", "Difference", "Verdict"]
BETTER, WORSE = QColor("#2e7d32"), QColor("#c62828")
EMPTY_TEXT = ("No before/after comparison. A fine-tune that names evaluation suites (the "
              "Fine-tune page's \"Evaluate on suites\", or 'llmops finetune … --suites NAME') "
              "evaluates the adapter and its base when it ends and shows the result here.")


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{float(value):.3f}"


def with_interval(summary: Any, value: Any = None) -> str:
    """``0.417 [0.167, 0.667]`` from a summary (mean, ci_low, ci_high), or the bare value."""
    if isinstance(summary, dict) and "mean" in summary:
        text = _number(summary["mean"])
        if summary.get("ci_low") is not None and summary.get("ci_high") is not None:
            text += f" [{_number(summary['ci_low'])}, {_number(summary['ci_high'])}]"
        return text
    return _number(value)


def verdict(params: dict[str, Any]) -> tuple[str, QColor | None]:
    """What the difference means, in words, and its colour (None: no clear difference)."""
    diff, p = params.get("difference"), params.get("p")
    p_text = f" (p = {p:.3g})" if isinstance(p, (int, float)) else ""
    if diff is None:
        return "base not measured", None
    if params.get("significant") and diff > 0:
        return "better" + p_text, BETTER
    if params.get("significant") and diff < 0:
        return "worse" + p_text, WORSE
    return "no clear difference" + p_text, None


def comparison_rows(catalog: Catalog, artifact_id: int) -> list[Evaluation]:
    """The adapter's rows attached after its fine-tune, newest first."""
    rows = [e for e in catalog.evaluations(artifact_id) if e.params.get("after") == "finetune"]
    return sorted(rows, key=lambda e: (-e.id))


class ComparisonView(QWidget):
    """The before/after table of one adapter (see the module's text)."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(HEADERS)
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.header().setStretchLastSection(True)
        self.note = QLabel()
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.note)
        layout.addWidget(self.tree, 1)
        self.set_artifact(None)

    def set_artifact(self, artifact_id: int | None) -> None:
        self.tree.clear()
        rows = comparison_rows(self.catalog, artifact_id) if artifact_id is not None else []
        self.tree.setVisible(bool(rows))
        if not rows:
            self.note.setText(EMPTY_TEXT)
            return
        base = rows[0].params.get("base", "the base")
        self.note.setText(f"Measured when the fine-tune ended: {base} (base) against this "
                          "adapter on the same items. Values are means with their 95 % "
                          "intervals; the difference's interval is a paired bootstrap.")
        seen: set[tuple[str, str]] = set()
        for e in rows:
            if (e.dataset, e.metric) in seen:  # an older run of the same suite and metric
                continue
            seen.add((e.dataset, e.metric))
            self.tree.addTopLevelItem(self._item(e))
        self.tree.sortItems(0, Qt.SortOrder.AscendingOrder)

    @staticmethod
    def _item(e: Evaluation) -> QTreeWidgetItem:
        p = e.params
        diff = p.get("difference")
        diff_text = "—" if diff is None else f"{diff:+.3f}"
        interval = p.get("difference_interval")
        if isinstance(interval, list) and len(interval) == 2 and diff is not None:
            diff_text += f" [{interval[0]:+.3f}, {interval[1]:+.3f}]"
        words, color = verdict(p)
        item = QTreeWidgetItem([e.dataset, e.metric,
                                with_interval(p.get("base_interval"), p.get("base_value")),
                                with_interval(p.get("interval"), e.value), diff_text, words])
        item.setToolTip(5, f"{p.get('items', '?')} items; evaluation runs #{p.get('base_run_id')}"
                           f" (base) and #{p.get('run_id')} (adapter)")
        if color is not None:
            item.setForeground(5, QBrush(color))
        return item

    def texts(self) -> list[list[str]]:
        """Every row's cells as shown (for tests and the tour)."""
        return [[self.tree.topLevelItem(i).text(c) for c in range(len(HEADERS))]
                for i in range(self.tree.topLevelItemCount())]
