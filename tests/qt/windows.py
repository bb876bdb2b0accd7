"""Helpers the GUI tests share: open a window, and close and destroy it on this thread."""

from __future__ import annotations

import gc
import os

from PySide6.QtCore import QCoreApplication, QEvent

from llmops_desktop.qt.main_window import MainWindow


def dispose(win: MainWindow) -> None:
    """Close and destroy a window now, on this thread (not later, from whichever thread
    the garbage collector happens to run in)."""
    win.close()
    win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def open_window(qtbot, home) -> MainWindow:
    """A shown window on ``home`` that stops its deployments when closed (qtbot closes
    windows before fixtures tear down, so the keep-running question must not come up)."""
    win = MainWindow(home)
    win.deployments_on_close = "stop"
    qtbot.addWidget(win)
    win.show()
    return win


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
