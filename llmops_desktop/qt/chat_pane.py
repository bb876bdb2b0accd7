"""The Playground's conversation pane: the turns, the message box, and the reply streaming.

A reply's events come from the session's generator on a worker thread through the pump
(:mod:`llmops_desktop.qt.pump`) and are drawn at most 25 times a second. Stop closes the
connection, which stops the server's generation as well. The pane draws one
:class:`~llmops_desktop.qt.chat_widgets.MessageView` per turn; the page says which session
it shows, when to send, and stores the ratings the views ask for.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.qt.chat_widgets import MessageView
from llmops_desktop.qt.context import icon
from llmops_desktop.qt.pump import create_worker
from llmops_desktop.serving.chat_session import ChatSession, Delta, ReplyEnded, Turn

REDRAW_MS = 40


class ChatPane(QWidget):
    """The messages of one conversation, the input box, Send and Stop."""

    sig_reply_finished = Signal(str)
    """A reply ended (its id): finished, stopped or failed."""
    sig_reply_piece = Signal(str)
    """A piece of the reply being streamed arrived (on the GUI thread)."""
    sig_rated = Signal(str, int)
    """The person rated a reply (its id, +1, -1 or 0 to take it back)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.views: list[MessageView] = []
        self._stream: tuple[ChatSession, Turn] | None = None  # the reply being streamed
        self._dirty = False
        self.redraw = QTimer(self)
        self.redraw.setInterval(REDRAW_MS)
        self.redraw.timeout.connect(self._flush)

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
        self.stop_button = QPushButton(icon("cancel"), "Stop")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        buttons = QVBoxLayout()
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.input, 1)
        bottom.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.scroll, 1)
        layout.addLayout(bottom)

    @property
    def streaming(self) -> bool:
        """A reply is being streamed (one at a time)."""
        return self._stream is not None

    def show_turns(self, turns: list[Turn]) -> None:
        """Draw these turns instead of the ones shown."""
        for view in self.views:
            view.setParent(None)
            view.deleteLater()
        self.views.clear()
        for turn in turns:
            self.add_view(turn)

    def add_view(self, turn: Turn) -> None:
        view = MessageView(turn)
        view.sig_rated.connect(self.sig_rated)
        self.views.append(view)
        self.messages_layout.insertWidget(self.messages_layout.count() - 1, view)
        QTimer.singleShot(0, self._scroll_to_end)

    def refresh_turn(self, turn: Turn) -> None:
        """Redraw the views of ``turn`` (its text, figures or rating changed)."""
        for view in self.views:
            if view.turn is turn:
                view.refresh()

    def stream(self, session: ChatSession, turn: Turn) -> None:
        """Stream the reply ``turn`` (just asked of ``session``) on a worker thread."""
        self.add_view(session.turns[-2])
        self.add_view(turn)
        self._stream = (session, turn)
        create_worker(session.stream, turn, yielded=self._on_event,
                      errored=lambda exc: self._on_failed(turn, exc), receiver=self,
                      name="llmops-chat")
        self.redraw.start()

    def stop(self) -> None:
        if self._stream is not None:
            self._stream[0].stop(self._stream[1])

    def _scroll_to_end(self) -> None:
        bar = self.scroll.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _on_event(self, event: Delta | ReplyEnded) -> None:
        if self._stream is None or event.reply_id != self._stream[1].reply_id:
            return
        if isinstance(event, Delta):  # the session added it to the turn already
            self._dirty = True
            self.sig_reply_piece.emit(event.text)
        else:
            self._on_done()

    def _on_failed(self, turn: Turn, exc: BaseException) -> None:
        if turn.state == "streaming":  # the session says failures itself; this is a bug
            turn.state, turn.error = "failed", f"{type(exc).__name__}: {exc}"
        if self._stream is not None and self._stream[1] is turn:
            self._on_done()

    def _flush(self) -> None:
        if not self._dirty or self._stream is None:
            return
        self._dirty = False
        turn = self._stream[1]
        for view in reversed(self.views):
            if view.turn is turn:
                bar = self.scroll.verticalScrollBar()
                at_end = bar.value() >= bar.maximum() - 4
                view.refresh()
                if at_end:
                    QTimer.singleShot(0, self._scroll_to_end)
                break

    def _on_done(self) -> None:
        assert self._stream is not None
        _, turn = self._stream
        self._stream = None
        self.redraw.stop()
        self._dirty = True
        self.refresh_turn(turn)
        QTimer.singleShot(0, self._scroll_to_end)
        self.sig_reply_finished.emit(turn.reply_id)
