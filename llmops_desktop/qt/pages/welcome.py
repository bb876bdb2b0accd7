"""What an empty catalog shows: three ways to bring a first model in."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.qt.context import icon


class WelcomeWidget(QWidget):
    """Big buttons: Import from disk, Import from the HF cache, Demo model."""

    sig_import_clicked = Signal(str)
    """The user chose an import ('folder', 'file' or 'hf-cache')."""
    sig_demo_clicked = Signal()
    """The user asked for the demo model."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("Welcome to LLMOps Desktop")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 2.0)
        font.setBold(True)
        title.setFont(font)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro = QLabel("Your catalog is empty. Bring a first model in — everything works "
                       "offline, on this machine.")
        intro.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro.setWordWrap(True)
        self.import_button = self._card(
            "folder", "Import from disk…",
            "A Hugging Face model folder\nor a single .gguf file")
        self.import_button.clicked.connect(lambda: self.sig_import_clicked.emit("folder"))
        self.hf_button = self._card(
            "hf-cache", "From Hugging Face cache…",
            "A model you already downloaded\nwith transformers or huggingface-cli")
        self.hf_button.clicked.connect(lambda: self.sig_import_clicked.emit("hf-cache"))
        self.demo_button = self._card(
            "demo", "Make a demo model",
            "A tiny random-weight Llama,\nmade here in a few seconds")
        self.demo_button.clicked.connect(self.sig_demo_clicked)
        cards = QHBoxLayout()
        cards.addStretch(1)
        for button in (self.import_button, self.hf_button, self.demo_button):
            cards.addWidget(button)
        cards.addStretch(1)
        hint = QLabel("Tip: drop a model folder or a .gguf file anywhere on this window.")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(420)
        self.progress.setTextVisible(True)
        self.progress.hide()
        self.status = QLabel()
        self.status.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(title)
        layout.addSpacing(8)
        layout.addWidget(intro)
        layout.addSpacing(24)
        layout.addLayout(cards)
        layout.addSpacing(16)
        layout.addWidget(hint)
        layout.addSpacing(12)
        layout.addWidget(self.status)
        layout.addWidget(self.progress, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(3)

    @staticmethod
    def _card(icon_name: str, title: str, text: str) -> QToolButton:
        button = QToolButton()
        button.setIcon(icon(icon_name))
        button.setIconSize(QSize(48, 48))
        button.setText(f"{title}\n\n{text}")
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        button.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        button.setMinimumWidth(170)
        button.setMaximumWidth(240)
        button.setFixedHeight(170)
        button.setAutoRaise(False)
        return button

    def show_busy(self, message: str, fraction: float | None) -> None:
        """A job that will fill the catalog is running: show how far it is."""
        self.status.setText(message)
        self.progress.show()
        if fraction is None:
            self.progress.setRange(0, 0)
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(fraction * 100))
        self.demo_button.setEnabled(False)

    def clear_busy(self, message: str = "") -> None:
        self.status.setText(message)
        self.progress.hide()
        self.demo_button.setEnabled(True)
