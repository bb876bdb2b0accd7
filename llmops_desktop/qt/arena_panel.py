"""The Playground's blind arena: two deployments answer one prompt, unlabelled, and you pick.

Both replies stream at once, each from its own core
:class:`~llmops_desktop.serving.chat_session.ChatSession` on a worker thread through the
pump, and are drawn at most 25 times a second. They are shown as "A" and "B" in a random
order, without the figures (speed gives a model away); once both have ended, "A is better",
"B is better" or "Tie" stores the pick (:mod:`llmops_desktop.evaluate.arena`) and reveals
which model wrote which reply. The sampling settings and system prompt are the Playground's.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.errors import LLMOpsError
from llmops_desktop.evaluate.arena import SIDES, Battle, Side, record_battle, side_shown
from llmops_desktop.qt.chat_widgets import ChatSettingsBox
from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.deploy_controller import LiveDeployment
from llmops_desktop.qt.deploy_details import can_chat
from llmops_desktop.qt.pump import create_worker
from llmops_desktop.serving.chat_session import (
    CHAT,
    COMPLETION,
    ChatSession,
    ChatTarget,
    Delta,
    ReplyEnded,
    Turn,
    stats_text,
)

ARENA = "arena"  # the Playground's mode that shows this panel
REDRAW_MS = 40
LABELS = ("A", "B")  # A on the left
PICKS = (("A", "A is better", "Alt+A"), ("tie", "Tie", "Alt+T"), ("B", "B is better", "Alt+B"))


class ReplyColumn(QFrame):
    """One unlabelled reply: "A" or "B", its text, and after the pick who wrote it."""

    def __init__(self, label: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = label
        self.turn: Turn | None = None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        self.text = QLabel()
        self.text.setTextFormat(Qt.TextFormat.PlainText)
        self.text.setWordWrap(True)
        self.text.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.text)
        self.stats = QLabel()
        self.stats.setWordWrap(True)
        self.stats.setStyleSheet("color: palette(mid);")
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.stats)
        self.show_turn(None)

    def show_turn(self, turn: Turn | None, revealed: str = "") -> None:
        """Draw ``turn`` under the bare label, or with who wrote it once ``revealed``."""
        self.turn = turn
        self.title.setText(f"<b>{self.label}</b>" + (f" — {revealed}" if revealed else ""))
        self.text.setText("" if turn is None else turn.content or
                          ("…" if turn.state == "streaming" else ""))
        failed = turn is not None and turn.state == "failed"
        self.stats.setText(stats_text(turn) if turn is not None and (revealed or failed) else "")
        self.stats.setStyleSheet("color: #c62828;" if failed else "color: palette(mid);")


class ArenaPanel(QWidget):
    """Ask two deployments the same prompt, pick the better reply blind, see who was who."""

    sig_replies_finished = Signal()
    """Both replies of the round ended (done, stopped or failed)."""
    sig_picked = Signal(int)
    """A pick was stored (the battle's id) and the models revealed."""

    def __init__(self, ctx: AppContext, settings: ChatSettingsBox,
                 target_for: Callable[[LiveDeployment], ChatTarget],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.settings, self.target_for = ctx, settings, target_for
        self.live: dict[int, LiveDeployment] = {}  # the running deployments, by key
        self.shown_left = "a"  # the side shown as A in this round
        self.turns: dict[str, Turn] = {}  # by side, this round
        self.sessions: dict[str, ChatSession] = {}
        self.battle: Battle | None = None  # the stored pick of this round
        self.redraw = QTimer(self)
        self.redraw.setInterval(REDRAW_MS)
        self.redraw.timeout.connect(self._draw)

        self.combos = {side: QComboBox() for side in SIDES}
        top = QHBoxLayout()
        for side, text in zip(SIDES, ("First model", "against")):
            combo = self.combos[side]
            combo.setMinimumContentsLength(18)
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setToolTip("A running deployment (start one on the Deployments page); the "
                             "replies are shown in random order, unlabelled")
            top.addWidget(QLabel(text))
            top.addWidget(combo, 1)
        self.hint = QLabel("Both models answer the same prompt. Their replies appear as A and "
                           "B in random order; pick the better one, then see which was which.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(mid);")
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setPlaceholderText("Prompt for both (Ctrl+Enter asks, Esc stops)")
        self.prompt_edit.setMaximumHeight(90)
        self.ask_button = QPushButton(icon("send"), "Ask both")
        self.ask_button.setToolTip("Send the prompt to both models (Ctrl+Enter)")
        self.ask_button.clicked.connect(lambda: self.ask())
        self.stop_button = QPushButton(icon("cancel"), "Stop")
        self.stop_button.setToolTip("Stop both replies (Esc)")
        self.stop_button.clicked.connect(self.stop)
        ask = QHBoxLayout()
        ask.addWidget(self.prompt_edit, 1)
        column = QVBoxLayout()
        column.addWidget(self.ask_button)
        column.addWidget(self.stop_button)
        column.addStretch(1)
        ask.addLayout(column)
        self.columns = {label: ReplyColumn(label) for label in LABELS}
        replies = QHBoxLayout()
        for label in LABELS:
            replies.addWidget(self.columns[label], 1)
        self.pick_buttons: dict[str, QPushButton] = {}
        picks = QHBoxLayout()
        for pick, text, keys in PICKS:
            b = self.pick_buttons[pick] = QPushButton(text)
            b.setShortcut(QKeySequence(keys))
            b.setToolTip(f"{'It is a tie' if pick == 'tie' else text}: store the pick and show "
                         f"which model wrote which reply ({keys})")
            b.clicked.connect(lambda _=False, p=pick: self.pick(p))
            picks.addWidget(b, 1)
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("Why (optional), stored with the pick")
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.hint)
        layout.addLayout(ask)
        layout.addLayout(replies, 1)
        layout.addLayout(picks)
        layout.addWidget(self.comment_edit)
        layout.addWidget(self.status)
        self._update_buttons()

    # ---- public ---------------------------------------------------------------------------

    def show_deployments(self, live: list[LiveDeployment]) -> None:
        """Offer these running deployments (the Playground follows the window's)."""
        self.live = {d.key: d for d in live}
        for n, side in enumerate(SIDES):
            combo = self.combos[side]
            current = combo.currentData()
            combo.blockSignals(True)
            combo.clear()
            for d in live:
                combo.addItem(f"{d.name}  —  {d.url}", d.key)
            index = combo.findData(current)
            combo.setCurrentIndex(index if index >= 0 else min(n, combo.count() - 1))
            combo.blockSignals(False)
        self._update_buttons()

    @property
    def busy(self) -> bool:
        return any(t.state == "streaming" for t in self.turns.values())

    def ask(self, text: str | None = None) -> bool:
        """Send ``text`` (default: the prompt box) to both models; False when it cannot."""
        text = (text if isinstance(text, str) else self.prompt_edit.toPlainText()).strip()
        chosen = {side: self._deployment(side) for side in SIDES}
        if self.busy or not text:
            return False
        if chosen["a"] is None or chosen["b"] is None or chosen["a"].key == chosen["b"].key:
            self._say("Choose two different running deployments to compare.", error=True)
            return False
        try:
            sampling = self.settings.sampling()
        except LLMOpsError as exc:  # a schema or tools that are not JSON
            self._say(str(exc), error=True)
            return False
        self.shown_left = random.SystemRandom().choice(SIDES)
        self.battle, self.turns, self.sessions = None, {}, {}
        for side, d in chosen.items():
            assert d is not None
            session = ChatSession(self.target_for(d), system=self.settings.system(),
                                  sampling=sampling,
                                  mode=CHAT if can_chat(self.ctx, d) else COMPLETION)
            self.sessions[side], self.turns[side] = session, session.ask(text)
        for side in SIDES:  # both at once, each on its own worker thread
            turn = self.turns[side]
            create_worker(self.sessions[side].stream, turn, yielded=self._on_event,
                          errored=lambda exc, t=turn: self._on_failed(t, exc), receiver=self,
                          name="llmops-arena")
        self.comment_edit.clear()
        self._say("Both models are answering…")
        self._draw()
        self.redraw.start()
        self._update_buttons()
        return True

    def stop(self) -> None:
        for side, session in self.sessions.items():
            if self.turns[side].state == "streaming":
                session.stop(self.turns[side])

    def column_of(self, side: str) -> ReplyColumn:
        """The column that shows side ``side`` this round."""
        return self.columns["A" if side == self.shown_left else "B"]

    def pick(self, pick: str) -> Battle | None:
        """Store the pick ("A", "B" or "tie") and reveal the models; the stored battle."""
        if not self._can_pick():
            return None
        winner = "tie" if pick == "tie" else side_shown(pick, self.shown_left)
        first = self.turns["a"].request
        body = first.get("body", {})
        sides = {side: self._side(side) for side in SIDES}
        try:
            self.battle = record_battle(self.ctx.catalog, Battle(
                prompt=first.get("prompt", ""), a=sides["a"], b=sides["b"],
                shown_left=self.shown_left, winner=winner, messages=first.get("history", []),
                system_prompt=first.get("system", ""),
                params={k: body[k] for k in ("temperature", "top_p", "max_tokens", "seed")
                        if k in body},
                comment=self.comment_edit.text().strip()))
        except (LLMOpsError, OSError) as exc:
            self._say(f"Could not store the pick: {exc}", error=True)
            return None
        self._draw()
        other = "b" if self.shown_left == "a" else "a"
        names = {"A": self._who(self.shown_left), "B": self._who(other)}
        verdict = "a tie" if winner == "tie" else f"{pick} ({names[pick]}) is better"
        self._say(f"Stored: {verdict}. A was {names['A']}, B was {names['B']}. "
                  "Type the next prompt to go on.")
        self.ctx.events.sig_info.emit("Arena pick stored")
        self._update_buttons()
        assert self.battle.id is not None
        self.sig_picked.emit(self.battle.id)
        return self.battle

    # ---- internals ------------------------------------------------------------------------

    def _deployment(self, side: str) -> LiveDeployment | None:
        return self.live.get(self.combos[side].currentData())

    def _side(self, side: str) -> Side:
        turn, target = self.turns[side], self.sessions[side].target
        return Side(reply=turn.content, artifact_id=target.artifact_id,
                    artifact_ref=target.artifact_ref, deployment_id=target.deployment_id,
                    model=target.model, response_id=turn.stats.response_id if turn.stats else "")

    def _who(self, side: str) -> str:
        target = self.sessions[side].target
        return target.artifact_ref or target.model

    def _can_pick(self) -> bool:
        return (self.battle is None and len(self.turns) == 2 and not self.busy
                and all(t.rateable for t in self.turns.values()))

    def _on_event(self, event: Delta | ReplyEnded) -> None:
        if isinstance(event, ReplyEnded) and any(t.reply_id == event.reply_id
                                                 for t in self.turns.values()):
            self._on_ended()

    def _on_failed(self, turn: Turn, exc: BaseException) -> None:
        if turn.state == "streaming":  # the session reports failures itself; this is a bug
            turn.state, turn.error = "failed", f"{type(exc).__name__}: {exc}"
        self._on_ended()

    def _on_ended(self) -> None:
        if self.busy:
            return
        self.redraw.stop()
        self._draw()
        if self._can_pick():
            self._say("Which reply is better? A (Alt+A), B (Alt+B) or a tie (Alt+T).")
        else:
            self._say("A reply failed or is empty, so there is nothing fair to pick; ask "
                      "again.", error=True)
        self._update_buttons()
        self.sig_replies_finished.emit()

    def _draw(self) -> None:
        for side, turn in self.turns.items():
            self.column_of(side).show_turn(turn, self._who(side) if self.battle else "")

    def _say(self, text: str, *, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #c62828;" if error else "")

    def _update_buttons(self) -> None:
        busy, live = self.busy, len(self.live)
        self.ask_button.setEnabled(not busy and live >= 2)
        self.stop_button.setEnabled(busy)
        for combo in self.combos.values():
            combo.setEnabled(not busy)
        for b in self.pick_buttons.values():
            b.setEnabled(self._can_pick())
        if live < 2 and not self.turns:
            self._say("The arena needs two running deployments: start them on the "
                      "Deployments page (right-click a model → Serve…).")
