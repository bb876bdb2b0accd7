"""Run a plain function off the GUI thread and get its answer back as a signal.

Used for anything that may block: cancelling a job (up to the SIGTERM grace
period), scanning the Hugging Face cache, inspecting a source before an
import, removing an artifact's files. Each call gets its own Python thread;
the result comes back through a queued signal, on the GUI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal


class _Relay(QObject):
    """Carries one call's outcome from its thread to the GUI thread."""

    sig_finished = Signal(object)
    """The function returned this value."""
    sig_failed = Signal(object)
    """The function raised this exception."""


_live: set[_Relay] = set()  # keeps relays alive until their thread has reported


def run_in_thread(fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
                  on_error: Callable[[BaseException], None] | None = None,
                  *, receiver: QObject | None = None) -> threading.Thread:
    """Call ``fn()`` in a daemon thread; ``on_done(result)`` or ``on_error(exc)`` on the GUI thread.

    ``receiver`` (a widget) scopes the callbacks: if it is gone by then, they are dropped.
    """
    relay = _Relay()
    _live.add(relay)
    alive = {"ok": True}
    if receiver is not None:
        receiver.destroyed.connect(lambda *_: alive.update(ok=False))

    def finish(callback: Callable[[Any], None] | None, value: Any) -> None:
        _live.discard(relay)
        if callback is not None and alive["ok"]:
            callback(value)

    relay.sig_finished.connect(lambda v: finish(on_done, v), Qt.ConnectionType.QueuedConnection)
    relay.sig_failed.connect(lambda e: finish(on_error, e), Qt.ConnectionType.QueuedConnection)

    def body() -> None:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread
            relay.sig_failed.emit(exc)
            return
        relay.sig_finished.emit(value)

    thread = threading.Thread(target=body, daemon=True, name="llmops-worker")
    thread.start()
    return thread
