"""Start, watch and stop the team mirror (``python -m llmops_desktop.mirror``) for the window.

The mirror is a child process, as jobs are, started and stopped by
:mod:`llmops_desktop.mirror.run`; its JSON lines reach the GUI thread through the pump
(:mod:`llmops_desktop.qt.pump`). The token travels in the child's environment, never on
its command line; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import subprocess
from collections import deque

from PySide6.QtCore import QObject, Signal

from llmops_desktop.jobs.events import Error, Event, Log
from llmops_desktop.paths import Home
from llmops_desktop.procs import follow
from llmops_desktop.qt.pump import create_worker

READY_PREFIX = "mirror listening on "
KEEP_REQUESTS = 200


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

    def is_running(self) -> bool:
        return self._process is not None

    def is_ready(self) -> bool:
        return bool(self.url)

    def start(self, host: str, port: int) -> None:
        """Start the mirror on ``host:port`` with the mirror token from the secrets."""
        if self._process is not None:
            return
        from llmops_desktop.mirror.run import start_mirror  # uvicorn: not at window start

        self.url, self._error, self._stopping = "", "", False
        self.requests.clear()
        process = self._process = start_mirror(self.home, host, port)
        create_worker(follow, process, yielded=self._on_event,
                      returned=lambda code: self._on_process_exited(process, code),
                      errored=lambda _exc: self._on_process_exited(process, -1),
                      receiver=self, name="llmops-mirror")
        self.sig_state_changed.emit(True)

    def stop(self, *, wait: bool = False) -> None:
        """SIGTERM the mirror; with ``wait`` (the app is quitting) wait for it, then SIGKILL."""
        process = self._process
        if process is None:
            return
        from llmops_desktop.mirror.run import stop_mirror

        self._stopping = True
        stop_mirror(process, wait=wait)

    # ---- slots ----------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if isinstance(event, Log):
            self._on_line("log", event.level, event.message)
        elif isinstance(event, Error):
            self._on_line("error", event.error_type, event.message)

    def _on_process_exited(self, process: subprocess.Popen[bytes], code: int) -> None:
        if process is self._process:  # not an earlier mirror's late news
            self._on_exited(code)

    def _on_line(self, kind: str, level: str, message: str) -> None:
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

    def _on_exited(self, code: int) -> None:
        self._process = None
        self.url = ""
        if self._stopping or code == 0:
            reason = ""
        else:
            reason = self._error or f"The mirror stopped unexpectedly (exit code {code}); " \
                                    f"see {self.home.root / 'logs' / 'mirror.log'}."
        self.sig_stopped.emit(reason)
        self.sig_state_changed.emit(False)
