"""The Models page: the catalog as a filterable, sortable table with a details pane.

An empty catalog shows the welcome instead. The table is re-read (in a thread,
with its own catalog connection) whenever a job finishes; filtering and sorting
never touch the database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QItemSelectionModel, QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QSplitter,
    QStackedWidget,
    QTableView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Artifact, ArtifactState, Catalog
from llmops_desktop.qt.artifact_model import ArtifactFilterProxy, ArtifactTableModel, Roles
from llmops_desktop.qt.context import AppContext, Page
from llmops_desktop.qt.formatting import job_state_label
from llmops_desktop.qt.models_toolbar import build_actions, build_import_button, show_context_menu
from llmops_desktop.qt.pages.model_details import DetailsPane
from llmops_desktop.qt.pages.welcome import WelcomeWidget
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.serving.config import ENGINE_FOR_KIND

if TYPE_CHECKING:
    from llmops_desktop.qt.quantize_dialog import QuantizeDialog

_KINDS = [("All kinds", ""), ("Hugging Face", "hf"), ("GGUF", "gguf"), ("LoRA adapter", "lora")]
_FILLING_JOBS = {"import", "demo"}
QUANTIZABLE_KINDS = ("hf", "gguf")


class ModelsPage(Page):
    """Browse, search and manage the catalog's artifacts."""

    page_id = "models"
    title = "Models"
    icon_name = "models"
    tooltip = "The catalog: every model and artifact, with details and lineage"

    sig_reloaded = Signal()
    """The table was re-read from the catalog."""
    sig_selection_changed = Signal(object)
    """The selected artifact changed (an Artifact, or None)."""
    sig_serve_requested = Signal(int)
    """Serve this artifact: open the Deployments page with it chosen."""
    sig_chat_requested = Signal(int)
    """Chat with this artifact's running deployment in the Playground."""
    sig_serve_now_requested = Signal(int)
    """Serve this artifact at once (a Quantize dialog's 'Serve this')."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.model = ArtifactTableModel(self)
        self.proxy = ArtifactFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self._reloading = False
        self._reload_again = False
        self._quantize_dialogs: dict[int, QuantizeDialog] = {}  # artifact id -> open dialog
        self._quantize_jobs: dict[int, str] = {}  # job id -> the ref it quantizes
        self._serving: set[int] = set()  # artifact ids with a running deployment
        self._shown_id: int | None = None  # the artifact the details pane shows
        self.welcome = WelcomeWidget()
        self.welcome.sig_import_clicked.connect(ctx.events.sig_import_requested)
        self.welcome.sig_demo_clicked.connect(ctx.events.sig_demo_requested)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self._build_browser())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self._build_actions()
        ctx.jobs.sig_job_finished.connect(self._on_job_finished)
        ctx.jobs.sig_job_progress.connect(self._on_job_progress)
        self.model.set_artifacts(ctx.catalog.artifacts())
        self._after_reload()

    # ---- building -------------------------------------------------------------------------

    def _build_browser(self) -> QWidget:
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name, kind, architecture, tag, path…")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(self._on_filter_changed)
        self.kind_combo = QComboBox()
        for label, kind in _KINDS:
            self.kind_combo.addItem(label, kind)
        self.kind_combo.currentIndexChanged.connect(self._on_kind_changed)
        self.count_label = QLabel()
        self.import_button = build_import_button(self)
        self.quantize_button = QToolButton()
        self.quantize_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        top = QHBoxLayout()
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.kind_combo)
        top.addWidget(self.count_label)
        top.addSpacing(12)
        top.addWidget(self.quantize_button)
        top.addWidget(self.import_button)

        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._on_context_menu)
        vheader = self.table.verticalHeader()
        vheader.hide()
        vheader.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vheader.setDefaultSectionSize(self.fontMetrics().height() + 8)
        hheader = self.table.horizontalHeader()
        hheader.setStretchLastSection(True)
        hheader.setSectionsMovable(True)
        for column, width in enumerate((44, 190, 40, 52, 150, 64, 100, 80, 110, 130)):
            self.table.setColumnWidth(column, width)
        # Details and actions follow the selection, not the current index: a click makes
        # the row current before it selects it, so the current row is not yet selected.
        self.table.selectionModel().selectionChanged.connect(self._sync_selection)
        for signal in (self.proxy.rowsRemoved, self.proxy.layoutChanged, self.proxy.modelReset):
            signal.connect(self._sync_selection)
        self.table.doubleClicked.connect(lambda _: self.details.tabs.setCurrentIndex(1))

        self.details = DetailsPane(self.ctx.catalog)
        self.details.sig_artifact_activated.connect(self.select_artifact)
        self.details.status_box.sig_export_requested.connect(self.open_export_dialog)
        self.details.status_box.sig_status_changed.connect(lambda *_: self.details.refresh())
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        browser = QWidget()
        layout = QVBoxLayout(browser)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)
        return browser

    def _build_actions(self) -> None:
        build_actions(self)

    # ---- public ---------------------------------------------------------------------------

    def selected_artifact(self) -> Artifact | None:
        rows = self.table.selectionModel().selectedRows()
        return rows[0].data(Roles.ARTIFACT) if rows else None

    def select_artifact(self, artifact_id: int) -> bool:
        """Select a row by artifact id (clearing a filter that hides it); False if absent."""
        row = self.model.row_of(artifact_id)
        if row is None:
            return False
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if not index.isValid():
            self.filter_edit.clear()
            self.kind_combo.setCurrentIndex(0)
            index = self.proxy.mapFromSource(self.model.index(row, 0))
        flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect
                 | QItemSelectionModel.SelectionFlag.Rows)
        self.table.selectionModel().setCurrentIndex(index, flags)
        self.table.scrollTo(index)
        return True

    def focus_filter(self) -> None:
        self.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.filter_edit.selectAll()

    def refresh(self) -> None:
        self.reload()

    def reload(self) -> None:
        """Re-read the artifacts in a thread; ``sig_reloaded`` when the table shows them."""
        if self._reloading:
            self._reload_again = True
            return
        self._reloading = True
        home = self.ctx.home

        def read() -> list[Artifact]:
            with Catalog.open(home) as cat:
                return cat.artifacts()

        run_in_thread(read, self._on_loaded, self._on_load_failed, receiver=self)

    def save_state(self, state: QSettings) -> None:
        state.setValue("models/splitter", self.splitter.saveState())
        state.setValue("models/header", self.table.horizontalHeader().saveState())

    def restore_state(self, state: QSettings) -> None:
        if (value := state.value("models/splitter")) is not None:
            self.splitter.restoreState(value)
        if (value := state.value("models/header")) is not None:
            self.table.horizontalHeader().restoreState(value)

    # ---- slots ----------------------------------------------------------------------------

    def _on_loaded(self, artifacts: list[Artifact]) -> None:
        self._reloading = False
        current = self.selected_artifact()
        self.model.set_artifacts(artifacts)
        self._after_reload()
        if current is not None:
            self.select_artifact(current.id)
        self.sig_reloaded.emit()
        if self._reload_again:
            self._reload_again = False
            self.reload()

    def _on_load_failed(self, exc: BaseException) -> None:
        self._reloading = False
        self.ctx.events.sig_error.emit(f"The catalog could not be read: {exc}")

    def _after_reload(self) -> None:
        empty = self.model.rowCount() == 0
        self.stack.setCurrentIndex(0 if empty else 1)
        if not empty and not self.table.selectionModel().hasSelection():
            self.table.selectRow(0)
        self._update_count()
        self._update_actions()

    def _update_count(self) -> None:
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        noun = "artifact" if total == 1 else "artifacts"
        self.count_label.setText(f"{total} {noun}" if shown == total
                                 else f"{shown} of {total} shown")

    def _update_actions(self) -> None:
        a = self.selected_artifact()
        for action in self.model_actions:
            action.setEnabled(a is not None)
        self.act_show_job.setEnabled(a is not None and a.job_id is not None)
        self.act_quantize.setEnabled(a is not None and a.kind in QUANTIZABLE_KINDS)
        self.act_serve.setEnabled(a is not None and a.kind in ENGINE_FOR_KIND
                                  and a.state == ArtifactState.READY)
        self.act_chat.setEnabled(a is not None and a.id in self._serving)
        self.act_finetune.setEnabled(self._trainable(a))

    def _trainable(self, a: Any) -> bool:
        """Fine-tune is offered for a Hugging Face model, and for a GGUF made from one (the
        page then trains that model); never for a GGUF with no Hugging Face ancestor."""
        if a is None or a.kind == "hf":
            return a is not None
        from llmops_desktop.qt.pages.finetune import hf_source

        return a.kind == "gguf" and hf_source(self.ctx, a) is not None

    def set_serving(self, artifact_ids: set[int]) -> None:
        """Which artifacts have a running deployment (Chat is offered for those)."""
        self._serving = set(artifact_ids)
        self._update_actions()

    def _on_filter_changed(self, text: str) -> None:
        self.proxy.set_filter_text(text)
        self._update_count()
        self._sync_selection()

    def _on_kind_changed(self, index: int) -> None:
        self.proxy.set_kind(self.kind_combo.itemData(index) or "")
        self._update_count()
        self._sync_selection()

    def _sync_selection(self, *_: object) -> None:
        """Details and actions show the selected row (none: an empty pane, greyed actions)."""
        a = self.selected_artifact()
        new_id = a.id if a is not None else None
        self._update_actions()
        if new_id != self._shown_id:
            self._shown_id = new_id
            self.details.show_artifact(new_id)
            self.sig_selection_changed.emit(a)

    def _on_job_finished(self, job_id: int, state: str) -> None:
        self.welcome.clear_busy("" if state == "succeeded"
                                else f"Job #{job_id} {job_state_label(state)}.")
        ref = self._quantize_jobs.pop(job_id, None)
        if ref is not None:
            self._announce_quantize(job_id, ref, state)
        self.reload()

    def _on_job_progress(self, job_id: int, fraction: object, message: str) -> None:
        if self.stack.currentIndex() == 0:
            self.welcome.show_busy(message or "working…",
                                   fraction if isinstance(fraction, float) else None)

    def _on_context_menu(self, pos: object) -> None:
        show_context_menu(self, pos)

    # ---- actions --------------------------------------------------------------------------

    def open_quantize_dialog(self, artifact_id: int | None = None) -> QuantizeDialog | None:
        """The Quantize dialog for an artifact (the selected one by default); not modal, one
        per artifact: asking again raises the open one."""
        if artifact_id is None:
            a = self.selected_artifact()
            if a is None:
                self.ctx.events.sig_error.emit("Select a model to quantize first.")
                return None
            artifact_id = a.id
        dialog = self._quantize_dialogs.get(artifact_id)
        if dialog is not None:
            dialog.raise_()
            dialog.activateWindow()
            return dialog
        from llmops_desktop.qt.quantize_dialog import QuantizeDialog  # first use only

        dialog = QuantizeDialog(self.ctx, self.ctx.catalog.artifact(artifact_id), self.window())
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self._quantize_dialogs[artifact_id] = dialog
        dialog.destroyed.connect(lambda *_: self._quantize_dialogs.pop(artifact_id, None))
        dialog.sig_started.connect(
            lambda job_id: self._quantize_jobs.__setitem__(job_id, dialog.artifact.ref))
        dialog.sig_show_variants_requested.connect(self.show_variants)
        dialog.sig_serve_requested.connect(self.sig_serve_now_requested)
        dialog.show()
        return dialog

    def open_export_dialog(self, artifact_id: int | None = None) -> object:
        """The Export dialog for an artifact (the selected one by default)."""
        from llmops_desktop.qt.export_dialog import open_export_dialog

        a = self.selected_artifact() if artifact_id is None else None
        if artifact_id is None and a is None:
            self.ctx.events.sig_error.emit("Select a model to export first.")
            return None
        return open_export_dialog(self.ctx, artifact_id or a.id, self.window())

    def show_variants(self, artifact_id: int) -> None:
        """Select an artifact and show its Variants tab."""
        if self.select_artifact(artifact_id):
            self.details.show_variants()

    def _announce_quantize(self, job_id: int, ref: str, state: str) -> None:
        if state == "succeeded":
            job = self.ctx.catalog.job(job_id)
            made = len((job.result or {}).get("artifact_ids") or [])
            self.ctx.events.sig_info.emit(
                f"Quantized {ref}: {made} variant(s) made (job #{job_id}).")
        elif state == "cancelled":
            self.ctx.events.sig_info.emit(f"Quantizing {ref} was cancelled (job #{job_id}).")
        else:
            error = self.ctx.catalog.job(job_id).error or state
            self.ctx.events.sig_error.emit(f"Quantizing {ref} failed: {error}")

    def serve_selected(self) -> None:
        if (a := self.selected_artifact()) is not None:
            self.sig_serve_requested.emit(a.id)

    def chat_selected(self) -> None:
        if (a := self.selected_artifact()) is not None and a.id in self._serving:
            self.sig_chat_requested.emit(a.id)

    def show_job(self) -> None:
        if (a := self.selected_artifact()) is not None and a.job_id is not None:
            self.ctx.events.sig_show_job_requested.emit(a.job_id)
