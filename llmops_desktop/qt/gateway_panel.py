"""The Gateway panel of the Deployments page: one address for every model, and who uses it.

Start and stop the gateway (:class:`~llmops_desktop.qt.gateway_controller.GatewayController`,
a child process), choose where it listens, how long an idle model stays loaded and how much
memory the loaded models may hold; copy its address; watch which models are loaded; see
each key's requests and tokens per model (the gateway's request log) and manage the keys
(:class:`~llmops_desktop.qt.apikey_dialogs.ApiKeysBox`).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QGuiApplication, QHideEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.errors import LLMOpsError
from llmops_desktop.gateway.run import DEFAULT_GATEWAY_PORT, GatewayOptions
from llmops_desktop.qt.apikey_dialogs import ApiKeysBox
from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.gateway_controller import GatewayController

USAGE_REFRESH_MS = 2000
USAGE_ROWS = 50_000  # "who uses what" reads the newest requests of the log, never all of it
MODEL_COLUMNS = ("Model", "State", "Memory", "Process", "Note")
USAGE_COLUMNS = ("Key", "Model", "Requests", "Errors", "Tokens", "Last used")
_STATE_COLORS = {"loaded": "#2e7d32", "loading": "#b58900", "stopping": "#b58900",
                 "unloaded": "#777777"}
_STATUS = {"stopped": "Stopped", "starting": "Starting…", "running": "Serving",
           "stopping": "Stopping (its models first)…"}


class GatewayPanel(QWidget):
    """Start/stop the gateway, its address, its models and its users."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.gateway = GatewayController(ctx.home, self)
        self.gateway.sig_state_changed.connect(self._on_state_changed)
        self.gateway.sig_models.connect(self._on_models)
        self.gateway.sig_stopped.connect(self._on_stopped)
        self.gateway.sig_started.connect(lambda _url: self.refresh_usage())

        self.host_combo = QComboBox()
        self.host_combo.setEditable(True)
        self.host_combo.addItems(["127.0.0.1", "0.0.0.0"])
        self.host_combo.setMinimumContentsLength(12)
        self.host_combo.setToolTip("Address to listen on. 127.0.0.1: this machine only. "
                                   "Any other address needs an API key (make one below).")
        self.port_spin = QSpinBox()
        self.port_spin.setRange(0, 65535)
        self.port_spin.setValue(DEFAULT_GATEWAY_PORT)
        self.port_spin.setSpecialValueText("free port")
        self.port_spin.setToolTip(f"TCP port (default {DEFAULT_GATEWAY_PORT}; 0 picks a free "
                                  "one)")
        self.idle_spin = QSpinBox()
        self.idle_spin.setRange(0, 7 * 24 * 3600)
        self.idle_spin.setValue(600)
        self.idle_spin.setSuffix(" s")
        self.idle_spin.setSpecialValueText("never")
        self.idle_spin.setToolTip("Stop a model's deployment (and free its memory) after this "
                                  "long without requests")
        self.budget_spin = QDoubleSpinBox()
        self.budget_spin.setRange(0, 4096)
        self.budget_spin.setDecimals(1)
        self.budget_spin.setSuffix(" GiB")
        self.budget_spin.setSpecialValueText("no budget")
        self.budget_spin.setToolTip("Memory all loaded models may hold together (GPU memory "
                                    "where offloaded, RAM otherwise); the least recently used "
                                    "idle model is unloaded to make room")
        self.start_button = QPushButton(icon("resume"), "Start gateway")
        self.start_button.setToolTip("Serve every allowed model at one address (Ctrl+G)")
        self.start_button.setShortcut("Ctrl+G")
        self.start_button.clicked.connect(self.toggle)
        self.status_label = QLabel(_STATUS["stopped"])
        self.address_edit = QLineEdit()
        self.address_edit.setReadOnly(True)
        self.address_edit.setPlaceholderText("the OpenAI base URL appears here once it serves")
        self.copy_button = QPushButton(icon("copy"), "Copy")
        self.copy_button.setToolTip("Copy the OpenAI base URL (…/v1) to the clipboard")
        self.copy_button.clicked.connect(self.copy_address)

        fields = QFormLayout()
        row = QHBoxLayout()
        for label, widget in (("Address", self.host_combo), ("Port", self.port_spin),
                              ("Unload idle after", self.idle_spin),
                              ("Memory budget", self.budget_spin)):
            row.addWidget(QLabel(label))
            row.addWidget(widget)
        row.addWidget(self.start_button)
        row.addStretch(1)
        fields.addRow(row)
        url_row = QHBoxLayout()
        url_row.addWidget(self.status_label)
        url_row.addWidget(self.address_edit, 1)
        url_row.addWidget(self.copy_button)
        fields.addRow(url_row)

        self.models_tree = _tree(MODEL_COLUMNS, (200, 80, 80, 70))
        self.usage_tree = _tree(USAGE_COLUMNS, (120, 200, 70, 60, 80))
        self.keys = ApiKeysBox(ctx.catalog)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.models_tree, "Models")
        self.tabs.addTab(self.usage_tree, "Who uses what")
        self.tabs.setTabToolTip(1, f"Requests, errors and tokens per key and model over the "
                                   f"gateway's last {USAGE_ROWS:,} requests")
        self.tabs.addTab(self.keys, "API keys")
        about = QLabel("One OpenAI-compatible address for every model: a model loads on its "
                       "first request and unloads when idle; each person gets a key.")
        about.setWordWrap(True)
        about.setStyleSheet("color: palette(mid);")
        layout = QVBoxLayout(self)
        layout.addWidget(about)
        layout.addLayout(fields)
        layout.addWidget(self.tabs, 1)

        self.usage_timer = QTimer(self)
        self.usage_timer.setInterval(USAGE_REFRESH_MS)
        self.usage_timer.timeout.connect(self.refresh_usage)
        self._on_state_changed("stopped")
        self.refresh_usage()

    # ---- public ---------------------------------------------------------------------------

    def options(self) -> GatewayOptions:
        budget = self.budget_spin.value()
        return GatewayOptions(host=self.host_combo.currentText().strip() or "127.0.0.1",
                              port=self.port_spin.value(), idle_unload=self.idle_spin.value(),
                              memory_budget_gb=budget or None)

    def start(self) -> bool:
        """Start the gateway with the panel's settings; whether it was started (its own
        refusal, such as no key off loopback, arrives as an error once it exits)."""
        try:
            self.gateway.start(self.options())
        except (LLMOpsError, OSError) as exc:
            self.ctx.events.sig_error.emit(str(exc))
            return False
        return True

    def stop(self, *, wait: bool = False) -> None:
        self.gateway.stop(wait=wait)

    def toggle(self) -> None:
        if self.gateway.is_running():
            self.stop()
        else:
            self.start()

    def base_url(self) -> str:
        return f"{self.gateway.url}/v1" if self.gateway.url else ""

    def copy_address(self) -> None:
        if self.base_url():
            QGuiApplication.clipboard().setText(self.base_url())

    def refresh_usage(self) -> None:
        """Re-read who used what from the request log, and the keys' counters."""
        from llmops_desktop.gateway.usage import usage_by_key

        self.usage_tree.clear()
        for u in usage_by_key(self.ctx.catalog, last=USAGE_ROWS, limit=200):
            self.usage_tree.addTopLevelItem(QTreeWidgetItem([
                u.key_name, u.model, str(u.requests), str(u.errors), str(u.tokens),
                u.last_used[:19].replace("T", " ")]))
        self.keys.refresh()

    def model_states(self) -> dict[str, str]:
        """Each model the gateway knows, with its state (loaded, loading, unloaded …)."""
        return {str(m.get("model")): str(m.get("state")) for m in self.gateway.models}

    # ---- Qt events ------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.usage_timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.usage_timer.stop()

    # ---- slots ----------------------------------------------------------------------------

    def _on_state_changed(self, state: str) -> None:
        running = state != "stopped"
        for widget in (self.host_combo, self.port_spin, self.idle_spin, self.budget_spin):
            widget.setEnabled(not running)
        self.start_button.setText("Stop gateway" if running else "Start gateway")
        self.start_button.setIcon(icon("cancel" if running else "resume"))
        self.start_button.setEnabled(state != "stopping")
        self.status_label.setText(_STATUS.get(state, state))
        self.address_edit.setText(self.base_url())
        self.copy_button.setEnabled(bool(self.base_url()))

    def _on_models(self, models: list[dict[str, Any]]) -> None:
        self.models_tree.clear()
        for m in models:
            state = str(m.get("state", ""))
            memory = m.get("memory_bytes")
            item = QTreeWidgetItem([
                str(m.get("model", "")), state,
                f"{memory / 2**30:.2f} GiB" if isinstance(memory, (int, float)) else "",
                str(m.get("pid") or ""), str(m.get("error") or "")])
            item.setForeground(1, QBrush(QColor(_STATE_COLORS.get(state, "#777777"))))
            item.setToolTip(4, str(m.get("error") or ""))
            self.models_tree.addTopLevelItem(item)

    def _on_stopped(self, reason: str) -> None:
        if reason:
            self.ctx.events.sig_error.emit(f"Gateway: {reason}")
        self.refresh_usage()


def _tree(columns: tuple[str, ...], widths: tuple[int, ...]) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setHeaderLabels(list(columns))
    tree.setRootIsDecorated(False)
    tree.setAlternatingRowColors(True)
    for column, width in enumerate(widths):
        tree.setColumnWidth(column, width)
    tree.setSortingEnabled(False)
    tree.header().setStretchLastSection(True)
    tree.setSelectionMode(QTreeWidget.SelectionMode.SingleSelection)
    tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
    return tree
