"""Small widgets the window uses: the message banner and the status bar's jobs button."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QToolButton,
    QWidget,
)

from llmops_desktop.qt.context import icon

ERROR_BG = QColor("#d9534f")


class MessageBanner(QFrame):
    """An inline, dismissable message across the top of the window (errors stay until closed)."""

    sig_dismissed = Signal()
    """The user closed the banner."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBanner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.icon_label = QLabel()
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setIcon(icon("close"))
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.addWidget(self.icon_label)
        layout.addWidget(self.label, 1)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.hide()

    def show_error(self, text: str) -> None:
        self._show(text, "error", ERROR_BG)

    def show_info(self, text: str) -> None:
        self._show(text, "info", self.palette().color(QPalette.ColorRole.Highlight))

    def _show(self, text: str, kind: str, color: QColor) -> None:
        self.kind = kind
        self.label.setText(text)
        self.icon_label.setPixmap(icon("error" if kind == "error" else "info").pixmap(20, 20))
        tint = QColor(color)
        tint.setAlpha(40)
        self.setStyleSheet(
            f"#messageBanner {{ background: rgba({tint.red()},{tint.green()},{tint.blue()},"
            f"{tint.alpha()}); border: 1px solid {color.name()}; border-radius: 4px; }}")
        self.show()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def dismiss(self) -> None:
        self.hide()
        self.sig_dismissed.emit()


class JobsStatusButton(QWidget):
    """Always in the status bar: how many jobs run and how far; a click shows the Jobs page."""

    sig_clicked = Signal()
    """The user clicked it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.button = QToolButton()
        self.button.setIcon(icon("jobs"))
        self.button.setAutoRaise(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setToolTip("Show the Jobs page")
        self.button.clicked.connect(self.sig_clicked)
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(120)
        self.bar.setMaximumHeight(14)
        self.bar.setTextVisible(False)
        self.bar.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.bar)
        layout.addWidget(self.button)
        self.set_state(0, None, "")

    def set_state(self, running: int, fraction: float | None, message: str) -> None:
        if running == 0:
            self.button.setText("No jobs running")
            self.bar.hide()
            return
        noun = "job" if running == 1 else "jobs"
        self.button.setText(f"{running} {noun} running" + (f": {message}" if message else ""))
        self.bar.show()
        if fraction is None:
            self.bar.setRange(0, 0)
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(fraction * 1000))

    def text(self) -> str:
        return self.button.text()

    def mousePressEvent(self, event: object) -> None:  # the bar is part of the target too
        self.sig_clicked.emit()
