"""Start, watch and stop the team mirror (``python -m llmops_desktop.mirror``) for the window.

The mirror is a child process, as jobs are: a reader thread turns its JSON lines
into signals through one relay made on the GUI thread and never destroyed (a
QObject whose last reference a reader thread dropped would be destroyed outside
its thread). The token travels in the child's environment, never on its
command line; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
from collections import deque

from PySide6.QtCore import QObject, Qt, Signal

from llmops_desktop.jobs.events import Error, Log, parse_event
from llmops_desktop.paths import Home
from llmops_desktop.secrets import get_secret

READY_PREFIX = "mirror listening on "
STOP_GRACE_S = 5.0
KEEP_REQUESTS = 200


class _MirrorSignals(QObject):
    """Bridge from the mirror's reader thread to the GUI thread (one per process)."""

    sig_line = Signal(int, str, str, str)
    """Owner, event type ('log' or 'error'), level or error type, and the message."""
    sig_exited = Signal(int, int)
    """Owner and the child's exit code."""


_bridge: _MirrorSignals | None = None
_owners = itertools.count(1)


def _mirror_bridge() -> _MirrorSignals:
    global _bridge
    if _bridge is None:
        _bridge = _MirrorSignals()
    return _bridge


def mirror_command(home: Home, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "llmops_desktop.mirror", "--home", str(home.root),
            "--host", host, "--port", str(port)]


class MirrorController(QObject):
    """The window's team mirror: at most one child, started and stopped on request."""

    sig_started = Signal(str)
    """The mirror accepts connections at this URL."""
    sig_request = Signal(str)
    """The mirror answered a request (one log line: client, method, path, status, size, time)."""
    sig_stopped = Signal(str)
    """The mirror's process ended: "" when it was asked to stop, else why it failed."""
    sig_state_changed = Signal(bool)
    """Whether a mirror process is now running (starting counts)."""

    def __init__(self, home: Home, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.url = ""
        self.requests: deque[str] = deque(maxlen=KEEP_REQUESTS)
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._error = ""
        self._owner = next(_owners)
        signals = _mirror_bridge()
        queued = Qt.ConnectionType.QueuedConnection
        signals.sig_line.connect(self._on_line, queued)
        signals.sig_exited.connect(self._on_exited, queued)

    def is_running(self) -> bool:
        return self._process is not None

    def is_ready(self) -> bool:
        return bool(self.url)

    def start(self, host: str, port: int) -> None:
        """Start the mirror on ``host:port`` with the mirror token from the secrets."""
        if self._process is not None:
            return
        env = dict(os.environ)
        token = get_secret(self.home, "mirror_token")
        if token:
            env["LLMOPS_MIRROR_TOKEN"] = token
        env["PYTHONUNBUFFERED"] = "1"
        log_path = self.home.root / "logs" / "mirror.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.url, self._error, self._stopping = "", "", False
        self.requests.clear()
        with open(log_path, "ab") as log:
            self._process = subprocess.Popen(
                mirror_command(self.home, host, port), stdout=subprocess.PIPE, stderr=log,
                stdin=subprocess.DEVNULL, env=env)
        threading.Thread(target=_read_mirror, args=(_mirror_bridge(), self._owner, self._process),
                         daemon=True, name="llmops-mirror").start()
        self.sig_state_changed.emit(True)

    def stop(self, *, wait: bool = False) -> None:
        """SIGTERM the mirror; with ``wait`` (the app is quitting) wait for it, then SIGKILL."""
        process = self._process
        if process is None:
            return
        self._stopping = True
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        if wait:
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # ---- slots ----------------------------------------------------------------------------

    def _on_line(self, owner: int, kind: str, level: str, message: str) -> None:
        if owner != self._owner:
            return
        if kind == "error":
            self._error = message
            return
        if not self.url and message.startswith(READY_PREFIX):
            self.url = message[len(READY_PREFIX):].strip()
            self.sig_started.emit(self.url)
            return
        if message == "mirror stopped":
            return
        if level == "error":
            self._error = self._error or message
        self.requests.append(message)
        self.sig_request.emit(message)

    def _on_exited(self, owner: int, code: int) -> None:
        if owner != self._owner:
            return
        self._process = None
        self.url = ""
        if self._stopping or code == 0:
            reason = ""
        else:
            reason = self._error or f"The mirror stopped unexpectedly (exit code {code}); " \
                                    f"see {self.home.root / 'logs' / 'mirror.log'}."
        self.sig_stopped.emit(reason)
        self.sig_state_changed.emit(False)


def _read_mirror(signals: _MirrorSignals, owner: int, process: subprocess.Popen[bytes]) -> None:
    """Reader thread: the mirror's stdout lines become signals; then its exit code."""
    assert process.stdout is not None
    try:
        for raw in process.stdout:
            event = parse_event(raw)
            if isinstance(event, Log):
                signals.sig_line.emit(owner, "log", event.level, event.message)
            elif isinstance(event, Error):
                signals.sig_line.emit(owner, "error", event.error_type, event.message)
    finally:
        code = process.wait()
        process.stdout.close()
        signals.sig_exited.emit(owner, code)
