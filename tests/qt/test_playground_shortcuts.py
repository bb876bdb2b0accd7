"""The Playground's Save as prompt shortcut: Ctrl+Shift+S while the page is shown, only then."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QApplication

from llmops_desktop.qt.prompt_dialogs import PromptDialog

KEYS = QKeySequence("Ctrl+Shift+S")


def _open_dialogs(page) -> list[PromptDialog]:
    return [d for d in page.findChildren(PromptDialog) if d.isVisible()]


def test_ctrl_shift_s_saves_as_prompt_only_on_the_playground(qtbot, window) -> None:
    owners = [s for s in window.findChildren(QShortcut) if s.key() == KEYS]
    owners += [a for a in window.findChildren(QAction) if KEYS in a.shortcuts()]
    play = window.playground_page
    assert owners == [play.prompt_shortcut]  # nothing else in the window uses the keys
    assert "Ctrl+Shift+S" in play.prompt_button.toolTip()

    window.show_page("prompts")
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    assert _open_dialogs(play) == []  # a hidden page's shortcut does not fire

    window.show_page("playground")
    play.input.setPlainText("Say hello to {{name}}")
    window.sidebar.setFocus()  # outside the page: the shortcut works wherever focus is
    qtbot.keyClick(window.sidebar, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier
                   | Qt.KeyboardModifier.ShiftModifier)
    dialogs = _open_dialogs(play)
    assert len(dialogs) == 1
    assert dialogs[0].editor.template_edit.toPlainText() == "Say hello to {{name}}"
    dialogs[0].close()
