"""The Playground's parts: a message bubble (who spoke, the text, and under a reply its
figures — time to first token, tokens/s, tokens, why it ended — and the thumbs that rate
it), and the settings box (system prompt, sampling, API key).

A bubble shows a core :class:`~llmops_desktop.serving.chat_session.Turn`; the page redraws
it as the reply streams in. The settings box gives the core
:class:`~llmops_desktop.serving.chat_session.Sampling` for the next question.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.qt.context import icon
from llmops_desktop.serving.chat_session import (
    DEFAULT_MAX_TOKENS,
    MODES,
    Sampling,
    Turn,
    stats_text,
)


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
        who = self.who = QLabel("<b>You</b>" if mine else "<b>Model</b>")
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stats = QLabel()
        self.stats.setStyleSheet("color: palette(mid);")
        self.stats.setWordWrap(True)  # a failure's message reads in full, without scrolling
        self.stats.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
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
        self.calls = QLabel()  # the tools the model called, as calls rather than text
        self.calls.setWordWrap(True)
        self.calls.setTextFormat(Qt.TextFormat.PlainText)
        self.calls.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.calls.setStyleSheet("font-family: monospace; color: #1565c0;")
        self.calls.hide()
        layout.addWidget(self.calls)
        if not mine:
            layout.addLayout(foot)
        self.refresh()

    def _thumb(self, name: str, tip: str) -> QToolButton:
        b = QToolButton(self)  # a question has none shown, yet they must not be windows
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
        calls = t.tool_calls if t.role == "assistant" else []
        self.calls.setText("\n".join(f"Tool call: {c['name']}({c['arguments']})" for c in calls))
        self.calls.setVisible(bool(calls))
        if t.state == "failed":
            self.stats.setStyleSheet("color: #c62828;")
        if t.role == "assistant" and t.request.get("mode") == "completion":
            self.who.setText("<b>Model</b> <span style='color: gray'>(plain completion)</span>")
        for b, value in ((self.up, 1), (self.down, -1)):
            b.setVisible(t.role == "assistant" and t.state != "failed")  # nor rate an error
            b.setEnabled(t.rateable)
            b.blockSignals(True)
            b.setChecked(t.rating == value)
            b.blockSignals(False)


class ChatSettingsBox(QGroupBox):
    """The system prompt and how replies are sampled, for the next question."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Settings", parent)
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
        self.schema_edit = QPlainTextEdit()
        self.schema_edit.setPlaceholderText('JSON schema (optional), e.g. {"type": "object", '
                                            '"properties": {"answer": {"type": "string"}}}')
        self.schema_edit.setToolTip("Replies are constrained to this JSON schema "
                                    "(response_format json_schema)")
        self.schema_edit.setMaximumHeight(90)
        self.tools_edit = QPlainTextEdit()
        self.tools_edit.setPlaceholderText('Tools (optional): a JSON list of OpenAI tool '
                                           'definitions, [{"type": "function", "function": '
                                           '{"name": …, "parameters": {…}}}]')
        self.tools_edit.setToolTip("Functions the model may call; its calls are shown as such")
        self.tools_edit.setMaximumHeight(90)
        self.tool_choice_combo = QComboBox()
        self.tool_choice_combo.addItems(["auto", "required", "none"])
        self.tool_choice_combo.setToolTip("auto: the model decides; required: it must call one "
                                          "of the tools; none: it answers in text")
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("only if the deployment has one")
        self.key_edit.setToolTip("The deployment's API key (filled in for deployments this "
                                 "window started)")
        outer = QVBoxLayout(self)
        outer.addWidget(QLabel("System prompt"))
        outer.addWidget(self.system_edit)
        form = QFormLayout()
        form.addRow("Temperature", self.temperature_spin)
        form.addRow("Top p", self.top_p_spin)
        form.addRow("Max tokens", self.max_tokens_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("API key", self.key_edit)
        outer.addLayout(form)
        outer.addWidget(QLabel("Structured output"))
        outer.addWidget(self.schema_edit)
        outer.addWidget(QLabel("Tools"))
        outer.addWidget(self.tools_edit)
        choice = QFormLayout()
        choice.addRow("Tool choice", self.tool_choice_combo)
        outer.addLayout(choice)
        outer.addStretch(1)

    def system(self) -> str:
        return self.system_edit.toPlainText().strip()

    def sampling(self) -> Sampling:
        seed = self.seed_spin.value()
        return Sampling(temperature=self.temperature_spin.value(), top_p=self.top_p_spin.value(),
                        max_tokens=self.max_tokens_spin.value(), seed=seed if seed >= 0 else None,
                        json_schema=_json(self.schema_edit, "The JSON schema", dict),
                        tools=_json(self.tools_edit, "The tools", list),
                        tool_choice=self.tool_choice_combo.currentText())


def _json(edit: QPlainTextEdit, what: str, kind: type) -> Any:
    """The edit's JSON (None when empty); InvalidInputError saying what is wrong."""
    text = edit.toPlainText().strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"{what} is not valid JSON: {exc}.") from None
    if not isinstance(value, kind):
        raise InvalidInputError(f"{what} must be a JSON {'object' if kind is dict else 'list'}.")
    return value


def mode_combo() -> QComboBox:
    """Chat or plain completion, each with its endpoint as the tooltip."""
    combo = QComboBox()
    for mode, (label, path) in MODES.items():
        combo.addItem(label, mode)
        combo.setItemData(combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
    combo.setToolTip("Chat sends the conversation as messages (the model's chat template "
                     "makes the prompt); plain completion sends your text as the prompt to "
                     "continue (/v1/completions), for a model without a chat template")
    return combo


def mode_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet("color: palette(mid);")
    return label


def show_mode(combo: QComboBox, label: QLabel, session: Any, chat_ok: bool) -> None:
    """Show a session's mode in the combo, and say it (and why, for a model that cannot
    chat) in the label."""
    if session is None:
        label.setText("")
        return
    combo.blockSignals(True)
    combo.setCurrentIndex(max(0, combo.findData(session.mode)))
    combo.blockSignals(False)
    text = f"Mode: {session.mode_text}."
    if not chat_ok:
        text += (" This model has no chat template, so chat requests fail; plain completion "
                 "continues your text. Serve it with a chat template to chat.")
    label.setText(text)

