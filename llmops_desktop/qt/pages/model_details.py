"""The details pane of the Models page: overview, files with hashes, the lineage timeline,
variants, an adapter's before/after comparison, history."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QTabWidget,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.errors import NotFoundError
from llmops_desktop.qt.comparison_view import ComparisonView, comparison_rows
from llmops_desktop.qt.formatting import human_count, human_size, local_time
from llmops_desktop.qt.lineage_view import LineageView
from llmops_desktop.qt.share_widgets import StatusBox
from llmops_desktop.qt.variants_view import VariantsView, format_perplexity
from llmops_desktop.share.evalruns import artifact_eval_runs, run_text, suite_ref

# Metadata keys shown first, with friendly labels; the rest follow as they are.
_META_LABELS = {
    "architecture": "Architecture", "parameters": "Parameters", "context_length": "Context length",
    "dtype": "Weights dtype", "quantization": "Quantization", "file_type": "File type",
    "has_chat_template": "Chat template", "vocab_size": "Vocabulary", "hidden_size": "Hidden size",
    "num_layers": "Layers", "format": "Format", "base_model": "Base model",
}
# How the artifact was made (its params), shown in this order with these labels.
_PARAM_LABELS = {
    "target": "Made as", "method": "Method", "from_quantization": "Made from",
    "via": "Via", "threads": "Threads", "llama_cpp": "llama.cpp", "llama_cpp_python":
    "llama-cpp-python", "converter": "GGUF converter",
}
# How the artifact's files are kept, in words (its ``storage``; the import's ``mode`` says
# the same and is not shown again).
_STORAGE_TEXT = {"copy": "a copy in the store", "move": "moved into the store",
                 "reference": "referenced in place (the originals are not copied)"}
# Facts the overview already shows from the artifact's own fields.
_SHOWN_ELSEWHERE = {"license", "name", "description", "mode"}


class ElidedLabel(QLabel):
    """One line of text elided in the middle to the label's width, the whole in a tooltip
    (a long path never pushes the pane wider, nor is it cut at the end)."""

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.full_text = ""
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.set_full_text(text)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self.setToolTip(text)
        self._elide()

    def _elide(self) -> None:
        self.setText(self.fontMetrics().elidedText(
            self.full_text, Qt.TextElideMode.ElideMiddle, max(self.width(), 40)))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._elide()


def _meta_text(key: str, value: Any) -> str:
    if key == "parameters" and isinstance(value, (int, float)):
        return f"{human_count(value)} ({int(value):,})"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class DetailsPane(QWidget):
    """Shows one artifact; empty when nothing is selected."""

    sig_artifact_activated = Signal(int)
    """The user opened another artifact from the lineage or the variants (artifact id)."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.artifact: Artifact | None = None
        self.title = QLabel()
        font = self.title.font()
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        self.title.setFont(font)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.subtitle = QLabel()
        self.subtitle.setWordWrap(True)
        self.status_box = StatusBox(catalog)  # governance status (with a comment), Export…
        # The shortest way to a reply: the Models page gives these their actions.
        self.serve_button = QToolButton()
        self.chat_button = QToolButton()
        for button in (self.serve_button, self.chat_button):
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.serve_button)
        buttons.addWidget(self.chat_button)
        buttons.addStretch(1)
        self.tabs = QTabWidget()
        self.overview = QWidget()
        self.form = QFormLayout(self.overview)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.overview)
        self.files_table = self._tree(["File", "Size", "SHA-256"])
        self.lineage = LineageView(catalog)
        self.lineage.sig_artifact_activated.connect(self.sig_artifact_activated)
        self.comparison = ComparisonView(catalog)
        self.history = self._tree(["When", "Action", "User", "Details"])
        self.variants = VariantsView(catalog)
        self.variants.sig_artifact_activated.connect(self.sig_artifact_activated)
        self.tabs.addTab(scroll, "Overview")
        self.tabs.addTab(self.files_table, "Files")
        self.lineage_tab = self.tabs.addTab(self.lineage, "Lineage")
        self.tabs.setTabToolTip(self.lineage_tab, "Base → adapter → merge → quantized: each "
                                "step with its evaluation figures")
        self.variants_tab = self.tabs.addTab(self.variants, "Variants")
        self.tabs.setTabToolTip(self.variants_tab, "This model and its quantized variants: size, "
                                "bits per weight, perplexity, and a size-vs-perplexity chart")
        self.comparison_tab = self.tabs.addTab(self.comparison, "Before/after")
        self.tabs.setTabToolTip(self.comparison_tab, "An adapter against its base on the "
                                "evaluation suites its fine-tune named")
        self.tabs.addTab(self.history, "History")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.subtitle)
        layout.addLayout(buttons)
        layout.addWidget(self.status_box)
        layout.addWidget(self.tabs, 1)
        self.show_artifact(None)

    @staticmethod
    def _tree(headers: list[str]) -> QTreeWidget:
        tree = QTreeWidget()
        tree.setHeaderLabels(headers)
        tree.setRootIsDecorated(False)
        tree.setAlternatingRowColors(True)
        tree.setUniformRowHeights(True)
        tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        tree.header().setStretchLastSection(True)
        return tree

    def show_artifact(self, artifact_id: int | None) -> None:
        """Fill the pane for ``artifact_id`` (None or a removed one: an empty pane)."""
        self.artifact = None
        if artifact_id is not None:
            try:
                self.artifact = self.catalog.artifact(artifact_id)
            except NotFoundError:
                self.artifact = None
        a = self.artifact
        self.status_box.set_artifact(a.id if a is not None else None)
        self.tabs.setEnabled(a is not None)
        if a is None:
            self.title.setText("No model selected")
            self.subtitle.setText("Select a model in the table to see its details.")
            for tree in (self.files_table, self.history):
                tree.clear()
            self._fill_form([])
            self.lineage.set_artifact(None)
            self.variants.set_artifact(None)
            self.comparison.set_artifact(None)
            return
        self.title.setText(a.display_name)
        self.subtitle.setText(a.description or f"{a.kind.upper()} artifact #{a.id}")
        self._fill_overview(a)
        self._fill_files(a)
        self.lineage.set_artifact(a)
        self.variants.set_artifact(a.id)
        self.comparison.set_artifact(a.id)
        self.tabs.setTabVisible(self.comparison_tab, a.kind == "lora"
                                or bool(comparison_rows(self.catalog, a.id)))
        self._fill_history(a)

    def refresh(self) -> None:
        """Re-read the shown artifact (its variants or evaluations may have changed)."""
        self.show_artifact(self.artifact.id if self.artifact is not None else None)

    def show_variants(self) -> None:
        self.tabs.setCurrentIndex(self.variants_tab)

    # ---- tabs -----------------------------------------------------------------------------

    def _fill_form(self, rows: list[tuple[str, str]]) -> None:
        while self.form.rowCount():
            self.form.removeRow(0)
        for label, value in rows:
            if label in ("Path", "Source"):  # one line, elided in the middle
                field: QLabel = ElidedLabel(value)
            else:
                field = QLabel(value)
                field.setWordWrap(True)
                field.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.form.addRow(f"{label}:", field)

    def overview_rows(self) -> list[tuple[str, str]]:
        """(label, full text) of every row of the Overview tab."""
        out = []
        for row in range(self.form.rowCount()):
            label = self.form.itemAt(row, QFormLayout.ItemRole.LabelRole).widget()
            field = self.form.itemAt(row, QFormLayout.ItemRole.FieldRole).widget()
            assert isinstance(label, QLabel) and isinstance(field, QLabel)
            text = field.full_text if isinstance(field, ElidedLabel) else field.text()
            out.append((label.text().rstrip(":"), text))
        return out

    def _fill_overview(self, a: Artifact) -> None:
        license_text = a.license or str(a.metadata.get("license") or "")
        rows = [("Reference", a.ref), ("Kind", a.kind),
                ("Stored as", _STORAGE_TEXT.get(a.storage, a.storage)),
                ("Path", str(a.path)), ("Size", f"{human_size(a.size_bytes)} "
                                                 f"({a.size_bytes:,} bytes)"),
                ("Created", local_time(a.created_at)), ("Source", a.source or "—"),
                ("License", license_text or "—"), ("Tags", ", ".join(a.tags) or "—")]
        if a.parent_id is not None:
            try:
                rows.append(("Parent", f"#{a.parent_id} {self.catalog.artifact(a.parent_id).ref}"))
            except NotFoundError:
                rows.append(("Parent", f"#{a.parent_id} (removed)"))
        if a.job_id is not None:
            rows.append(("Made by job", f"#{a.job_id}"))
        params = {k: v for k, v in a.params.items() if k not in _SHOWN_ELSEWHERE}
        for key, label in _PARAM_LABELS.items():
            if params.get(key) not in (None, ""):
                rows.append((label, _meta_text(key, params.pop(key))))
        for key in sorted(params):
            rows.append((key.replace("_", " ").capitalize(), _meta_text(key, params[key])))
        for ev in self.catalog.evaluations(a.id):
            if ev.metric == "perplexity":
                how = [f"{ev.params['tokens']:,} tokens" if "tokens" in ev.params else "",
                       f"windows of {ev.params['n_ctx']}" if "n_ctx" in ev.params else ""]
                how_text = ", ".join(h for h in how if h)
                rows.append(("Perplexity", f"{format_perplexity(ev.value)} on "
                             f"{ev.dataset or 'held-out text'}"
                             + (f" ({how_text})" if how_text else "")))
        rows += [(f"Evaluated on {suite_ref(run)}" + (" (package)" if run.get("from_package")
                                                      else ""), run_text(run, with_suite=False))
                 for run in artifact_eval_runs(self.catalog, a.id)]
        meta = {k: v for k, v in a.metadata.items() if k not in _SHOWN_ELSEWHERE}
        for key, label in _META_LABELS.items():
            if key in meta:
                rows.append((label, _meta_text(key, meta.pop(key))))
        for key in sorted(meta):
            rows.append((key.replace("_", " ").capitalize(), _meta_text(key, meta[key])))
        self._fill_form(rows)

    def _fill_files(self, a: Artifact) -> None:
        self.files_table.clear()
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        for f in self.catalog.files(a.id):
            item = QTreeWidgetItem([f.relpath, human_size(f.size), f.sha256])
            item.setToolTip(1, f"{f.size:,} bytes")
            item.setFont(2, mono)
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.files_table.addTopLevelItem(item)

    def file_hashes(self) -> dict[str, str]:
        """relpath -> sha256 as shown in the Files tab."""
        out = {}
        for i in range(self.files_table.topLevelItemCount()):
            item = self.files_table.topLevelItem(i)
            out[item.text(0)] = item.text(2)
        return out

    def _fill_history(self, a: Artifact) -> None:
        self.history.clear()
        for entry in self.catalog.audit_entries(artifact_id=a.id, limit=100):
            details = ", ".join(f"{k}={v}" for k, v in entry.details.items())
            self.history.addTopLevelItem(QTreeWidgetItem(
                [local_time(entry.ts), entry.action, f"{entry.user}@{entry.host}", details]))

    def lineage_texts(self) -> list[str]:
        """Every artifact of the lineage timeline, depth first (for tests and the tour)."""
        return [text for _, text, _, _ in self.lineage.rows()]

    def copy_hash(self) -> None:
        item = self.files_table.currentItem()
        if item is not None:
            QGuiApplication.clipboard().setText(item.text(2))
