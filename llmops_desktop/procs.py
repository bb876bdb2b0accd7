"""Child processes: read their JSON-lines events, and stop them (SIGTERM, grace, SIGKILL).

Every long-running child of this app (a job, a deployment's server, the team mirror, a
fine-tune's torchrun) speaks the same protocol: one JSON object per line on stdout
(:mod:`llmops_desktop.jobs.events`). :func:`read_events` turns such a stream into
events, :func:`follow` does that for a whole child and returns its exit code, and
:func:`terminate` is the one way to stop a child or a process we only know by its pid.
A child whose stderr joins its stdout (the window's gateway) is read with
:func:`read_output` instead: its JSON lines as dicts, its other lines as text.
:func:`die_with_parent_preexec` has a child stopped when we end, however we end.
The CLI iterates these directly; the window runs them through ``qt/pump.py``.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO, Any, TypeVar

from llmops_desktop.jobs.events import Event, parse_event

DEFAULT_GRACE_S = 5.0
POLL_S = 0.05
MAX_LINE = 65_536  # bytes of one line of mixed output (read_output) kept as one line
PR_SET_PDEATHSIG = 1
T = TypeVar("T")


def read_events(stream: Iterable[bytes | str]) -> Iterator[Event]:
    """The events in a child's stdout, one per JSON line; stray lines are skipped."""
    for raw in stream:
        event = parse_event(raw)
        if event is not None:
            yield event


def read_output(stream: IO[bytes], limit: int = MAX_LINE) -> Iterator[dict[str, Any] | str]:
    """A child's mixed output (stderr joined to stdout), line by line: each JSON object
    with a string ``"type"`` as a dict, every other non-empty line as text. A line longer
    than ``limit`` bytes comes in pieces of at most that."""
    for raw in iter(lambda: stream.readline(limit), b""):
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if text.startswith("{"):
            try:
                message = json.loads(text)
            except ValueError:
                message = None
            if isinstance(message, dict) and isinstance(message.get("type"), str):
                yield message
                continue
        if text:
            yield text


def follow(process: subprocess.Popen[bytes],
           read: Callable[[IO[bytes]], Iterable[T]] = read_events) -> Generator[T, None, int]:
    """Yield what ``read`` (default :func:`read_events`; :func:`read_output` for mixed
    output) finds in a child's stdout until it closes; return its exit code."""
    assert process.stdout is not None, "start the child with stdout=subprocess.PIPE"
    yield from read(process.stdout)
    code = process.wait()
    process.stdout.close()
    return code


def run_cli(home_root: str | os.PathLike[str], *args: str,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """``llmops --home HOME ARGS…`` in a child process, to its end (the window's way to run
    a command whose imports it should not pay for); its output comes back as text."""
    cmd = [sys.executable, "-m", "llmops_desktop.cli", "--home", str(home_root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,  # noqa: S603
                          stdin=subprocess.DEVNULL, check=False)


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def die_with_parent_preexec(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent ``sig`` when this process ends, however it
    ends (Linux's ``PR_SET_PDEATHSIG``); None where the kernel cannot do that. (The parent
    is the thread that forks: start children from a thread that lives as long as the
    process, such as the main thread or a pool's.)"""
    prctl, parent = _PRCTL, os.getpid()
    if prctl is None:
        return None

    def preexec() -> None:  # in the child, between fork and exec: nothing that allocates
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent went before prctl took effect
            os._exit(128 + int(sig))

    return preexec


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists and is not a zombie."""
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:  # noqa: BLE001 - NoSuchProcess, AccessDenied
        return False


def terminate(target: subprocess.Popen[bytes] | int, *, grace: float | None = DEFAULT_GRACE_S,
              group: bool = False, alive: Callable[[], bool] | None = None) -> bool:
    """Ask ``target`` (a child we started, or a pid) to stop with SIGTERM; if it is still
    there after ``grace`` seconds, SIGKILL it. Returns whether it is gone.

    ``grace=None`` sends SIGTERM and returns at once (the caller watches the end some
    other way). ``group`` signals the process group the target leads (children started
    with ``start_new_session=True``, so that a job's torchrun ranks go too). ``alive``
    overrides how "still there" is judged (say, a catalog row that is not finished yet).
    """
    if isinstance(target, subprocess.Popen):
        process = target
        pid = process.pid
        still_there = alive or (lambda: process.poll() is None)
    else:
        process = None
        pid = int(target)
        still_there = alive or (lambda: pid_alive(pid))
    if not still_there():
        return True
    _send(pid, signal.SIGTERM, group)
    if grace is None:
        return False
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not still_there():
            return True
        time.sleep(POLL_S)
    if not still_there():
        return True
    _send(pid, signal.SIGKILL, group)
    if process is not None:
        process.wait()
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(POLL_S)
    return not pid_alive(pid)


def _send(pid: int, sig: signal.Signals, group: bool) -> None:
    if group:
        try:
            os.killpg(pid, sig)
            return
        except (ProcessLookupError, PermissionError):
            pass  # not a group leader any more: signal the process alone
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
