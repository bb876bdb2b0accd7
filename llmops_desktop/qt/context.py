"""What every page gets: the data home, the GUI thread's catalog, jobs, settings, actions.

A page is a :class:`Page` subclass listed in ``main_window.PAGES``; the window
builds it with an :class:`AppContext`, puts it in the sidebar and gives it a
Ctrl+<n> shortcut.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from PySide6.QtCore import QObject, QSettings, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QWidget

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.resources import icon_path
from llmops_desktop.settings import Settings, load_settings

if TYPE_CHECKING:
    from llmops_desktop.qt.job_controller import JobController


_ICON_COLOR = "#4f86e0"
_icons: dict[str, QIcon] = {}


def icon(name: str) -> QIcon:
    """An icon from resources/icons (empty if missing); white when drawn on a selection."""
    cached = _icons.get(name)
    if cached is not None:
        return cached
    path = icon_path(name)
    result = QIcon()
    if path.is_file():
        result.addFile(str(path))
        svg = path.read_bytes()
        if _ICON_COLOR.encode() in svg:
            white = svg.replace(_ICON_COLOR.encode(), b"#ffffff")
            for size in (16, 22, 24, 32):
                pixmap = QPixmap()
                pixmap.loadFromData(white.replace(b'width="24" height="24"',
                                                  f'width="{size}" height="{size}"'.encode()),
                                    "SVG")
                result.addPixmap(pixmap, QIcon.Mode.Selected)
    _icons[name] = result
    return result


class AppEvents(QObject):
    """App-wide requests and news that pages send each other through the window."""

    sig_import_requested = Signal(str)
    """A page asked for the Import dialog ('file', 'folder' or 'hf-cache')."""
    sig_demo_requested = Signal()
    """A page asked for the demo model."""
    sig_show_job_requested = Signal(int)
    """Show this job on the Jobs page."""
    sig_settings_saved = Signal(object)
    """The settings were saved (the new Settings)."""
    sig_error = Signal(str)
    """Something the user asked for failed; show this message."""
    sig_info = Signal(str)
    """Something worth a short note happened."""


@dataclass
class AppContext:
    home: Home
    catalog: Catalog
    jobs: JobController
    events: AppEvents
    settings: Settings = field(default_factory=Settings)

    def reload_settings(self) -> Settings:
        self.settings = load_settings(self.home.settings_path)
        return self.settings


class Page(QWidget):
    """A sidebar page. Subclasses set the class attributes and build themselves in __init__."""

    page_id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    icon_name: ClassVar[str] = ""
    tooltip: ClassVar[str] = ""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx

    def on_shown(self) -> None:
        """The page became the current one (refresh cheap things here)."""

    def refresh(self) -> None:
        """F5: re-read what the page shows."""

    def save_state(self, state: QSettings) -> None:
        """Remember view state (splitters, columns) in the GUI state file."""

    def restore_state(self, state: QSettings) -> None:
        """Bring back what :meth:`save_state` wrote."""
