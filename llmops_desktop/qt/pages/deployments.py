"""The Deployments page: serve a catalog artifact over an OpenAI-compatible API, and watch it.

A form starts ``python -m llmops_desktop.serving`` for a ready artifact (through
:class:`DeployController`), prefilled with settings chosen from the model and the machine
(:func:`~llmops_desktop.serving.defaults.suggest_options`, each with its reason). The list
shows the deployments this window started and those found still running from before, and
the selected one's log lines, recent requests from the catalog, and snippets to call it with.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFontDatabase,
    QGuiApplication,
    QHideEvent,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Artifact, ArtifactState
from llmops_desktop.fields import FieldSpec
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.deploy_controller import DeployController, LiveDeployment
from llmops_desktop.qt.forms import ComboBox, Editor, Override, SpecForm
from llmops_desktop.qt.formatting import local_time
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.serving.config import DEFAULT_HOST, ENGINE_FOR_KIND, ServeOptions
from llmops_desktop.serving.defaults import Hardware, detect_hardware, suggest_options
from llmops_desktop.serving.deploy import DeployRequest
from llmops_desktop.serving.store import request_log

REQUESTS_REFRESH_MS = 2000
UPTIME_REFRESH_MS = 1000
RECENT_REQUESTS = 50
_COLUMNS = ("Name", "Model", "Engine", "URL", "Status", "Uptime")
_STATE_COLORS = {"starting": "#b58900", "running": "#2e7d32", "stopped": "#777777",
                 "failed": "#c62828"}


MAIN_FIELDS = ("engine", "name", "host", "port")
TUNING_FIELDS = ("ctx", "threads", "parallel", "gpu_layers")
ADVANCED_FIELDS = ("max_queue", "batch", "device", "quantization", "lora")
SUGGESTED_FIELDS = ("engine", "ctx", "threads", "parallel", "gpu_layers", "max_queue", "batch",
                    "device", "quantization")  # what suggest_options decides for a model


def _lora_editor(spec: FieldSpec) -> Editor:
    """The LoRA GGUFs of the catalog (the page fills it in); none by default."""
    combo = ComboBox()
    combo.addItem("none", None)
    return Editor(combo, combo, combo.currentData,
                  lambda v: combo.setCurrentIndex(max(0, combo.findData(v))),
                  combo.currentIndexChanged)


OVERRIDES = {
    "engine": Override(none_text="by the model's kind"),
    "name": Override(none_text="default: NAME@VERSION"),
    "host": Override(suggestions=(DEFAULT_HOST, "0.0.0.0")),
    "port": Override(min_text="free port"),
    "ctx": Override(none_text="model's own", step=512),
    "threads": Override(none_text="auto"),
    "gpu_layers": Override(min_text="all"),
    "batch": Override(none_text="default", step=128),
    "device": Override(suggestions=("auto", "cpu", "cuda")),
    "quantization": Override(none_text="none"),
    "lora": Override(editor=_lora_editor),
}


def servable(artifact: Artifact) -> bool:
    return (artifact.state == ArtifactState.READY and artifact.kind in ENGINE_FOR_KIND
            and artifact.metadata.get("format") != "lora-gguf")


def uptime_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def curl_snippet(url: str, model: str, *, needs_key: bool = False) -> str:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Hello!"}],
                       "max_tokens": 64})
    auth = "  -H \"Authorization: Bearer $LLMOPS_API_KEY\" \\\n" if needs_key else ""
    return (f"curl {url}/v1/chat/completions \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            f"{auth}"
            f"  -d '{body}'")


def python_snippet(url: str, model: str, *, needs_key: bool = False) -> str:
    key = 'os.environ["LLMOPS_API_KEY"]' if needs_key else '"not-needed"'
    return (("import os\n" if needs_key else "") + "from openai import OpenAI\n\n"
            f'client = OpenAI(base_url="{url}/v1", api_key={key})\n'
            "reply = client.chat.completions.create(\n"
            f"    model={model!r},\n"
            '    messages=[{"role": "user", "content": "Hello!"}],\n'
            "    max_tokens=64,\n"
            ")\n"
            "print(reply.choices[0].message.content)\n")


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
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self._build_form())
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self._build_list())
        self.splitter.addWidget(self._build_details())
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
        self.hardware: Hardware | None = None
        self._defaults_for: int | None = None
        self.reload_artifacts()
        self._update_buttons()
        run_in_thread(detect_hardware, self._on_hardware, receiver=self)
        self.deploy.adopt_running(ctx.catalog)

    # ---- building -------------------------------------------------------------------------

    def _build_form(self) -> QWidget:
        box = QGroupBox("New deployment")
        self.artifact_combo = QComboBox()
        self.artifact_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.artifact_combo.setMinimumContentsLength(12)
        self.artifact_combo.setToolTip("A ready GGUF or Hugging Face artifact from the catalog")
        self.artifact_combo.currentIndexChanged.connect(self._on_artifact_changed)
        # The serve options, from ServeOptions' field specs (the flags of 'llmops serve').
        self.main_form = SpecForm(ServeOptions, names=MAIN_FIELDS, overrides=OVERRIDES)
        self.tuning_form = SpecForm(ServeOptions, names=TUNING_FIELDS, overrides=OVERRIDES)
        self.main_form.set_value("port", 0)  # a free port unless the user picks one
        inputs = {n: f.input(n) for f in (self.main_form, self.tuning_form) for n in f.editors}
        self.engine_combo, self.name_edit = inputs["engine"], inputs["name"]
        self.host_combo, self.port_spin = inputs["host"], inputs["port"]
        self.ctx_spin, self.threads_spin = inputs["ctx"], inputs["threads"]
        self.parallel_spin, self.gpu_layers_spin = inputs["parallel"], inputs["gpu_layers"]
        self.host_combo.currentTextChanged.connect(self._on_host_changed)
        self.api_key_edit = QLineEdit()
        self.api_key_edit.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
        self.api_key_edit.setPlaceholderText("none (this machine only)")
        self.api_key_edit.setToolTip(
            "Key clients must send as 'Authorization: Bearer KEY'. Required for any address "
            "but 127.0.0.1. It reaches the server in its environment, never a command line, "
            "log or the catalog.")
        generate = QPushButton("Generate")
        generate.setToolTip("Fill in a new random key")
        generate.clicked.connect(self.generate_api_key)
        self.start_button = QPushButton(icon("resume"), "Start")
        self.start_button.setToolTip("Start serving (Ctrl+Return)")
        self.start_button.setShortcut("Ctrl+Return")
        self.start_button.clicked.connect(self.start_selected)
        self.defaults_label = QLabel()
        self.defaults_label.setWordWrap(True)
        self.defaults_label.setStyleSheet("color: palette(mid);")

        left = QVBoxLayout()
        model_row = QFormLayout()
        model_row.addRow("Model", self.artifact_combo)
        left.addLayout(model_row)
        left.addWidget(self.main_form)
        key_row = QHBoxLayout()
        key_row.addWidget(self.api_key_edit, 1)
        key_row.addWidget(generate)
        main_layout = self.main_form.group_layout("")
        assert main_layout is not None
        main_layout.addRow("API key", key_row)
        start_row = QHBoxLayout()
        start_row.addWidget(self.start_button)
        start_row.addWidget(self.defaults_label, 1)
        outer = QVBoxLayout(box)
        layout = QHBoxLayout()
        layout.addLayout(left, 3)
        layout.addSpacing(12)
        layout.addWidget(self.tuning_form, 2, Qt.AlignmentFlag.AlignTop)
        outer.addLayout(layout)
        outer.addWidget(self._build_advanced())
        outer.addLayout(start_row)
        return box

    def _build_advanced(self) -> QWidget:
        """The options most deployments leave alone (``llmops serve`` has each as a flag)."""
        box = QGroupBox("Advanced")
        box.setCheckable(True)
        box.setChecked(False)  # folded: the defaults suit most deployments
        self.advanced_form = SpecForm(ServeOptions, names=ADVANCED_FIELDS, overrides=OVERRIDES)
        inputs = {n: self.advanced_form.input(n) for n in ADVANCED_FIELDS}
        self.max_queue_spin, self.batch_spin = inputs["max_queue"], inputs["batch"]
        self.device_combo, self.quantization_combo = inputs["device"], inputs["quantization"]
        self.lora_combo = inputs["lora"]
        outer = QVBoxLayout(box)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self.advanced_form)
        self.advanced_form.setVisible(False)
        box.toggled.connect(self.advanced_form.setVisible)
        self.advanced_box = box
        return box

    def serve_values(self) -> dict[str, Any]:
        """The serve options the form shows, by field name."""
        return {**self.main_form.values(), **self.tuning_form.values(),
                **self.advanced_form.values()}

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

    def _mono(self, text: str = "") -> QPlainTextEdit:
        edit = QPlainTextEdit(text)
        edit.setReadOnly(True)
        edit.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        return edit

    def _snippet_box(self, title: str) -> tuple[QWidget, QPlainTextEdit]:
        edit = self._mono()
        copy = QPushButton(icon("copy"), f"Copy {title}")
        copy.clicked.connect(lambda: self._copy(edit.toPlainText(), title))
        w = QWidget()
        layout = QVBoxLayout(w)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(edit, 1)
        layout.addWidget(copy, 0, Qt.AlignmentFlag.AlignRight)
        return w, edit

    def _build_details(self) -> QWidget:
        self.detail_title = QLabel()
        self.detail_title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stop_button = QPushButton(icon("cancel"), "Stop")
        self.stop_button.clicked.connect(self.stop_selected)
        self.restart_button = QPushButton(icon("refresh"), "Restart")
        self.restart_button.clicked.connect(self.restart_selected)
        self.chat_button = QPushButton(icon("chat"), "Chat")
        self.chat_button.setToolTip("Try this deployment in the Playground")
        self.chat_button.clicked.connect(
            lambda: (d := self.selected()) is not None and self.sig_chat_requested.emit(d.key))
        top = QHBoxLayout()
        top.addWidget(self.detail_title, 1)
        top.addWidget(self.chat_button)
        top.addWidget(self.restart_button)
        top.addWidget(self.stop_button)

        self.log_view = self._mono()
        self.log_view.setMaximumBlockCount(2000)
        self.log_view.setPlaceholderText("The server's log: one line per request.")
        self.requests = QTreeWidget()
        self.requests.setRootIsDecorated(False)
        self.requests.setHeaderLabels(["Time", "Endpoint", "Status", "Prompt", "Completion",
                                       "Latency ms", "Tokens/s", "Finish"])
        self.requests.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        curl_w, self.curl_edit = self._snippet_box("curl")
        py_w, self.python_edit = self._snippet_box("Python")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.log_view, "Log")
        self.tabs.addTab(self.requests, "Recent requests")
        self.tabs.addTab(curl_w, "curl")
        self.tabs.addTab(py_w, "Python (openai)")
        self.live = QWidget()
        self.live.setToolTip("Live figures from the monitor's sampler (2 per second)")
        QVBoxLayout(self.live).setContentsMargins(0, 0, 0, 0)
        self.tabs.addTab(self.live, "Live")
        self._live_for: int | None = None
        self.tabs.currentChanged.connect(lambda _: self.refresh_requests())
        self.tabs.currentChanged.connect(lambda _: self._update_live())
        w = QWidget()
        layout = QVBoxLayout(w)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)
        return w

    # ---- public ---------------------------------------------------------------------------

    def reload_artifacts(self) -> None:
        """Re-read the servable artifacts into the combo, keeping the current choice."""
        current = self.artifact_combo.currentData()
        self.artifact_combo.blockSignals(True)
        self.artifact_combo.clear()
        lora = self.lora_combo.currentData()
        self.lora_combo.clear()
        self.lora_combo.addItem("none", None)
        for a in self.ctx.catalog.artifacts():
            if a.state == ArtifactState.READY and a.metadata.get("format") == "lora-gguf":
                self.lora_combo.addItem(a.ref, a.ref)
            if servable(a):
                self.artifact_combo.addItem(f"{a.ref}  ({a.kind}, #{a.id})", a.id)
                self.artifact_combo.setItemData(self.artifact_combo.count() - 1, a.kind,
                                                Qt.ItemDataRole.UserRole + 1)
        self.artifact_combo.blockSignals(False)
        self.lora_combo.setCurrentIndex(max(0, self.lora_combo.findData(lora)))
        index = self.artifact_combo.findData(current) if current is not None else 0
        self.artifact_combo.setCurrentIndex(max(index, 0))
        self._on_artifact_changed(self.artifact_combo.currentIndex())

    def select_artifact(self, artifact_id: int) -> bool:
        """Preselect an artifact in the form (re-reading the catalog if needed)."""
        index = self.artifact_combo.findData(artifact_id)
        if index < 0:
            self.reload_artifacts()
            index = self.artifact_combo.findData(artifact_id)
        if index < 0:
            return False
        self.artifact_combo.setCurrentIndex(index)
        self.start_button.setFocus()
        return True

    def form_request(self) -> DeployRequest | None:
        index = self.artifact_combo.currentIndex()
        if index < 0:
            return None
        text = self.artifact_combo.itemText(index)
        return DeployRequest.from_options(
            int(self.artifact_combo.itemData(index)), artifact_ref=text.split("  (")[0],
            api_key=self.api_key_edit.text().strip(), **self.serve_values())

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
        import secrets

        self.api_key_edit.setText(secrets.token_urlsafe(24))
        self.api_key_edit.setEchoMode(QLineEdit.EchoMode.Normal)

    def apply_defaults(self) -> None:
        """Fill the form with what suits the chosen model on this machine, and say why."""
        artifact_id = self.artifact_combo.currentData()
        if artifact_id is None or self.hardware is None:
            self.defaults_label.setText("" if artifact_id is None else "Checking this machine…")
            return
        try:
            artifact = self.ctx.catalog.artifact(int(artifact_id))
        except Exception:  # noqa: BLE001 - removed meanwhile: the next reload drops it
            return
        options, reasons = suggest_options(artifact, self.hardware)
        suggested = {name: getattr(options, name) for name in SUGGESTED_FIELDS}
        for form in (self.main_form, self.tuning_form, self.advanced_form):
            form.set_values(suggested)
        self.defaults_label.setText("Suggested for this model and machine: " + "; ".join(reasons)
                                    + ".")

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
        self.reload_artifacts()
        self.refresh_requests()

    def refresh_requests(self) -> None:
        """Re-read the selected deployment's recent requests from the catalog."""
        d = self.selected()
        if d is None or d.deployment_id is None or not self.isVisible():
            if d is None:
                self.requests.clear()
            return
        records = request_log(self.ctx.catalog, deployment_id=d.deployment_id,
                              limit=RECENT_REQUESTS)
        self.requests.clear()
        for r in records:
            self.requests.addTopLevelItem(QTreeWidgetItem([
                local_time(r.ts), r.endpoint, str(r.status), str(r.prompt_tokens),
                str(r.completion_tokens), f"{r.latency_ms:.0f}",
                f"{r.tokens_per_s:.1f}" if r.tokens_per_s else "", r.finish_reason or ""]))

    # ---- Qt events ------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.uptime_timer.start()
        self.requests_timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        self.uptime_timer.stop()
        self.requests_timer.stop()

    # ---- slots ----------------------------------------------------------------------------

    def _on_artifact_changed(self, index: int) -> None:
        kind = self.artifact_combo.itemData(index, Qt.ItemDataRole.UserRole + 1)
        engine = ENGINE_FOR_KIND.get(kind or "")
        if engine:
            self.engine_combo.setCurrentText(engine)
        self.start_button.setEnabled(index >= 0)
        if index >= 0 and self.artifact_combo.itemData(index) != self._defaults_for:
            self._defaults_for = self.artifact_combo.itemData(index)
            self.apply_defaults()

    def _on_hardware(self, hw: Hardware) -> None:
        self.hardware = hw
        self._defaults_for = self.artifact_combo.currentData()
        self.apply_defaults()

    def _on_host_changed(self, host: str) -> None:
        from llmops_desktop.netaddr import is_loopback

        local = not host.strip() or is_loopback(host.strip())
        self.api_key_edit.setPlaceholderText("none (this machine only)" if local else
                                             "required off this machine: press Generate")

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
            self._show_details(d)
            self._update_live()

    def _update_live(self) -> None:
        """The Live tab: small charts of the selected deployment, built when first seen."""
        if self.tabs.currentWidget() is not self.live:
            return
        d = self.selected()
        dep_id = d.deployment_id if d is not None and d.state == "running" else None
        if dep_id == self._live_for:
            return
        self._live_for = dep_id
        layout = self.live.layout()
        while layout.count():
            old = layout.takeAt(0).widget()
            if old is not None:
                old.deleteLater()
        if dep_id is None:
            layout.addWidget(QLabel("Start or select a running deployment to see its "
                                    "requests, time to first token and tokens/s live."))
            return
        from llmops_desktop.qt.charts import MiniChart, SeriesSpec
        from llmops_desktop.qt.monitor_controller import monitor_for

        store = monitor_for(self.ctx).store
        p = f"dep.{dep_id}."
        for title, specs in (
                ("Requests/s", [SeriesSpec(p + "req_rate", "requests"),
                                SeriesSpec(p + "errors", "errors", "#c0392b")]),
                ("TTFT ms (p50, p95)", [SeriesSpec(p + "ttft_p50", "p50"),
                                        SeriesSpec(p + "ttft_p95", "p95", "#e0864f")]),
                ("Tokens/s", [SeriesSpec(p + "tok_s", "tokens/s", "#2e9e5b")])):
            layout.addWidget(QLabel(title))
            layout.addWidget(MiniChart(specs, store), 1)

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
        self._show_details(d)
        self.refresh_requests()
        self._update_live()
        self.sig_selection_changed.emit(d.key if d else 0)

    def _fill(self, key: int) -> None:
        d, item = self.deploy.get(key), self._items.get(key)
        if d is None or item is None:
            return
        values = (d.name, d.request.artifact_ref, d.request.options.engine or "", d.url or "",
                  d.state,
                  uptime_text(d.uptime_s()))
        for column, value in enumerate(values):
            item.setText(column, value)
        item.setForeground(4, _color(d.state))
        item.setToolTip(4, d.error or d.state)

    def _show_details(self, d: LiveDeployment | None) -> None:
        if d is None:
            self.detail_title.setText("")
            self.curl_edit.setPlainText("")
            self.python_edit.setPlainText("")
        else:
            where = d.url or "not listening"
            self.detail_title.setText(f"<b>{d.name}</b> — {d.state}, {where}"
                                      + (f"<br><span style='color:#c62828'>{d.error}</span>"
                                         if d.state == "failed" and d.error else ""))
            o = d.request.options
            url = d.url or f"http://{o.host}:{o.port or 'PORT'}"
            from llmops_desktop.netaddr import is_loopback

            needs_key = bool(d.request.api_key) or not is_loopback(o.host)
            self.curl_edit.setPlainText(curl_snippet(url, d.name, needs_key=needs_key))
            self.python_edit.setPlainText(python_snippet(url, d.name, needs_key=needs_key))
        self._update_buttons()

    def _update_buttons(self) -> None:
        d = self.selected()
        self.stop_button.setEnabled(d is not None and d.alive)
        self.chat_button.setEnabled(d is not None and d.state == "running")
        self.restart_button.setEnabled(d is not None)

    def _update_uptimes(self) -> None:
        for key, d in self.deploy.deployments.items():
            if d.state == "running":
                self._items[key].setText(5, uptime_text(d.uptime_s()))

    def _copy(self, text: str, what: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.ctx.events.sig_info.emit(f"Copied the {what} snippet")


def _color(state: str) -> QBrush:
    return QBrush(QColor(_STATE_COLORS.get(state, "#777777")))
