"""The Playground page: chat with any running deployment, see how fast it answers, rate it.

The page shows one core :class:`~llmops_desktop.serving.chat_session.ChatSession` per
deployment (the conversation, the request, the figures, the ratings; ``llmops chat`` uses
the same) and listens to it; :mod:`llmops_desktop.qt.chat_pane` draws the conversation
and streams the replies. Under each reply: time to first token and tokens per second (the
server's decode timing, the figure its request log keeps). A model without a chat template
is used in plain completion (``/v1/completions``); the page says which mode it is in.
Thumbs up or down store the reply, its conversation and the deployment's artifact in the
catalog; Export writes every rating as JSONL. Each deployment keeps its own conversation
while the app runs.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.errors import LLMOpsError
from llmops_desktop.qt.arena_panel import ARENA, ArenaPanel
from llmops_desktop.qt.chat_pane import ChatPane
from llmops_desktop.qt.chat_widgets import ChatSettingsBox, mode_combo, mode_label, show_mode
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.deploy_controller import DeployController, LiveDeployment
from llmops_desktop.qt.deploy_details import can_chat
from llmops_desktop.qt.prompt_dialogs import PromptDialog, save_as_prompt_dialog
from llmops_desktop.serving.chat_session import (
    CHAT,
    COMPLETION,
    ChatSession,
    ChatTarget,
)
from llmops_desktop.serving.feedback import export_jsonl


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
    sig_show_prompt_requested = Signal(str)
    """Show this saved prompt version (NAME@N) on the Prompts page."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.sessions: dict[int, ChatSession] = {}  # by deployment key

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
        self.prompt_button = QPushButton(icon("prompt"), "Save as prompt…")
        self.prompt_button.setToolTip("Keep the system prompt, the last question (as a "
                                      "template) and the settings as a versioned prompt "
                                      "(Ctrl+Shift+S)")
        self.prompt_button.clicked.connect(self.save_as_prompt)
        self.mode_combo, self.mode_label = mode_combo(), mode_label()
        self.mode_combo.currentIndexChanged.connect(self._on_mode_changed)
        self.mode_combo.addItem("Side by side (blind)", ARENA)
        self.mode_combo.setItemData(self.mode_combo.count() - 1, "Two deployments answer the "
                                    "same prompt unlabelled; pick the better reply",
                                    Qt.ItemDataRole.ToolTipRole)
        top.addWidget(QLabel("Deployment"))
        top.addWidget(self.deployment_combo, 1)
        top.addWidget(self.mode_combo)
        top.addWidget(self.new_button)
        top.addWidget(self.export_button)
        top.addWidget(self.prompt_button)
        layout.addLayout(top)
        layout.addWidget(self.mode_label)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.settings_box = ChatSettingsBox()
        box = self.settings_box  # its fields, as the page's own (the tour and tests set them)
        self.system_edit, self.temperature_spin, self.top_p_spin = (
            box.system_edit, box.temperature_spin, box.top_p_spin)
        self.max_tokens_spin, self.seed_spin, self.key_edit = (
            box.max_tokens_spin, box.seed_spin, box.key_edit)
        splitter.addWidget(box)
        self.chat_area = ChatPane()  # the conversation; its widgets, as the page's own
        pane = self.chat_area
        self._views, self.messages, self.scroll = pane.views, pane.messages, pane.scroll
        self.empty_label, self.input = pane.empty_label, pane.input
        self.send_button, self.stop_button = pane.send_button, pane.stop_button
        self.send_button.clicked.connect(self.send)
        self.stop_button.clicked.connect(self.stop)
        pane.sig_rated.connect(self.rate_reply)
        pane.sig_reply_finished.connect(lambda _: self._update_buttons())
        pane.sig_reply_finished.connect(self.sig_reply_finished)
        pane.sig_reply_piece.connect(self.sig_reply_piece)
        self.arena_panel = ArenaPanel(ctx, self.settings_box, self._target)  # blind mode
        self.chat_stack = QStackedWidget()
        self.chat_stack.addWidget(self.chat_area)
        self.chat_stack.addWidget(self.arena_panel)
        splitter.addWidget(self.chat_stack)
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
        # While the page is shown, wherever the focus is (a hidden page's shortcut never fires).
        self.prompt_shortcut = QShortcut(QKeySequence("Ctrl+Shift+S"), self)
        self.prompt_shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
        self.prompt_shortcut.activated.connect(self.save_as_prompt)

        self.deploy: DeployController | None = None
        self._update_buttons()

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
        self.deployment_combo.setCurrentIndex(max(index, 0))
        self.deployment_combo.blockSignals(False)
        self.arena_panel.show_deployments(self.running())
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

    def conversation(self) -> ChatSession | None:
        """The current deployment's chat (made on first use)."""
        d = self.current()
        if d is None:
            return None
        session = self.sessions.get(d.key)
        if session is None:  # a model that cannot chat starts in plain completion
            mode = CHAT if can_chat(self.ctx, d) else COMPLETION
            session = self.sessions[d.key] = ChatSession(self._target(d), catalog=self.ctx.catalog,
                                                         mode=mode)
        return session

    def send(self, text: str | None = None) -> str:
        """Send ``text`` (default: the input box) and stream the reply; returns its id."""
        if self.mode_combo.currentData() == ARENA:  # both arena models answer instead
            self.arena_panel.ask(text)
            return ""
        d, session = self.current(), self.conversation()
        text = (text if isinstance(text, str) else self.input.toPlainText()).strip()
        if d is None or session is None or not text or self.chat_area.streaming:
            return ""
        try:
            session.sampling = self.settings_box.sampling()
        except LLMOpsError as exc:  # a schema or tools that are not JSON: the text stays
            self.ctx.events.sig_error.emit(str(exc))
            return ""
        self.input.clear()
        session.target = self._target(d)  # a restarted deployment has a new address
        session.system = self.settings_box.system()
        turn = session.ask(text)
        self.chat_area.stream(session, turn)
        self._update_buttons()
        return turn.reply_id

    def stop(self) -> None:
        self.arena_panel.stop()
        self.chat_area.stop()

    def new_chat(self) -> None:
        session = self.conversation()
        if session is None or self.chat_area.streaming:
            return
        session.reset()
        self._show_conversation()

    def rate_reply(self, reply_id: str, rating: int) -> None:
        """Store (or take back) a rating of a reply in the catalog."""
        session = next((c for c in self.sessions.values() if c.find(reply_id)), None)
        if session is None:
            return
        try:
            turn = session.rate(reply_id, rating)
        except (LLMOpsError, OSError, ValueError) as exc:
            self.ctx.events.sig_error.emit(f"Could not store the rating: {exc}")
            return
        self.chat_area.refresh_turn(turn)
        if rating:
            self.ctx.events.sig_info.emit("Feedback stored" if rating > 0 else
                                          "Feedback stored (thumbs down)")

    def export_feedback(self, path: Path) -> int:
        """Write every rating as JSONL to ``path``; returns how many."""
        n = export_jsonl(self.ctx.catalog, path)
        self.ctx.events.sig_info.emit(f"Exported {n} rated repl{'ies' if n != 1 else 'y'} "
                                      f"to {path}")
        return n

    def save_as_prompt(self) -> PromptDialog | None:
        """The Save as prompt dialog, filled from this chat (window-modal, not blocking)."""
        try:
            dialog = save_as_prompt_dialog(self.ctx.catalog, self)
        except LLMOpsError as exc:  # the schema box is not JSON
            self.ctx.events.sig_error.emit(str(exc))
            return None
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.sig_open_requested.connect(self.sig_show_prompt_requested)
        dialog.open()
        return dialog

    def on_shown(self) -> None:
        self.reload_deployments()
        self.input.setFocus()

    def refresh(self) -> None:
        self.reload_deployments()

    # ---- internals ------------------------------------------------------------------------

    def _target(self, d: LiveDeployment) -> ChatTarget:
        return ChatTarget(url=d.url, model=d.name,
                          api_key=self.key_edit.text().strip() or d.request.api_key,
                          deployment_id=d.deployment_id, artifact_id=d.request.artifact_id,
                          artifact_ref=d.request.artifact_ref)

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export feedback", "feedback.jsonl",
                                              "JSON lines (*.jsonl)")
        if path:
            try:
                self.export_feedback(Path(path))
            except OSError as exc:
                self.ctx.events.sig_error.emit(f"Could not write {path}: {exc.strerror or exc}")

    def _on_mode_changed(self, _index: int) -> None:
        arena = self.mode_combo.currentData() == ARENA
        self.chat_stack.setCurrentWidget(self.arena_panel if arena else self.chat_area)
        if arena:
            self.mode_label.setText("Side by side (blind): two deployments answer; pick the "
                                    "better reply before you see which model wrote it.")
            return
        session = self.conversation()
        if session is not None:
            session.mode = self.mode_combo.currentData() or CHAT
        self._show_mode()

    def _show_mode(self) -> None:
        """Say which mode the next message goes in, and why completion for some models."""
        if self.mode_combo.currentData() == ARENA:
            return
        session, d = self.conversation(), self.current()
        show_mode(self.mode_combo, self.mode_label, session,
                  d is None or can_chat(self.ctx, d))

    def _show_conversation(self) -> None:
        self._show_mode()
        session = self.conversation()
        self.chat_area.show_turns(session.turns if session else [])
        self._update_buttons()

    def _update_buttons(self) -> None:
        d = self.current()
        streaming = self.chat_area.streaming
        self.send_button.setEnabled(d is not None and not streaming)
        self.stop_button.setEnabled(streaming)
        self.new_button.setEnabled(d is not None and not streaming)
        self.deployment_combo.setEnabled(not streaming)
        self.mode_combo.setEnabled(d is not None and not streaming)
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
