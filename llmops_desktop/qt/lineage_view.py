"""The lineage timeline of the Models page's details: base → adapter → merge → quantized.

From the shown artifact's root ancestor down through it to everything made from it
(``artifacts.parent_id``), each step under the one it was made from, siblings in the order
they were made. Each node says what step it is (base, adapter, DPO adapter, merge, a
quantization and its type, an adapter's GGUF) and carries its key evaluation figures: the
latest finished evaluation run per suite (:mod:`llmops_desktop.evaluate.runs`; each metric's
mean with its 95 % interval) and any stored perplexity. A click (or Enter) on another node
opens that artifact.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.qt.formatting import local_time

HEADERS = ["Artifact", "Step", "Created", "Evaluation"]
METRICS_PER_SUITE = 2  # the first metrics of a run shown on its node (all in the tooltip)


def step_name(a: Artifact) -> str:
    """What this artifact is in its lineage, in words."""
    if a.kind == "lora":
        return "DPO adapter" if "dpo" in a.tags else "adapter"
    if a.metadata.get("format") == "lora-gguf":
        return "adapter GGUF"
    if (a.source or "").startswith("merge:"):
        return "merge"
    target = a.params.get("target") or a.metadata.get("quantization")
    if a.parent_id is not None and target:
        return f"quantized {target}"
    if a.parent_id is None:
        return "base"
    return a.kind


def _figure(summary: dict[str, Any], interval: bool) -> str:
    text = f"{summary['mean']:.3f}"
    if interval and summary.get("ci_low") is not None and summary.get("ci_high") is not None:
        text += f" [{summary['ci_low']:.3f}, {summary['ci_high']:.3f}]"
    return text


def evaluation_figures(catalog: Catalog, artifact_id: int, suite_refs: dict[int, str], *,
                       short: bool = False) -> list[str]:
    """Key figures of one artifact: the latest finished run per suite (each metric's mean
    and 95 % interval; ``short``: the first metrics' means), then stored perplexity."""
    from llmops_desktop.evaluate.runs import runs_of
    from llmops_desktop.evaluate.suites import resolve_suite

    out: list[str] = []
    seen: set[int] = set()
    for run in runs_of(catalog, artifact_id=artifact_id, state="succeeded"):  # newest first
        if run.suite_version_id in seen:
            continue
        seen.add(run.suite_version_id)
        if run.suite_version_id not in suite_refs:
            try:
                suite_refs[run.suite_version_id] = resolve_suite(catalog, run.suite_version_id).ref
            except Exception:  # noqa: BLE001 - a removed suite
                suite_refs[run.suite_version_id] = f"suite #{run.suite_version_id}"
        metrics = (run.summary or {}).get("metrics") or {}
        parts = [f"{name} {_figure(s, not short)}" for name, s in metrics.items()
                 if isinstance(s, dict) and isinstance(s.get("mean"), (int, float))]
        parts = parts[:METRICS_PER_SUITE] if short else parts
        if parts:
            out.append(f"{suite_refs[run.suite_version_id]}: " + ", ".join(parts))
    for ev in catalog.evaluations(artifact_id):
        if ev.metric == "perplexity":
            out.append(f"perplexity {ev.value:.3f} on {ev.dataset or 'held-out text'}")
    return out


class LineageView(QTreeWidget):
    """The timeline of one artifact's lineage (see the module's text)."""

    sig_artifact_activated = Signal(int)
    """The user clicked another artifact of the lineage (its id)."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.current_id: int | None = None
        self.setHeaderLabels(HEADERS)
        self.setAlternatingRowColors(True)
        self.setUniformRowHeights(True)
        self.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.header().setStretchLastSection(True)
        self.setToolTip("How this model came to be and what was made from it; click a step "
                        "to open it")
        self.itemClicked.connect(self._on_item)
        self.itemActivated.connect(self._on_item)

    def set_artifact(self, artifact: Artifact | None) -> None:
        self.clear()
        self.current_id = artifact.id if artifact is not None else None
        if artifact is None:
            return
        refs: dict[int, str] = {}
        parent: QTreeWidgetItem | None = None
        for ancestor in reversed(self.catalog.ancestors(artifact.id)):
            item = self._item(ancestor, refs)
            self._attach(parent, item)
            parent = item
        me = self._item(artifact, refs)
        self._attach(parent, me)
        stack = [(artifact.id, me)]
        while stack:
            artifact_id, node = stack.pop()
            children = sorted(self.catalog.children(artifact_id),
                              key=lambda c: (c.created_at, c.id))
            for child in children:
                item = self._item(child, refs)
                node.addChild(item)
                stack.append((child.id, item))
        self.expandAll()
        self.setCurrentItem(me)

    def _attach(self, parent: QTreeWidgetItem | None, item: QTreeWidgetItem) -> None:
        if parent is None:
            self.addTopLevelItem(item)
        else:
            parent.addChild(item)

    def _item(self, a: Artifact, refs: dict[int, str]) -> QTreeWidgetItem:
        figures = evaluation_figures(self.catalog, a.id, refs)
        short = evaluation_figures(self.catalog, a.id, refs, short=True)
        item = QTreeWidgetItem([f"#{a.id} {a.ref}", step_name(a), local_time(a.created_at),
                                "; ".join(short) or "—"])
        item.setData(0, Qt.ItemDataRole.UserRole, a.id)
        item.setToolTip(3, "\n".join(figures) or "Not evaluated yet ('llmops eval')")
        item.setToolTip(0, f"{a.kind} artifact; click to open it")
        if a.id == self.current_id:
            font = item.font(0)
            font.setBold(True)
            item.setFont(0, font)
        return item

    def _on_item(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        artifact_id = item.data(0, Qt.ItemDataRole.UserRole)
        if isinstance(artifact_id, int) and artifact_id != self.current_id:
            self.sig_artifact_activated.emit(artifact_id)

    def rows(self) -> list[tuple[int, str, str, str]]:
        """(depth, artifact text, step, evaluation text) of every node, depth first."""
        out: list[tuple[int, str, str, str]] = []

        def walk(item: QTreeWidgetItem, depth: int) -> None:
            out.append((depth, item.text(0), item.text(1), item.text(3)))
            for i in range(item.childCount()):
                walk(item.child(i), depth + 1)

        for i in range(self.topLevelItemCount()):
            walk(self.topLevelItem(i), 0)
        return out
