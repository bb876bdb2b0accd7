"""Run a plain function off the GUI thread and get its answer back as a signal.

Used for anything that may block: cancelling a job (up to the SIGTERM grace
period), scanning the Hugging Face cache, inspecting a source before an
import, removing an artifact's files. Each call gets its own Python thread;
the result comes back through a queued signal, on the GUI thread.

One relay object, made on the GUI thread and never destroyed, carries every
answer: a QObject that a worker thread could end up freeing (its last
reference, or a garbage-collection pass that happens to run there) would be
destroyed outside its thread, which crashes Qt.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal


class _Relay(QObject):
    """Carries each call's outcome from its thread to the GUI thread."""

    sig_finished = Signal(int, bool, object)
    """Call id, whether it returned (else raised), and the value or the exception."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[int, tuple[Callable[[Any], None] | None,
                                      Callable[[BaseException], None] | None, dict[str, bool]]] = {}
        self.sig_finished.connect(self._on_finished, Qt.ConnectionType.QueuedConnection)

    def _on_finished(self, call_id: int, ok: bool, value: object) -> None:
        on_done, on_error, alive = self.pending.pop(call_id, (None, None, {"ok": False}))
        callback = on_done if ok else on_error
        if callback is not None and alive["ok"]:
            callback(value)


_relay: _Relay | None = None
_ids = itertools.count(1)


def _get_relay() -> _Relay:
    global _relay
    if _relay is None:
        _relay = _Relay()  # first use is on the GUI thread (a widget asks)
    return _relay


def run_in_thread(fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
                  on_error: Callable[[BaseException], None] | None = None,
                  *, receiver: QObject | None = None) -> threading.Thread:
    """Call ``fn()`` in a daemon thread; ``on_done(result)`` or ``on_error(exc)`` on the GUI thread.

    ``receiver`` (a widget) scopes the callbacks: if it is gone by then, they are dropped.
    """
    relay = _get_relay()
    call_id = next(_ids)
    alive = {"ok": True}
    if receiver is not None:
        receiver.destroyed.connect(lambda *_: alive.update(ok=False))
    relay.pending[call_id] = (on_done, on_error, alive)
    signal = relay.sig_finished

    def body() -> None:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread
            signal.emit(call_id, False, exc)
            return
        signal.emit(call_id, True, value)

    thread = threading.Thread(target=body, daemon=True, name="llmops-worker")
    thread.start()
    return thread
