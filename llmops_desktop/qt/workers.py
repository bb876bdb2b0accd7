"""Run a plain function off the GUI thread and get its answer back on the GUI thread.

Used for anything that may block: cancelling a job (up to the SIGTERM grace
period), scanning the Hugging Face cache, inspecting a source before an
import, removing an artifact's files. A thin shape over :mod:`llmops_desktop.qt.pump`,
which carries every thread's news to the GUI thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject

from llmops_desktop.qt.pump import Worker, create_worker


def run_in_thread(fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
                  on_error: Callable[[BaseException], None] | None = None,
                  *, receiver: QObject | None = None) -> Worker:
    """Call ``fn()`` in a daemon thread; ``on_done(result)`` or ``on_error(exc)`` on the GUI thread.

    ``receiver`` (a widget) scopes the callbacks: if it is gone by then, they are dropped.
    An exception nobody takes (no ``on_error``) is logged.
    """
    return create_worker(fn, returned=on_done, errored=on_error, receiver=receiver)
