"""The Deployments page's lower half: the selected deployment's log, recent requests,
snippets to call it with, and live figures.

Snippets use ``/v1/chat/completions`` when the model can chat, ``/v1/completions`` when it
has no chat template (and none was given). The Live tab has small charts from the monitor's
sampler and the engine's own view from ``/metrics``: slots in use, queue, batch size.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.deploy_controller import LiveDeployment
from llmops_desktop.qt.formatting import local_time
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.serving.store import request_log

RECENT_REQUESTS = 50
ENGINE_REFRESH_MS = 1000
ENGINE_GAUGES = (("llmops_engine_slots_in_use", "slots in use"),
                 ("llmops_engine_slots", "slots"),
                 ("llmops_engine_queue_length", "engine queue"),
                 ("llmops_queue_depth", "waiting"),
                 ("llmops_engine_batch_size", "batch size"),
                 # vLLM's own (a vllm deployment is vLLM's server): requests, KV cache use
                 ("vllm:num_requests_running", "running"),
                 ("vllm:num_requests_waiting", "waiting"),
                 ("vllm:kv_cache_usage_perc", "KV cache"),
                 ("vllm:gpu_cache_usage_perc", "KV cache"))  # vLLM before 0.10


def uptime_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 3600:
        return f"{s // 60}:{s % 60:02d}"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def curl_snippet(url: str, model: str, *, needs_key: bool = False, chat: bool = True) -> str:
    """A curl call: chat completions, or a plain completion for a model that cannot chat."""
    if chat:
        path, body = "chat/completions", {"model": model, "max_tokens": 64,
                                          "messages": [{"role": "user", "content": "Hello!"}]}
    else:
        path, body = "completions", {"model": model, "prompt": "Once upon a time",
                                     "max_tokens": 64}
    auth = "  -H \"Authorization: Bearer $LLMOPS_API_KEY\" \\\n" if needs_key else ""
    return (f"curl {url}/v1/{path} \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            f"{auth}"
            f"  -d '{json.dumps(body)}'")


def python_snippet(url: str, model: str, *, needs_key: bool = False, chat: bool = True) -> str:
    key = 'os.environ["LLMOPS_API_KEY"]' if needs_key else '"not-needed"'
    head = (("import os\n" if needs_key else "") + "from openai import OpenAI\n\n"
            f'client = OpenAI(base_url="{url}/v1", api_key={key})\n')
    if not chat:
        return head + ("# This model has no chat template: plain completion.\n"
                       "reply = client.completions.create(\n"
                       f"    model={model!r},\n"
                       '    prompt="Once upon a time",\n'
                       "    max_tokens=64,\n"
                       ")\n"
                       "print(reply.choices[0].text)\n")
    return head + ("reply = client.chat.completions.create(\n"
                   f"    model={model!r},\n"
                   '    messages=[{"role": "user", "content": "Hello!"}],\n'
                   "    max_tokens=64,\n"
                   ")\n"
                   "print(reply.choices[0].message.content)\n")


def can_chat(ctx: AppContext, d: LiveDeployment) -> bool:
    """Whether the deployment can answer chat requests: its model has a chat template, or
    the deployment was given one."""
    if getattr(d.request.options, "chat_template", None):
        return True
    try:
        artifact = ctx.catalog.artifact(d.request.artifact_id)
    except Exception:  # noqa: BLE001 - gone from the catalog: assume the usual
        return True
    return artifact.metadata.get("has_chat_template") is not False


def engine_figures(url: str, api_key: str | None) -> dict[str, float]:
    """The engine's slots, queue and batch size from the deployment's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    from llmops_desktop.monitor.scrape import DeploymentScraper

    text = DeploymentScraper(timeout_s=3.0).fetch(url, api_key)
    wanted = {name for name, _ in ENGINE_GAUGES}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:  # vLLM labels its gauges by model: one model here
            if sample.name in wanted:
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def engine_text(figures: dict[str, float]) -> str:
    """'Engine: 1 of 4 slots in use · 0 in the engine's queue · 0 waiting · batch of 1'."""
    if not figures:
        return "Engine: no figures from this engine's /metrics."
    g = {name: int(value) for name, value in figures.items()}
    parts = []
    if "llmops_engine_slots_in_use" in g:
        of = f" of {g['llmops_engine_slots']}" if "llmops_engine_slots" in g else ""
        parts.append(f"{g['llmops_engine_slots_in_use']}{of} slots in use")
    if "llmops_engine_queue_length" in g:
        parts.append(f"{g['llmops_engine_queue_length']} queued in the engine")
    if "llmops_queue_depth" in g:
        parts.append(f"{g['llmops_queue_depth']} waiting for a slot")
    if "llmops_engine_batch_size" in g:
        parts.append(f"last batch of {g['llmops_engine_batch_size']}")
    if "vllm:num_requests_running" in g:
        parts.append(f"{g['vllm:num_requests_running']} running")
    if "vllm:num_requests_waiting" in g:
        parts.append(f"{g['vllm:num_requests_waiting']} waiting")
    cache = figures.get("vllm:kv_cache_usage_perc", figures.get("vllm:gpu_cache_usage_perc"))
    if cache is not None:
        parts.append(f"KV cache {cache:.0%} full")
    return "Engine: " + " · ".join(parts)


class DeploymentDetails(QWidget):
    """The selected deployment: title, Chat/Restart/Stop, and its tabs."""

    sig_engine_figures = Signal(object)
    """New engine figures were shown (a dict by metric name)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.current: LiveDeployment | None = None
        self.detail_title = QLabel()
        self.detail_title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail_title.setWordWrap(True)
        self.stop_button = QPushButton(icon("cancel"), "Stop")
        self.restart_button = QPushButton(icon("refresh"), "Restart")
        self.chat_button = QPushButton(icon("chat"), "Chat")
        self.chat_button.setToolTip("Try this deployment in the Playground")
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
        self.requests.headerItem().setToolTip(6, "Completion tokens per second of decoding, "
                                                 "as the server timed it")
        curl_w, self.curl_edit = self._snippet_box("curl")
        py_w, self.python_edit = self._snippet_box("Python")
        self.tabs = QTabWidget()
        self.tabs.addTab(self.log_view, "Log")
        self.tabs.addTab(self.requests, "Recent requests")
        self.tabs.addTab(curl_w, "curl")
        self.tabs.addTab(py_w, "Python (openai)")
        self.live = QWidget()
        self.live.setToolTip("Live figures from the monitor's sampler (2 per second) and the "
                             "engine's /metrics")
        QVBoxLayout(self.live).setContentsMargins(0, 0, 0, 0)
        self.engine_label = QLabel()
        self.tabs.addTab(self.live, "Live")
        self._live_for: int | None = None
        self.engine_timer = QTimer(self)
        self.engine_timer.setInterval(ENGINE_REFRESH_MS)
        self.engine_timer.timeout.connect(self.refresh_engine)
        self._engine_busy = False
        self.tabs.currentChanged.connect(lambda _: self.refresh_requests())
        self.tabs.currentChanged.connect(lambda _: self.update_live())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.tabs, 1)

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

    # ---- public ---------------------------------------------------------------------------

    def show_deployment(self, d: LiveDeployment | None) -> None:
        self.current = d
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
            chat = can_chat(self.ctx, d)
            self.curl_edit.setPlainText(curl_snippet(url, d.name, needs_key=needs_key,
                                                     chat=chat))
            self.python_edit.setPlainText(python_snippet(url, d.name, needs_key=needs_key,
                                                         chat=chat))
        self.update_buttons()

    def update_buttons(self) -> None:
        d = self.current
        self.stop_button.setEnabled(d is not None and d.alive)
        self.chat_button.setEnabled(d is not None and d.state == "running")
        self.restart_button.setEnabled(d is not None)

    def refresh_requests(self) -> None:
        """Re-read the selected deployment's recent requests from the catalog."""
        d = self.current
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

    def update_live(self) -> None:
        """The Live tab: small charts of the selected deployment, built when first seen."""
        if self.tabs.currentWidget() is not self.live:
            self.engine_timer.stop()
            return
        d = self.current
        dep_id = d.deployment_id if d is not None and d.state == "running" else None
        if dep_id is not None:
            self.engine_timer.start()
            self.refresh_engine()
        else:
            self.engine_timer.stop()
        if dep_id == self._live_for:
            return
        self._live_for = dep_id
        layout = self.live.layout()
        while layout.count():
            old = layout.takeAt(0).widget()
            if old is not None and old is not self.engine_label:
                old.deleteLater()
        if dep_id is None:
            self.engine_label.setParent(None)
            layout.addWidget(QLabel("Start or select a running deployment to see its "
                                    "requests, time to first token and tokens/s live."))
            return
        from llmops_desktop.qt.charts import MiniChart, SeriesSpec
        from llmops_desktop.qt.monitor_controller import monitor_for

        self.engine_label.setText("Engine: …")
        layout.addWidget(self.engine_label)
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

    def refresh_engine(self) -> None:
        """Read the engine's slots, queue and batch size (in a thread, one at a time)."""
        d = self.current
        if d is None or d.state != "running" or not d.url or self._engine_busy:
            return
        self._engine_busy = True
        url, key = d.url, d.request.api_key or None
        run_in_thread(lambda: engine_figures(url, key), self._on_engine_figures,
                      self._on_engine_error, receiver=self)

    def _on_engine_figures(self, figures: dict[str, Any]) -> None:
        self._engine_busy = False
        self.engine_label.setText(engine_text(figures))
        self.sig_engine_figures.emit(figures)

    def _on_engine_error(self, exc: BaseException) -> None:
        self._engine_busy = False
        self.engine_label.setText(f"Engine: its /metrics cannot be read now ({exc}).")

    def _copy(self, text: str, what: str) -> None:
        QGuiApplication.clipboard().setText(text)
        self.ctx.events.sig_info.emit(f"Copied the {what} snippet")
