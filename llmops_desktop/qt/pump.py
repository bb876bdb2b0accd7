"""The one pump from worker threads and child processes to the GUI thread.

Modelled on superqt's ``thread_worker`` (napari's ``create_worker``): a function, or a
generator function, runs in its own daemon thread; what it yields, returns or raises
comes back as calls on the GUI thread::

    worker = create_worker(procs.follow, process, yielded=self._on_event,
                           returned=self._on_exit, receiver=self)
    worker.quit()  # a generator stops at its next yield

A :class:`Channel` is the same pump for news pushed from a thread we do not run (the
monitor's sampler calls a plain function; with ``latest_only`` a value the GUI has not
taken yet is replaced, never queued behind).

Why one relay: a QObject that a worker thread ends up freeing (its last reference, or a
garbage-collection pass that happens to run there) is destroyed outside its thread, and
Qt crashes. So there is exactly one QObject here, made once, moved to the GUI thread and
never destroyed; the threads only ever see an integer id, the value, and its signal.
Callbacks live in a registry touched only on the GUI thread. ``receiver`` (a widget or
controller) scopes them: once it is destroyed, they are dropped.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, Qt, Signal

log = logging.getLogger(__name__)

YIELDED, RETURNED, ERRORED, FINISHED, VALUE = range(5)
_LATEST = object()  # "take the latest value from the channel's box"
_EMPTY = object()  # the box holds nothing new


class _Relay(QObject):
    sig_event = Signal(int, int, object)
    """Sink id, what happened (YIELDED … VALUE) and the value."""

    def __init__(self) -> None:
        super().__init__()
        self.sig_event.connect(self._on_event, Qt.ConnectionType.QueuedConnection)

    def _on_event(self, sink_id: int, what: int, value: object) -> None:
        _dispatch(sink_id, what, value)


_relay: _Relay | None = None
_relay_lock = threading.Lock()
_ids = itertools.count(1)
_sinks: dict[int, Worker | Channel] = {}


def _get_relay() -> _Relay:
    global _relay
    with _relay_lock:
        if _relay is None:
            relay = _Relay()
            app = QCoreApplication.instance()
            if app is not None and relay.thread() is not app.thread():
                relay.moveToThread(app.thread())
            _relay = relay
    return _relay


def _dispatch(sink_id: int, what: int, value: object) -> None:
    """GUI thread: hand one piece of news to whoever registered ``sink_id``."""
    sink = _sinks.get(sink_id)
    if sink is None:
        return
    if what == FINISHED and isinstance(sink, Worker):
        _sinks.pop(sink_id, None)
    sink._deliver(what, value)


class Callbacks:
    """A list of functions called on the GUI thread, in order (``connect`` like a signal)."""

    def __init__(self) -> None:
        self._fns: list[Callable[..., Any]] = []

    def connect(self, fn: Callable[..., Any] | None) -> None:
        if fn is not None:
            self._fns.append(fn)

    def disconnect(self, fn: Callable[..., Any]) -> None:
        self._fns.remove(fn)

    def __bool__(self) -> bool:
        return bool(self._fns)

    def _fire(self, *args: Any) -> None:
        for fn in list(self._fns):
            fn(*args)


class _Scoped:
    """Drops every callback once its receiver is destroyed (and forgets the sink)."""

    def __init__(self, receiver: QObject | None) -> None:
        self.id = next(_ids)
        self._alive = [True]
        if receiver is not None:
            alive, sink_id = self._alive, self.id

            def gone(*_: object) -> None:
                alive[0] = False
                _sinks.pop(sink_id, None)

            receiver.destroyed.connect(gone)

    @property
    def receiver_alive(self) -> bool:
        return self._alive[0]


class Worker(_Scoped):
    """One call in a thread. ``yielded(value)`` for each value a generator yields, then
    ``returned(value)`` or ``errored(exception)``, then ``finished()`` — all on the GUI
    thread, none after ``receiver`` is destroyed."""

    def __init__(self, fn: Callable[..., Any], *args: Any, receiver: QObject | None = None,
                 name: str = "llmops-worker") -> None:
        super().__init__(receiver)
        self.yielded, self.returned = Callbacks(), Callbacks()
        self.errored, self.finished = Callbacks(), Callbacks()
        self._fn, self._args, self._name = fn, args, name
        self._quit = threading.Event()
        self._thread: threading.Thread | None = None
        self.is_running = False

    def start(self) -> Worker:
        if self._thread is not None:
            return self
        if self.receiver_alive:
            _sinks[self.id] = self
        self.is_running = True
        fn, args, self._fn, self._args = self._fn, self._args, None, ()
        self._thread = threading.Thread(
            target=_run, args=(self.id, fn, args, self._quit, _get_relay().sig_event),
            daemon=True, name=self._name)
        self._thread.start()
        return self

    def quit(self) -> None:
        """Ask a generator to stop at its next yield (``returned`` gets None)."""
        self._quit.set()

    @property
    def abort_requested(self) -> bool:
        return self._quit.is_set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _deliver(self, what: int, value: object) -> None:
        if what == FINISHED:
            self.is_running = False
        if not self.receiver_alive:
            return
        if what == YIELDED:
            self.yielded._fire(value)
        elif what == RETURNED:
            self.returned._fire(value)
        elif what == ERRORED:
            if self.errored:
                self.errored._fire(value)
            else:
                log.error("%s failed", self._name, exc_info=value)  # type: ignore[arg-type]
        elif what == FINISHED:
            self.finished._fire()


def _run(sink_id: int, fn: Callable[..., Any], args: tuple[Any, ...],
         quit_event: threading.Event, signal: Any) -> None:
    """The worker thread: only ids, values and the relay's signal cross over."""
    try:
        result = fn(*args)
        if inspect.isgenerator(result):
            gen, result = result, None
            while True:
                if quit_event.is_set():
                    gen.close()
                    break
                try:
                    item = next(gen)
                except StopIteration as stop:
                    result = stop.value
                    break
                signal.emit(sink_id, YIELDED, item)
    except BaseException as exc:  # noqa: BLE001 - handed to the GUI thread
        signal.emit(sink_id, ERRORED, exc)
    else:
        signal.emit(sink_id, RETURNED, result)
    signal.emit(sink_id, FINISHED, None)


def create_worker(fn: Callable[..., Any], *args: Any,
                  yielded: Callable[[Any], None] | None = None,
                  returned: Callable[[Any], None] | None = None,
                  errored: Callable[[BaseException], None] | None = None,
                  finished: Callable[[], None] | None = None,
                  receiver: QObject | None = None, name: str = "llmops-worker",
                  start: bool = True) -> Worker:
    """Run ``fn(*args)`` in a thread (a generator: each value it yields too); see
    :class:`Worker`. Call from the GUI thread."""
    worker = Worker(fn, *args, receiver=receiver, name=name)
    worker.yielded.connect(yielded)
    worker.returned.connect(returned)
    worker.errored.connect(errored)
    worker.finished.connect(finished)
    return worker.start() if start else worker


class Channel(_Scoped):
    """News pushed from any thread: ``send(value)`` there, ``callback(value)`` here.

    With ``latest_only``, at most one delivery is queued at a time and it carries the
    newest value sent (a busy GUI skips stale ones instead of falling behind). ``send``
    captures nothing but plain objects, so it may be handed to core code as a listener.
    """

    def __init__(self, callback: Callable[[Any], None], *, receiver: QObject | None = None,
                 latest_only: bool = False) -> None:
        super().__init__(receiver)
        self.received = Callbacks()
        self.received.connect(callback)
        self._box: list[Any] = [_EMPTY]
        self._pending = threading.Event()
        self.send = _sender(self.id, _get_relay().sig_event, self._box,
                            self._pending if latest_only else None)
        if self.receiver_alive:
            _sinks[self.id] = self

    def close(self) -> None:
        """Stop delivering (values already queued are dropped)."""
        _sinks.pop(self.id, None)

    def _deliver(self, what: int, value: object) -> None:
        if value is _LATEST:
            self._pending.clear()  # first: a value sent from now on queues a new delivery
            value, self._box[0] = self._box[0], _EMPTY
            if value is _EMPTY:
                return
        if self.receiver_alive:
            self.received._fire(value)


def _sender(sink_id: int, signal: Any, box: list[Any],
            pending: threading.Event | None) -> Callable[[Any], None]:
    def send(value: Any) -> None:
        if pending is None:
            signal.emit(sink_id, VALUE, value)
            return
        box[0] = value
        if not pending.is_set():
            pending.set()
            signal.emit(sink_id, VALUE, _LATEST)

    return send
