"""The one reader of children's JSON lines and the one way to stop a child (procs.py),
against real child processes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from llmops_desktop.jobs.events import Log, Progress, Result
from llmops_desktop.procs import follow, pid_alive, read_events, terminate


def _child(code: str, **kwargs) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)],
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, **kwargs)


# A child that says it is ready, then ignores SIGTERM and sleeps.
STUBBORN = """
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ready", flush=True)
    time.sleep(600)
"""


def test_events_come_back_in_order_stray_lines_skipped_and_the_exit_code_returned() -> None:
    proc = _child("""
        import json, sys
        print(json.dumps({"type": "progress", "done": 1, "total": 4, "message": "a"}))
        print("a stray print from some library")
        print("{not json")
        print(json.dumps({"type": "log", "message": "hello", "level": "info"}))
        print(json.dumps({"type": "nonsense"}))
        print(json.dumps({"type": "result", "data": {"n": 3}}))
        sys.exit(3)
    """)
    gen = follow(proc)
    events = []
    try:
        while True:
            events.append(next(gen))
    except StopIteration as stop:
        code = stop.value
    assert events == [Progress(1, 4, "", "a"), Log("hello"), Result({"n": 3})]
    assert code == 3 and proc.stdout.closed


def test_read_events_reads_text_streams_too() -> None:
    lines = ['{"type": "log", "message": "x"}\n', "junk\n"]
    assert list(read_events(lines)) == [Log("x")]


def test_a_child_that_obeys_sigterm_is_not_killed() -> None:
    proc = _child('print("ready", flush=True)\nimport time\ntime.sleep(600)')
    proc.stdout.readline()
    assert terminate(proc, grace=30) is True
    assert proc.returncode == -signal.SIGTERM


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    proc = _child(STUBBORN)
    assert proc.stdout.readline().strip() == b"ready"  # its SIGTERM handler is in place
    assert terminate(proc, grace=0.5) is True
    assert proc.returncode == -signal.SIGKILL


def test_by_pid_and_process_group_the_grandchildren_go_too() -> None:
    """A job's child leads a session (torchrun and its ranks below it): terminating the
    group stops them all, even those that ignore SIGTERM."""
    proc = _child(f"""
        import subprocess, sys
        g = subprocess.Popen([sys.executable, "-c", {textwrap.dedent(STUBBORN)!r}],
                             stdout=subprocess.PIPE)
        g.stdout.readline()
        print(g.pid, flush=True)
        {STUBBORN.replace(chr(10) + "    ", chr(10) + "        ")}
    """, start_new_session=True)
    grandchild = int(proc.stdout.readline())
    assert proc.stdout.readline().strip() == b"ready"
    assert terminate(proc.pid, grace=0.5, group=True) is True
    assert proc.wait() == -signal.SIGKILL
    deadline = time.monotonic() + 30  # SIGKILL is delivered at once; init reaps it soon
    while pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(grandchild)


def test_without_a_grace_it_only_asks() -> None:
    proc = _child(STUBBORN)
    proc.stdout.readline()
    try:
        assert terminate(proc, grace=None) is False
        assert proc.poll() is None  # ignored SIGTERM, and nobody killed it
    finally:
        terminate(proc, grace=0)
    assert proc.returncode == -signal.SIGKILL


def test_the_caller_decides_what_still_running_means() -> None:
    """A job whose child has settled its row is left to exit on its own (no SIGKILL)."""
    proc = _child(STUBBORN)
    proc.stdout.readline()
    try:
        assert terminate(proc.pid, grace=0.2, alive=lambda: False) is True
        assert proc.poll() is None
    finally:
        terminate(proc, grace=0)
