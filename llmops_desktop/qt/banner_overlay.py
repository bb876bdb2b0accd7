"""A message banner that floats over the top of a page instead of pushing it down.

A banner in a layout moves everything below it when it appears, so a button under the
pointer jumps away just as the user clicks it. :class:`OverlayHost` keeps the content
where it is and draws the banner above it, on an opaque backdrop (banners are tinted,
half transparent, frames).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QVBoxLayout, QWidget

MARGIN = 4


class OverlayHost(QWidget):
    """``content`` fills the host; ``banner`` (any widget) floats over its top edge."""

    def __init__(self, content: QWidget, banner: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(content)
        self.content = content
        self.backdrop = QWidget(self)
        self.backdrop.setAutoFillBackground(True)
        self.backdrop.hide()
        self.banner = banner
        banner.setParent(self)
        banner.installEventFilter(self)
        self._place()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.banner and event.type() in (
                QEvent.Type.Show, QEvent.Type.Hide, QEvent.Type.ShowToParent,
                QEvent.Type.HideToParent, QEvent.Type.LayoutRequest):
            self._place()
        return super().eventFilter(watched, event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place()

    def _place(self) -> None:
        shown = self.banner.isVisibleTo(self)
        self.backdrop.setVisible(shown)
        if not shown:
            return
        width = max(self.width() - 2 * MARGIN, 100)
        height = (self.banner.heightForWidth(width) if self.banner.hasHeightForWidth()
                  else -1)
        height = max(height, self.banner.sizeHint().height())
        self.banner.setGeometry(MARGIN, MARGIN, width, height)
        self.backdrop.setGeometry(MARGIN, MARGIN, width, height)
        self.backdrop.raise_()
        self.banner.raise_()
