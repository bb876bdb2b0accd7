"""The "Share as mirror" box: start and stop the team mirror, the address to give
colleagues, and the last requests it served."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.download_rows import muted_label, shareable_url
from llmops_desktop.qt.mirror_controller import MirrorController
from llmops_desktop.secrets import get_secret, mask

ERROR_COLOR = "#d9534f"
SHOWN_REQUESTS = 50


class MirrorBox(QGroupBox):
    """Share this catalog as a Hugging Face mirror: toggle, URL to give out, last requests."""

    def __init__(self, ctx: AppContext, mirror: MirrorController,
                 parent: QWidget | None = None) -> None:
        super().__init__("Share as mirror", parent)
        self.ctx, self.mirror = ctx, mirror
        self.toggle = QPushButton(icon("mirror"), "Start sharing")
        self.toggle.setCheckable(True)
        self.toggle.setToolTip("Serve this catalog's READY models read-only over the Hugging "
                               "Face hub API, for colleagues' HF_ENDPOINT")
        self.toggle.clicked.connect(self._on_toggle_clicked)
        self.state_label = QLabel()
        self.url_edit = QLineEdit()
        self.url_edit.setReadOnly(True)
        self.copy_button = QToolButton()
        self.copy_button.setIcon(icon("copy"))
        self.copy_button.setToolTip("Copy the HF_ENDPOINT line for colleagues")
        self.copy_button.clicked.connect(self._on_copy_clicked)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.requests = QListWidget()
        self.requests.setAlternatingRowColors(True)
        self.note = muted_label()
        top = QHBoxLayout()
        top.addWidget(self.toggle)
        top.addWidget(self.state_label, 1)
        url_row = QHBoxLayout()
        url_row.addWidget(self.url_edit, 1)
        url_row.addWidget(self.copy_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(url_row)
        layout.addWidget(self.error_label)
        layout.addWidget(self.note)
        layout.addWidget(QLabel("Last requests:"))
        layout.addWidget(self.requests, 1)
        mirror.sig_started.connect(lambda _url: self.update_view())
        mirror.sig_state_changed.connect(lambda _on: self.update_view())
        mirror.sig_request.connect(self._on_request)
        mirror.sig_stopped.connect(self._on_stopped)
        self.update_view()

    def update_view(self) -> None:
        s, m = self.ctx.settings, self.mirror
        self.toggle.setChecked(m.is_running())
        self.toggle.setText("Stop sharing" if m.is_running() else "Start sharing")
        if m.is_ready():
            url = shareable_url(m.url)
            self.state_label.setText(f"On at {url}")
            self.url_edit.setText(f"HF_ENDPOINT={url}")
        else:
            self.state_label.setText("Starting…" if m.is_running() else "Off")
            self.url_edit.setText("")
        self.url_edit.setPlaceholderText("HF_ENDPOINT=… appears here while sharing")
        self.copy_button.setEnabled(m.is_ready())
        token = get_secret(self.ctx.home, "mirror_token")
        self.note.setText(
            f"Listens on {s.mirror_host}:{s.mirror_port}, read-only; "
            + (f"colleagues need the mirror token ({mask(token)}) as their HF token. "
               if token else "no token. ")
            + "Address, port and token: Settings › Team mirror.")

    def _on_toggle_clicked(self) -> None:
        if self.mirror.is_running():
            self.mirror.stop()
        else:
            self.error_label.hide()
            self.requests.clear()
            s = self.ctx.settings
            self.mirror.start(s.mirror_host, s.mirror_port)
        self.update_view()

    def _on_copy_clicked(self) -> None:
        QGuiApplication.clipboard().setText(self.url_edit.text())
        self.ctx.events.sig_info.emit(f"Copied {self.url_edit.text()}")

    def _on_request(self, line: str) -> None:
        self.requests.addItem(line)
        while self.requests.count() > SHOWN_REQUESTS:
            self.requests.takeItem(0)
        self.requests.scrollToBottom()

    def _on_stopped(self, reason: str) -> None:
        self.error_label.setText(reason)
        self.error_label.setVisible(bool(reason))
        self.update_view()
