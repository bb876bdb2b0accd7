"""The one pump from threads and children to the GUI thread (qt/pump.py), with real threads
and a real child process."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QCoreApplication, QObject

from llmops_desktop.jobs.events import Log
from llmops_desktop.procs import follow
from llmops_desktop.qt.pump import Channel, create_worker


def _record(seen: list, what: str):
    def fn(*args):
        seen.append((what, *args, threading.current_thread() is threading.main_thread()))
    return fn


def test_a_generator_yields_then_returns_then_finishes_on_the_gui_thread(qtbot) -> None:
    def count():
        assert threading.current_thread() is not threading.main_thread()
        yield 1
        yield 2
        return "done"

    seen: list = []
    worker = create_worker(count, yielded=_record(seen, "yielded"),
                           returned=_record(seen, "returned"),
                           errored=_record(seen, "errored"), finished=_record(seen, "finished"))
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    assert seen == [("yielded", 1, True), ("yielded", 2, True), ("returned", "done", True),
                    ("finished", True)]


def test_an_exception_comes_back_as_errored(qtbot) -> None:
    def boom():
        raise ValueError("no such thing")

    seen: list = []
    worker = create_worker(boom, returned=_record(seen, "returned"),
                           errored=lambda exc: seen.append(("errored", str(exc))))
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    assert seen == [("errored", "no such thing")]


def test_quit_stops_a_generator_at_its_next_yield(qtbot) -> None:
    gate = threading.Event()
    closed = threading.Event()

    def endless():
        try:
            while True:
                gate.wait()
                yield "tick"
        finally:
            closed.set()

    ticks: list = []
    worker = create_worker(endless, yielded=ticks.append)
    worker.quit()
    gate.set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    assert closed.is_set() and len(ticks) <= 1


def test_nothing_reaches_a_receiver_that_is_gone(qtbot) -> None:
    release = threading.Event()
    receiver = QObject()
    seen: list = []
    worker = create_worker(lambda: release.wait() and "late", returned=seen.append,
                           finished=lambda: seen.append("finished"), receiver=receiver)
    receiver.deleteLater()
    qtbot.waitUntil(lambda: not _alive(receiver), timeout=10_000)
    release.set()
    worker.join(10)
    QCoreApplication.sendPostedEvents()  # deliver anything queued
    assert seen == []


def _alive(obj: QObject) -> bool:
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


def test_a_childs_events_and_exit_code_arrive_in_order(qtbot) -> None:
    code = ("import json\n"
            "for i in range(3): print(json.dumps({'type': 'log', 'message': str(i)}))\n"
            "raise SystemExit(7)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    seen: list = []
    worker = create_worker(follow, proc, yielded=seen.append, returned=seen.append)
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10_000)
    assert seen == [Log("0"), Log("1"), Log("2"), 7]


def test_a_latest_only_channel_never_queues_behind(qtbot) -> None:
    """A sampler thread sends faster than the GUI takes: the GUI gets the newest value,
    and fewer deliveries than sends (never a backlog of stale ones)."""
    got: list = []
    channel = Channel(got.append, latest_only=True)
    sender = threading.Thread(target=lambda: [channel.send(i) for i in range(1000)])
    sender.start()
    sender.join()
    qtbot.waitUntil(lambda: bool(got) and got[-1] == 999, timeout=10_000)
    assert len(got) < 1000 and got == sorted(got)
    channel.close()
    channel.send(1000)
    QCoreApplication.sendPostedEvents()
    assert got[-1] == 999
