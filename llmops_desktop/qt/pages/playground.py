"""The Playground page: chat with any running deployment, see how fast it answers, rate it.

Replies stream in through :func:`~llmops_desktop.serving.client.stream_chat` on a worker
thread; its pieces reach the GUI thread through the pump (:mod:`llmops_desktop.qt.pump`)
and are drawn at most 25 times a second. Stop closes the connection, which stops the
server's generation as well. Under each reply: time to first token and tokens per second
as the client saw them. Thumbs up or down store the reply, its conversation and the
deployment's artifact in the catalog (:mod:`llmops_desktop.serving.feedback`); Export
writes every rating as JSONL. Each deployment keeps its own conversation while the app runs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.errors import LLMOpsError
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.deploy_controller import DeployController, LiveDeployment
from llmops_desktop.qt.pump import create_worker
from llmops_desktop.serving.client import Cancel, ReplyStats, stream_chat
from llmops_desktop.serving.feedback import Feedback, export_jsonl, rate

REDRAW_MS = 40
DEFAULT_MAX_TOKENS = 256


@dataclass
class Turn:
    """One message of a conversation; an assistant turn also has what it took and its rating."""

    role: str
    content: str
    reply_id: str = ""
    state: str = "done"  # streaming, done, stopped, failed
    stats: ReplyStats | None = None
    error: str = ""
    rating: int = 0
    request: dict[str, Any] = field(default_factory=dict)  # what was sent for this reply


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)

    def history(self) -> list[dict[str, str]]:
        """The messages to send: every finished turn (a failed reply and its question are
        left out, so the model never sees an error as its own words)."""
        out: list[dict[str, str]] = []
        for i, t in enumerate(self.turns):
            if t.role == "assistant" and t.state in ("done", "stopped") and t.content:
                out.append({"role": "assistant", "content": t.content})
            elif t.role == "user":
                reply = self.turns[i + 1] if i + 1 < len(self.turns) else None
                if reply is None or reply.state != "failed":
                    out.append({"role": "user", "content": t.content})
        return out


def stats_text(turn: Turn) -> str:
    """The line under a reply: 'TTFT 41 ms · 87.3 tok/s · 64 tokens · length'."""
    if turn.state == "streaming":
        return "…"
    if turn.state == "failed":
        return f"Failed: {turn.error}"
    s = turn.stats
    parts = []
    if s is not None and s.ttft_ms is not None:
        parts.append(f"TTFT {s.ttft_ms:.0f} ms")
    if s is not None and s.tokens_per_s is not None:
        parts.append(f"{s.tokens_per_s:.1f} tok/s")
    if s is not None and s.completion_tokens is not None:
        parts.append(f"{s.completion_tokens} tokens")
    if turn.state == "stopped":
        parts.append("stopped")
    elif s is not None and s.finish_reason:
        parts.append({"length": "hit max tokens"}.get(s.finish_reason, s.finish_reason))
    return " · ".join(parts)


class MessageView(QFrame):
    """One message: who, the text, and for a reply its figures and thumbs."""

    sig_rated = Signal(str, int)
    """Reply id and the new rating (1, -1, or 0 to take it back)."""

    def __init__(self, turn: Turn, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.turn = turn
        self.setFrameShape(QFrame.Shape.StyledPanel)
        mine = turn.role == "user"
        self.setStyleSheet("MessageView { background: %s; border-radius: 6px; }"
                           % ("palette(alternate-base)" if mine else "palette(base)"))
        who = QLabel("<b>You</b>" if mine else "<b>Model</b>")
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats = QLabel()
        self.stats.setStyleSheet("color: palette(mid);")
        self.up = self._thumb("thumb-up", "Good reply: store it as positive feedback")
        self.down = self._thumb("thumb-down", "Bad reply: store it as negative feedback")
        self.up.clicked.connect(lambda on: self._rate(1 if on else 0))
        self.down.clicked.connect(lambda on: self._rate(-1 if on else 0))
        foot = QHBoxLayout()
        foot.addWidget(self.stats, 1)
        foot.addWidget(self.up)
        foot.addWidget(self.down)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.addWidget(who)
        layout.addWidget(self.text)
        if not mine:
            layout.addLayout(foot)
        self.refresh()

    def _thumb(self, name: str, tip: str) -> QToolButton:
        b = QToolButton()
        b.setIcon(icon(name))
        b.setCheckable(True)
        b.setAutoRaise(True)
        b.setToolTip(tip)
        return b

    def _rate(self, rating: int) -> None:
        self.sig_rated.emit(self.turn.reply_id, rating)

    def refresh(self) -> None:
        t = self.turn
        self.text.setText(t.content or ("…" if t.state == "streaming" else ""))
        self.stats.setText(stats_text(t))
        if t.state == "failed":
            self.stats.setStyleSheet("color: #c62828;")
        rateable = t.role == "assistant" and t.state in ("done", "stopped") and bool(t.content)
        for b, value in ((self.up, 1), (self.down, -1)):
            b.setEnabled(rateable)
            b.blockSignals(True)
            b.setChecked(t.rating == value)
            b.blockSignals(False)


class PlaygroundPage(Page):
    """Chat with a running deployment."""

    page_id = "playground"
    title = "Playground"
    icon_name = "chat"
    tooltip = "Chat with a running deployment; rate its replies"

    sig_reply_finished = Signal(str)
    """A reply ended (its id): finished, stopped or failed."""
    sig_reply_piece = Signal(str)
    """A piece of the reply being streamed arrived (on the GUI thread)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.conversations: dict[int, Conversation] = {}
        self._views: list[MessageView] = []
        self._stream: tuple[int, int, Turn, Cancel] | None = None  # id, deployment key, turn
        self._dirty = False
        self.redraw = QTimer(self)
        self.redraw.setInterval(REDRAW_MS)
        self.redraw.timeout.connect(self._flush)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        top = QHBoxLayout()
        self.deployment_combo = QComboBox()
        self.deployment_combo.setMinimumContentsLength(24)
        self.deployment_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.deployment_combo.setToolTip("A running deployment (start one on the Deployments "
                                         "page)")
        self.deployment_combo.currentIndexChanged.connect(lambda _: self._show_conversation())
        self.new_button = QPushButton(icon("refresh"), "New chat")
        self.new_button.setToolTip("Start over with this deployment (Ctrl+Shift+N)")
        self.new_button.clicked.connect(self.new_chat)
        self.export_button = QPushButton(icon("download"), "Export feedback…")
        self.export_button.setToolTip("Save every rated reply as JSONL (chat messages and a "
                                      "label), ready for evaluation or fine-tuning")
        self.export_button.clicked.connect(self._ask_export)
        top.addWidget(QLabel("Deployment"))
        top.addWidget(self.deployment_combo, 1)
        top.addWidget(self.new_button)
        top.addWidget(self.export_button)
        layout.addLayout(top)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_settings())
        splitter.addWidget(self._build_chat())
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([260, 700])
        splitter.setChildrenCollapsible(False)
        layout.addWidget(splitter, 1)

        for keys, slot in (("Ctrl+Return", self.send), ("Ctrl+Enter", self.send),
                           ("Escape", self.stop), ("Ctrl+Shift+N", self.new_chat)):
            sc = QShortcut(QKeySequence(keys), self)
            sc.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            sc.activated.connect(slot)

        self.deploy: DeployController | None = None
        self._update_buttons()

    # ---- building -------------------------------------------------------------------------

    def _build_settings(self) -> QWidget:
        box = QGroupBox("Settings")
        self.system_edit = QPlainTextEdit()
        self.system_edit.setPlaceholderText("System prompt (optional), e.g. 'You are a concise "
                                            "assistant.'")
        self.system_edit.setMaximumHeight(160)
        self.temperature_spin = QDoubleSpinBox()
        self.temperature_spin.setRange(0.0, 2.0)
        self.temperature_spin.setSingleStep(0.1)
        self.temperature_spin.setValue(0.7)
        self.temperature_spin.setToolTip("Randomness: 0 always picks the likeliest token")
        self.top_p_spin = QDoubleSpinBox()
        self.top_p_spin.setRange(0.01, 1.0)
        self.top_p_spin.setSingleStep(0.05)
        self.top_p_spin.setValue(0.95)
        self.top_p_spin.setToolTip("Sample only from the likeliest tokens that together have "
                                   "this probability")
        self.max_tokens_spin = QSpinBox()
        self.max_tokens_spin.setRange(1, 32768)
        self.max_tokens_spin.setValue(DEFAULT_MAX_TOKENS)
        self.max_tokens_spin.setToolTip("Longest reply in tokens (the deployment's context "
                                        "length bounds prompt and reply together)")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(-1, 2**31 - 1)
        self.seed_spin.setValue(-1)
        self.seed_spin.setSpecialValueText("random")
        self.seed_spin.setToolTip("The same seed, prompt and settings give the same reply")
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("only if the deployment has one")
        self.key_edit.setToolTip("The deployment's API key (filled in for deployments this "
                                 "window started)")
        outer = QVBoxLayout(box)
        outer.addWidget(QLabel("System prompt"))
        outer.addWidget(self.system_edit)
        form = QFormLayout()
        form.addRow("Temperature", self.temperature_spin)
        form.addRow("Top p", self.top_p_spin)
        form.addRow("Max tokens", self.max_tokens_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("API key", self.key_edit)
        outer.addLayout(form)
        outer.addStretch(1)
        return box

    def _build_chat(self) -> QWidget:
        self.messages = QWidget()
        self.messages_layout = QVBoxLayout(self.messages)
        self.messages_layout.setContentsMargins(4, 4, 4, 4)
        self.messages_layout.addStretch(1)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.messages)
        self.empty_label = QLabel()
        self.empty_label.setWordWrap(True)
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setStyleSheet("color: palette(mid);")
        self.input = QPlainTextEdit()
        self.input.setPlaceholderText("Message (Ctrl+Enter sends, Esc stops)")
        self.input.setMaximumHeight(110)
        self.send_button = QPushButton(icon("send"), "Send")
        self.send_button.setToolTip("Send (Ctrl+Enter)")
        self.send_button.clicked.connect(self.send)
        self.stop_button = QPushButton(icon("cancel"), "Stop")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stop)
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)
        w = QWidget()
        layout = QVBoxLayout(w)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.scroll, 1)
        layout.addLayout(bottom)
        return w

    # ---- public ---------------------------------------------------------------------------

    def attach(self, deploy: DeployController) -> None:
        """Follow the window's deployments (the Deployments page owns the controller)."""
        self.deploy = deploy
        deploy.sig_added.connect(lambda _: self.reload_deployments())
        deploy.sig_changed.connect(lambda _: self.reload_deployments())
        self.reload_deployments()

    def running(self) -> list[LiveDeployment]:
        if self.deploy is None:
            return []
        return [d for d in self.deploy.deployments.values() if d.state == "running" and d.url]

    def reload_deployments(self) -> None:
        current = self.deployment_combo.currentData()
        self.deployment_combo.blockSignals(True)
        self.deployment_combo.clear()
        for d in self.running():
            self.deployment_combo.addItem(f"{d.name}  —  {d.url}", d.key)
        index = self.deployment_combo.findData(current)
        self.deployment_combo.setCurrentIndex(index if index >= 0 else 0)
        self.deployment_combo.blockSignals(False)
        if self.deployment_combo.currentData() != current:
            self._show_conversation()
        self._update_buttons()

    def select_deployment(self, key: int) -> bool:
        self.reload_deployments()
        index = self.deployment_combo.findData(key)
        if index >= 0:
            self.deployment_combo.setCurrentIndex(index)
            self.input.setFocus()
        return index >= 0

    def current(self) -> LiveDeployment | None:
        key = self.deployment_combo.currentData()
        return self.deploy.get(key) if self.deploy is not None and key is not None else None

    def conversation(self) -> Conversation | None:
        d = self.current()
        return self.conversations.setdefault(d.key, Conversation()) if d else None

    def send(self, text: str | None = None) -> str:
        """Send ``text`` (default: the input box) and stream the reply; returns its id."""
        d, conv = self.current(), self.conversation()
        text = (text if isinstance(text, str) else self.input.toPlainText()).strip()
        if d is None or conv is None or not text or self._stream is not None:
            return ""
        self.input.clear()
        conv.turns.append(Turn("user", text))
        history = conv.history()
        system = self.system_edit.toPlainText().strip()
        body: dict[str, Any] = {
            "model": d.name,
            "messages": ([{"role": "system", "content": system}] if system else []) + history,
            "temperature": round(self.temperature_spin.value(), 3),
            "top_p": round(self.top_p_spin.value(), 3),
            "max_tokens": self.max_tokens_spin.value()}
        if self.seed_spin.value() >= 0:
            body["seed"] = self.seed_spin.value()
        turn = Turn("assistant", "", reply_id=uuid.uuid4().hex, state="streaming",
                    stats=ReplyStats(), request={"body": body, "system": system,
                                                 "history": history, "prompt": text})
        conv.turns.append(turn)
        self._add_view(conv.turns[-2])
        self._add_view(turn)
        cancel = Cancel()
        api_key = self.key_edit.text().strip() or d.request.api_key
        worker = create_worker(partial(stream_chat, d.url, body, api_key=api_key,
                                       cancel=cancel, stats=turn.stats),
                               start=False, receiver=self, name="llmops-chat")
        stream_id = worker.id
        worker.yielded.connect(lambda piece: self._on_delta(stream_id, piece))
        worker.returned.connect(lambda _: self._on_done(stream_id, ""))
        worker.errored.connect(lambda exc: self._on_done(stream_id, _error_text(exc)))
        self._stream = (stream_id, d.key, turn, cancel)
        worker.start()
        self.redraw.start()
        self._update_buttons()
        return turn.reply_id

    def stop(self) -> None:
        if self._stream is not None:
            self._stream[3].set()

    def new_chat(self) -> None:
        d = self.current()
        if d is None or self._stream is not None:
            return
        self.conversations[d.key] = Conversation()
        self._show_conversation()

    def rate_reply(self, reply_id: str, rating: int) -> None:
        """Store (or take back) a rating of a reply in the catalog."""
        found = self._find(reply_id)
        if found is None:
            return
        key, turn = found
        d = self.deploy.get(key) if self.deploy is not None else None
        req, stats = turn.request, turn.stats
        body = req.get("body", {})
        try:
            rate(self.ctx.catalog, Feedback(
                reply_id=reply_id, rating=rating, reply=turn.content,
                prompt=req.get("prompt", ""), messages=req.get("history", []),
                system_prompt=req.get("system", ""),
                deployment_id=d.deployment_id if d else None,
                artifact_id=d.request.artifact_id if d else None,
                artifact_ref=d.request.artifact_ref if d else "",
                params={k: body[k] for k in ("model", "temperature", "top_p", "max_tokens",
                                             "seed") if k in body},
                ttft_ms=stats.ttft_ms if stats else None,
                tokens_per_s=stats.tokens_per_s if stats else None))
        except (LLMOpsError, OSError, ValueError) as exc:
            self.ctx.events.sig_error.emit(f"Could not store the rating: {exc}")
            return
        turn.rating = rating
        for view in self._views:
            if view.turn is turn:
                view.refresh()
        if rating:
            self.ctx.events.sig_info.emit("Feedback stored" if rating > 0 else
                                          "Feedback stored (thumbs down)")

    def export_feedback(self, path: Path) -> int:
        """Write every rating as JSONL to ``path``; returns how many."""
        n = export_jsonl(self.ctx.catalog, path)
        self.ctx.events.sig_info.emit(f"Exported {n} rated repl{'ies' if n != 1 else 'y'} "
                                      f"to {path}")
        return n

    def on_shown(self) -> None:
        self.reload_deployments()
        self.input.setFocus()

    def refresh(self) -> None:
        self.reload_deployments()

    # ---- internals ------------------------------------------------------------------------

    def _find(self, reply_id: str) -> tuple[int, Turn] | None:
        for key, conv in self.conversations.items():
            for t in conv.turns:
                if t.reply_id == reply_id:
                    return key, t
        return None

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export feedback", "feedback.jsonl",
                                              "JSON lines (*.jsonl)")
        if path:
            try:
                self.export_feedback(Path(path))
            except OSError as exc:
                self.ctx.events.sig_error.emit(f"Could not write {path}: {exc.strerror or exc}")

    def _add_view(self, turn: Turn) -> None:
        view = MessageView(turn)
        view.sig_rated.connect(self.rate_reply)
        self._views.append(view)
        self.messages_layout.insertWidget(self.messages_layout.count() - 1, view)
        QTimer.singleShot(0, self._scroll_to_end)

    def _scroll_to_end(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _show_conversation(self) -> None:
        for view in self._views:
            view.setParent(None)
            view.deleteLater()
        self._views.clear()
        conv = self.conversation()
        for turn in conv.turns if conv else []:
            self._add_view(turn)
        self._update_buttons()

    def _update_buttons(self) -> None:
        d = self.current()
        streaming = self._stream is not None
        self.send_button.setEnabled(d is not None and not streaming)
        self.stop_button.setEnabled(streaming)
        self.new_button.setEnabled(d is not None and not streaming)
        self.deployment_combo.setEnabled(not streaming)
        if d is None:
            self.empty_label.setText("No deployment is running. Start one on the Deployments "
                                     "page (right-click a model → Serve…), then chat with it "
                                     "here.")
            self.empty_label.show()
        else:
            self.empty_label.hide()
            self.key_edit.setPlaceholderText("set" if d.request.api_key else
                                             "only if the deployment has one")
            n_ctx = d.info.get("n_ctx")
            if isinstance(n_ctx, int) and n_ctx > 1:
                self.max_tokens_spin.setMaximum(n_ctx - 1)  # the prompt needs a token at least

    def _on_delta(self, stream_id: int, piece: str) -> None:
        if self._stream is None or self._stream[0] != stream_id:
            return
        self._stream[2].content += piece
        self._dirty = True
        self.sig_reply_piece.emit(piece)

    def _flush(self) -> None:
        if not self._dirty or self._stream is None:
            return
        self._dirty = False
        turn = self._stream[2]
        for view in reversed(self._views):
            if view.turn is turn:
                bar = self.scroll.verticalScrollBar()
                at_end = bar.value() >= bar.maximum() - 4
                view.refresh()
                if at_end:
                    QTimer.singleShot(0, self._scroll_to_end)
                break

    def _on_done(self, stream_id: int, error: str) -> None:
        if self._stream is None or self._stream[0] != stream_id:
            return
        _, _, turn, cancel = self._stream
        self._stream = None
        self.redraw.stop()
        if cancel.is_set():
            turn.state = "stopped"
        elif error:
            turn.state, turn.error = "failed", error
        else:
            turn.state = "done"
        self._dirty = True
        self._stream_flush_final(turn)
        self._update_buttons()
        self.sig_reply_finished.emit(turn.reply_id)

    def _stream_flush_final(self, turn: Turn) -> None:
        for view in self._views:
            if view.turn is turn:
                view.refresh()
        QTimer.singleShot(0, self._scroll_to_end)


def _error_text(exc: BaseException) -> str:
    """How a failed reply reads under it (never a crash)."""
    if isinstance(exc, LLMOpsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
