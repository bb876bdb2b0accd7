"""The Help menu: help that works with no internet.

The README, bundled with the app and rendered from its Markdown; a sheet of the
window's real keyboard shortcuts (read from its actions, so it never goes stale);
the data folder opened in the file manager; and a diagnostics bundle to send to
whoever supports the site (``llmops doctor --bundle`` in a child process, so the
window never loads torch to write it).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHeaderView,
    QMainWindow,
    QMenu,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.paths import Home
from llmops_desktop.procs import run_cli
from llmops_desktop.qt.context import icon
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.resources import RESOURCES_DIR

README_NAME = "README.md"


def readme_path() -> Path:
    """The bundled README (package data), or the source tree's when running from a checkout."""
    for candidate in (RESOURCES_DIR / README_NAME, RESOURCES_DIR.parent / README_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("The README is not bundled with this installation.")


def _dialog(parent: QWidget, title: str, body: QWidget, size: tuple[int, int]) -> QDialog:
    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout = QVBoxLayout(dialog)
    layout.addWidget(body, 1)
    layout.addWidget(buttons)
    dialog.resize(*size)
    return dialog


def show_readme(parent: QWidget) -> QDialog:
    """The README in a dialog (Markdown rendered; links to sections work offline)."""
    browser = QTextBrowser()
    browser.setObjectName("readme")
    browser.setOpenExternalLinks(False)
    browser.setOpenLinks(True)
    try:
        browser.setMarkdown(readme_path().read_text(encoding="utf-8"))
    except OSError as exc:
        browser.setPlainText(f"The README could not be read: {exc}")
    dialog = _dialog(parent, "LLMOps Desktop — README", browser, (820, 680))
    dialog.show()
    return dialog


def shortcut_rows(window: QMainWindow) -> list[tuple[str, str]]:
    """(what, keys) for every action of the window's menus that has a shortcut."""
    rows: list[tuple[str, str]] = []
    seen: set[int] = set()

    def walk(menu: QMenu, path: str) -> None:
        for action in menu.actions():
            if action.menu() is not None:
                walk(action.menu(), f"{path} › {action.menu().title().replace('&', '')}")
                continue
            keys = [k.toString(QKeySequence.SequenceFormat.NativeText)
                    for k in action.shortcuts() if not k.isEmpty()]
            if keys and id(action) not in seen:
                seen.add(id(action))
                text = action.text().replace("&", "").rstrip("…").rstrip(".")
                rows.append((f"{path} › {text}", ", ".join(keys)))

    for top in window.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), top.menu().title().replace("&", ""))
    return rows


def show_shortcuts(window: QMainWindow) -> QDialog:
    rows = shortcut_rows(window)
    table = QTableWidget(len(rows), 2)
    table.setObjectName("shortcuts")
    table.setHorizontalHeaderLabels(["Action", "Keys"])
    table.verticalHeader().hide()
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
    for r, (what, keys) in enumerate(rows):
        table.setItem(r, 0, QTableWidgetItem(what))
        table.setItem(r, 1, QTableWidgetItem(keys))
    dialog = _dialog(window, "Keyboard shortcuts", table, (560, 620))
    dialog.show()
    return dialog


def open_data_folder(home: Home) -> bool:
    """Open the data home in the file manager."""
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(home.root)))


def write_bundle_in_child(home: Home, dest: str) -> str:
    """``llmops doctor --bundle DEST`` in a child process; returns what it said."""
    proc = run_cli(home.root, "doctor", "--bundle", dest, timeout=600)
    if not Path(dest).is_file():
        raise OSError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip()
                      else f"llmops doctor exited with {proc.returncode}")
    return dest


class HelpMenu(QObject):
    """The Help menu's actions, a child of the window (no reference to it is kept)."""

    def __init__(self, window: QMainWindow, menu: QMenu, home: Home) -> None:
        super().__init__(window)
        self.home = home
        self.act_readme = QAction(icon("info"), "&README (offline)", window)
        self.act_readme.triggered.connect(self.show_readme)
        self.act_shortcuts = QAction(icon("info"), "&Keyboard shortcuts", window)
        self.act_shortcuts.setShortcut(QKeySequence("Ctrl+/"))
        self.act_shortcuts.triggered.connect(self.show_shortcuts)
        self.act_data_folder = QAction(icon("folder"), "Open &data folder", window)
        self.act_data_folder.triggered.connect(self.open_data_folder)
        self.act_diagnostics = QAction(icon("file"), "Save a &diagnostics bundle…", window)
        self.act_diagnostics.setToolTip("A zip of versions, settings, the catalog's schema and "
                                        "recent job logs, with no secrets, to send for support")
        self.act_diagnostics.triggered.connect(self.ask_bundle_path)
        for action in (self.act_readme, self.act_shortcuts, self.act_data_folder,
                       self.act_diagnostics):
            menu.addAction(action)
        menu.addSeparator()
        window.addActions([self.act_readme, self.act_shortcuts])

    def window(self) -> QMainWindow:
        parent = self.parent()
        assert isinstance(parent, QMainWindow)
        return parent

    def show_readme(self) -> QDialog:
        return show_readme(self.window())

    def show_shortcuts(self) -> QDialog:
        return show_shortcuts(self.window())

    def open_data_folder(self) -> bool:
        return open_data_folder(self.home)

    def ask_bundle_path(self) -> QFileDialog:
        dialog = QFileDialog(self.window(), "Save a diagnostics bundle",
                             str(Path.home() / "llmops-diagnostics.zip"), "Zip files (*.zip)")
        dialog.setObjectName("diagnosticsDialog")
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
        dialog.setDefaultSuffix("zip")
        dialog.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        dialog.fileSelected.connect(self.save_bundle)
        dialog.open()
        return dialog

    def save_bundle(self, dest: str) -> None:
        window = self.window()
        window.statusBar().showMessage(f"Writing the diagnostics bundle to {dest}…")
        events = window.ctx.events  # type: ignore[attr-defined]
        home = self.home
        run_in_thread(lambda: write_bundle_in_child(home, dest),
                      lambda path: events.sig_info.emit(
                          f"Diagnostics bundle saved to {path} (no secrets inside)."),
                      lambda exc: events.sig_error.emit(
                          f"The diagnostics bundle could not be written: {exc}"),
                      receiver=window)
