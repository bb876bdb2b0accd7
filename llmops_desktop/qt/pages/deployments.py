"""The Deployments page: serve a catalog artifact over an OpenAI-compatible API, and watch it.

A form (:class:`~llmops_desktop.qt.deploy_form.DeployForm`) starts
``python -m llmops_desktop.serving`` for a ready artifact (through :class:`DeployController`),
prefilled with settings chosen from the model and the machine. The list shows the
deployments this window started and those found still running from before; below it
(:class:`~llmops_desktop.qt.deploy_details.DeploymentDetails`) the selected one's log
lines, recent requests from the catalog, snippets to call it with and live figures.
Opened from the sidebar, the form shows the model selected on the Models page, or else the
newest servable GGUF.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Artifact
from llmops_desktop.qt.context import AppContext, Page
from llmops_desktop.qt.deploy_controller import DeployController, LiveDeployment
from llmops_desktop.qt.deploy_details import (  # noqa: F401 - the page's names, as before
    DeploymentDetails,
    curl_snippet,
    python_snippet,
    uptime_text,
)
from llmops_desktop.qt.deploy_form import DeployForm, servable
from llmops_desktop.qt.gateway_panel import GatewayPanel
from llmops_desktop.qt.model_defaults import ModelDefaultsBar
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.serving.defaults import Hardware, detect_hardware
from llmops_desktop.serving.deploy import DeployRequest

REQUESTS_REFRESH_MS = 2000
UPTIME_REFRESH_MS = 1000
_COLUMNS = ("Name", "Model", "Engine", "URL", "Status", "Uptime")
_STATE_COLORS = {"starting": "#b58900", "running": "#2e7d32", "stopped": "#777777",
                 "failed": "#c62828"}
# The form's widgets, reachable as the page's own (the tour and the tests use them).
_FORM_WIDGETS = ("artifact_combo", "engine_combo", "name_edit", "host_combo", "port_spin",
                 "ctx_spin", "threads_spin", "parallel_spin", "gpu_layers_spin",
                 "api_key_edit", "start_button", "defaults_label", "advanced_box",
                 "max_queue_spin", "batch_spin", "device_combo", "quantization_combo",
                 "lora_combo", "main_form", "tuning_form", "advanced_form", "template_combo",
                 "template_warning", "use_template_button")
_DETAIL_WIDGETS = ("detail_title", "stop_button", "restart_button", "chat_button", "log_view",
                   "requests", "curl_edit", "python_edit", "tabs", "live", "engine_label")


class DeploymentsPage(Page):
    """Serve artifacts locally and see their requests."""

    page_id = "deployments"
    title = "Deployments"
    icon_name = "deploy"
    tooltip = "Serve a model over an OpenAI-compatible API on this machine"

    sig_selection_changed = Signal(int)
    """The selected deployment changed (its key, 0 for none)."""
    sig_chat_requested = Signal(int)
    """The user wants to chat with this deployment (its key) in the Playground."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.deploy = DeployController(ctx.home, self)
        self._items: dict[int, QTreeWidgetItem] = {}
        self._model_hint: int | None = None  # the model selected on the Models page
        self.form = DeployForm(ctx)
        self.form.start_button.clicked.connect(self.start_selected)
        self.model_defaults = ModelDefaultsBar(ctx, self.form)  # before the form is filled
        self.gateway_panel = GatewayPanel(ctx)
        self.gateway = self.gateway_panel.gateway
        self.details = DeploymentDetails(ctx)
        for name in _FORM_WIDGETS:
            setattr(self, name, getattr(self.form, name))
        for name in _DETAIL_WIDGETS:
            setattr(self, name, getattr(self.details, name))
        self.details.stop_button.clicked.connect(self.stop_selected)
        self.details.restart_button.clicked.connect(self.restart_selected)
        self.details.chat_button.clicked.connect(
            lambda: (d := self.selected()) is not None and self.sig_chat_requested.emit(d.key))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.form)
        layout.addWidget(self.model_defaults)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.list_tabs = QTabWidget()  # this window's deployments, or the gateway's models
        self.list_tabs.addTab(self._build_list(), "Deployments")
        self.list_tabs.addTab(self.gateway_panel, "Gateway")
        self.list_tabs.setTabToolTip(1, "One address for every model, loaded on demand; "
                                        "API keys per person")
        self.list_tabs.currentChanged.connect(  # the details are a deployment's
            lambda index: self.details.setVisible(index == 0))
        self.gateway.sig_state_changed.connect(lambda state: self.list_tabs.setTabText(
            1, "Gateway" if state == "stopped" else f"Gateway ({state})"))
        self.splitter.addWidget(self.list_tabs)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setChildrenCollapsible(False)
        layout.addWidget(self.splitter, 1)

        self.uptime_timer = QTimer(self)
        self.uptime_timer.setInterval(UPTIME_REFRESH_MS)
        self.uptime_timer.timeout.connect(self._update_uptimes)
        self.requests_timer = QTimer(self)
        self.requests_timer.setInterval(REQUESTS_REFRESH_MS)
        self.requests_timer.timeout.connect(self.refresh_requests)

        self.deploy.sig_added.connect(self._on_added)
        self.deploy.sig_changed.connect(self._on_changed)
        self.deploy.sig_line.connect(self._on_line)
        self.deploy.sig_stopped.connect(self._on_stopped)
        ctx.jobs.sig_job_finished.connect(lambda *_: self.reload_artifacts())
        self.reload_artifacts()
        self.details.update_buttons()
        run_in_thread(detect_hardware, self._on_hardware, receiver=self)
        self.deploy.adopt_running(ctx.catalog)

    @property
    def hardware(self) -> Hardware | None:
        return self.form.hardware

    def _build_list(self) -> QWidget:
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(_COLUMNS))
        self.tree.setHeaderLabels(list(_COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        for column, width in enumerate((160, 160, 80, 200, 80)):
            self.tree.setColumnWidth(column, width)
        self.tree.currentItemChanged.connect(self._on_current_changed)
        self.empty_label = QLabel("No deployments yet: pick a model above and press Start, or "
                                  "right-click a model on the Models page and choose Serve…")
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet("color: palette(mid);")
        w = QWidget()
        layout = QVBoxLayout(w)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.empty_label)
        return w

    # ---- public ---------------------------------------------------------------------------

    def serve_values(self) -> dict[str, Any]:
        return self.form.serve_values()

    def reload_artifacts(self) -> None:
        """Re-read the servable artifacts into the form, keeping the current choice."""
        self.form.reload_artifacts()

    def select_artifact(self, artifact_id: int) -> bool:
        """Preselect an artifact in the form (re-reading the catalog if needed)."""
        self._model_hint = None  # an explicit choice wins over the Models page's selection
        return self.form.select_artifact(artifact_id)

    def note_model_selected(self, artifact: Artifact | None) -> None:
        """The Models page's selection: the form shows it when the page opens next."""
        self._model_hint = artifact.id if artifact is not None and servable(artifact) else None

    def serve_now(self, artifact_id: int) -> int:
        """Serve an artifact at once with the suggested settings; its key (0: not started)."""
        if not self.select_artifact(artifact_id):
            self.ctx.events.sig_error.emit(f"Artifact #{artifact_id} is not ready to serve.")
            return 0
        self.form.apply_defaults()
        self.model_defaults.apply_saved()
        return self.start_selected()

    def form_request(self) -> DeployRequest | None:
        return self.form.form_request()

    def start_selected(self) -> int:
        """Start the form's deployment; returns its key (0 if it cannot start)."""
        request = self.form_request()
        if request is None:
            self.ctx.events.sig_error.emit("Import or make a GGUF or Hugging Face model to "
                                           "serve first.")
            return 0
        from llmops_desktop.errors import InvalidInputError

        try:
            return self.deploy.start(request)  # checks it first, as 'llmops serve' does
        except InvalidInputError as exc:
            self.ctx.events.sig_error.emit(str(exc))
            self.api_key_edit.setFocus()
            return 0

    def generate_api_key(self) -> None:
        self.form.generate_api_key()

    def apply_defaults(self) -> None:
        self.form.apply_defaults()
        self.model_defaults.apply_saved()

    def selected(self) -> LiveDeployment | None:
        item = self.tree.currentItem()
        return self.deploy.get(item.data(0, Qt.ItemDataRole.UserRole)) if item else None

    def stop_selected(self) -> None:
        if (d := self.selected()) is not None:
            self.deploy.stop(d.key)

    def restart_selected(self) -> None:
        if (d := self.selected()) is not None:
            self.deploy.restart(d.key)

    def refresh(self) -> None:
        self.reload_artifacts()
        self.refresh_requests()

    def on_shown(self) -> None:
        hint, self._model_hint = self._model_hint, None
        self.form.reload_artifacts(prefer=hint)
        self.refresh_requests()

    def refresh_requests(self) -> None:
        """Re-read the selected deployment's recent requests from the catalog."""
        self.details.refresh_requests()

    # ---- Qt events ------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.uptime_timer.start()
        self.requests_timer.start()
        self.details.update_live()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.uptime_timer.stop()
        self.requests_timer.stop()
        self.details.engine_timer.stop()

    # ---- slots ----------------------------------------------------------------------------

    def _on_hardware(self, hw: Hardware) -> None:
        self.form.set_hardware(hw)
        self.model_defaults.apply_saved()  # over the suggested settings just applied

    def _on_added(self, key: int) -> None:
        item = QTreeWidgetItem()
        item.setData(0, Qt.ItemDataRole.UserRole, key)
        self._items[key] = item
        self.tree.addTopLevelItem(item)
        self._fill(key)
        self.tree.setCurrentItem(item)
        self.empty_label.hide()

    def _on_changed(self, key: int) -> None:
        self._fill(key)
        changed = self.deploy.get(key)
        if (changed is not None and changed.state == "running" and changed.request.api_key
                and changed.deployment_id is not None):
            from llmops_desktop.qt.monitor_controller import monitor_for

            monitor_for(self.ctx).set_api_key(changed.deployment_id, changed.request.api_key)
        d = self.selected()
        if d is not None and d.key == key:
            self.details.show_deployment(d)
            self.details.update_live()

    def _on_stopped(self, key: int, reason: str) -> None:
        d = self.deploy.get(key)
        if reason and d is not None:
            self.ctx.events.sig_error.emit(f"Deployment {d.name} failed: {reason}")

    def _on_line(self, key: int, line: str) -> None:
        d = self.selected()
        if d is not None and d.key == key:
            self.log_view.appendPlainText(line)

    def _on_current_changed(self, current: QTreeWidgetItem | None, _previous: object) -> None:
        d = self.selected()
        self.log_view.setPlainText("\n".join(d.lines) if d else "")
        self.details.show_deployment(d)
        self.refresh_requests()
        self.details.update_live()
        self.sig_selection_changed.emit(d.key if d else 0)

    def _fill(self, key: int) -> None:
        d, item = self.deploy.get(key), self._items.get(key)
        if d is None or item is None:
            return
        values = (d.name, d.request.artifact_ref, d.request.options.engine or "", d.url or "",
                  d.state, uptime_text(d.uptime_s()))
        for column, value in enumerate(values):
            item.setText(column, value)
        item.setForeground(4, _color(d.state))
        item.setToolTip(4, d.error or d.state)

    def _update_uptimes(self) -> None:
        for key, d in self.deploy.deployments.items():
            if d.state == "running":
                self._items[key].setText(5, uptime_text(d.uptime_s()))


def _color(state: str) -> QBrush:
    return QBrush(QColor(_STATE_COLORS.get(state, "#777777")))
