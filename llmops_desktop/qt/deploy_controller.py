"""Start, watch, restart and stop the window's deployments (``python -m llmops_desktop.serving``).

Each deployment is a child process started and stopped by :mod:`llmops_desktop.serving.deploy`
from a :class:`~llmops_desktop.serving.deploy.DeployRequest` (every ``llmops serve`` option);
its JSON lines reach the GUI thread through the pump (:mod:`llmops_desktop.qt.pump`). The
live state of a deployment is a plain Python object the controller owns; the catalog keeps
the durable record (the child writes it). SIGTERM stops a child cleanly.

Children run in their own session, so a deployment the user keeps running when the window
closes outlives it (and a terminal's hang-up); the next window finds it in the catalog
(:meth:`DeployController.adopt_running`) and watches its pid instead of its output.
"""

from __future__ import annotations

import itertools
import subprocess
import time
from collections import deque
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from llmops_desktop.errors import LLMOpsError, NotFoundError
from llmops_desktop.jobs.events import Error, Event, Log, Result
from llmops_desktop.paths import Home
from llmops_desktop.procs import follow
from llmops_desktop.qt.pump import create_worker
from llmops_desktop.serving.deploy import (
    DeployRequest,
    serving_log,
    start_server,
    stop_server,
)
from llmops_desktop.serving.store import deployment, is_server_process, reconcile

ADOPTED_POLL_MS = 1000
KEEP_LINES = 500
STATES = ("starting", "running", "stopped", "failed")
_keys = itertools.count(1)


class LiveDeployment:
    """One deployment this window started: its request, process and what it said."""

    def __init__(self, key: int, request: DeployRequest) -> None:
        self.key = key
        self.request = request
        self.state = "starting"
        self.info: dict[str, Any] = {}
        self.error = ""
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.ready_at: float | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.adopted_pid: int | None = None  # a server a previous window left running
        self.stopping = False
        self.restart_pending = False

    @property
    def alive(self) -> bool:
        """Whether its server process is still there (started by us or adopted)."""
        if self.process is not None:
            return self.process.poll() is None
        return self.adopted_pid is not None

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.request.name or self.request.artifact_ref)

    @property
    def url(self) -> str:
        return str(self.info.get("url", "")) if self.state == "running" else ""

    @property
    def deployment_id(self) -> int | None:
        value = self.info.get("deployment_id")
        return int(value) if value is not None else None

    def uptime_s(self) -> float | None:
        if self.state != "running" or self.ready_at is None:
            return None
        return time.monotonic() - self.ready_at


class DeployController(QObject):
    """The window's deployments: any number of server children, started and stopped on request."""

    sig_added = Signal(int)
    """A deployment was started (its key)."""
    sig_changed = Signal(int)
    """A deployment's state changed (starting, running, stopped, failed)."""
    sig_started = Signal(int, str)
    """A deployment accepts connections at this URL."""
    sig_stopped = Signal(int, str)
    """A deployment's process ended: "" when asked to stop, else why it failed."""
    sig_line = Signal(int, str)
    """A deployment logged a line (one per request once running)."""

    def __init__(self, home: Home, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.deployments: dict[int, LiveDeployment] = {}
        self._adopted_timer = QTimer(self)
        self._adopted_timer.setInterval(ADOPTED_POLL_MS)
        self._adopted_timer.timeout.connect(self._poll_adopted)
        self._catalog = None

    @property
    def log_path(self):
        return serving_log(self.home)

    def get(self, key: int) -> LiveDeployment | None:
        return self.deployments.get(key)

    def start(self, request: DeployRequest) -> int:
        """Start a deployment; returns its key (ready: ``sig_started``). Raises
        InvalidInputError, before anything starts, for a request the server would refuse."""
        request.check()
        key = next(_keys)
        self.deployments[key] = LiveDeployment(key, request)
        self._spawn(self.deployments[key])
        self.sig_added.emit(key)
        return key

    def adopt_running(self, catalog) -> list[int]:
        """Take over the deployments the catalog knows to be serving (left running by a
        previous window, or started from a terminal); mark the dead ones failed. Returns the
        keys of those adopted."""
        known = {d.deployment_id for d in self.deployments.values()}
        keys = []
        for record in reconcile(catalog):
            if record.id in known or record.state != "running":
                continue
            key = next(_keys)
            d = LiveDeployment(key, DeployRequest.from_record(record))
            d.adopted_pid = record.pid
            d.state = "running"
            d.info = {"url": record.url, "deployment_id": record.id, "name": record.name,
                      "model": record.artifact_ref, "engine": record.engine, "pid": record.pid}
            d.ready_at = _monotonic_since(record.started_at)
            d.lines.append(f"Found running (pid {record.pid}) since {record.started_at}, "
                           "started by an earlier window or a terminal; its requests are under "
                           "Recent requests (its log lines went to whoever started it).")
            self.deployments[key] = d
            keys.append(key)
            self.sig_added.emit(key)
        if keys:
            self._catalog = catalog
            self._adopted_timer.start()
        return keys

    def stop(self, key: int, *, wait: bool = False) -> None:
        """SIGTERM a deployment; with ``wait`` (the app is quitting) wait, then SIGKILL."""
        d = self.deployments.get(key)
        if d is None:
            return
        target = d.adopted_pid if d.adopted_pid is not None else d.process
        if target is None:
            return
        d.stopping = True
        stop_server(target, wait=wait)
        if wait and d.adopted_pid is not None:
            self._poll_adopted()

    def restart(self, key: int) -> None:
        """Stop a deployment and start it again with the same settings once it has exited."""
        d = self.deployments.get(key)
        if d is None:
            return
        if not d.alive:
            self._spawn(d)
            self.sig_changed.emit(key)
            return
        d.restart_pending = True
        self.stop(key)

    def stop_all(self, *, wait: bool = False) -> None:
        for key in list(self.deployments):
            self.stop(key, wait=wait)

    def running_count(self) -> int:
        return sum(1 for d in self.deployments.values() if d.alive)

    def detach_all(self) -> None:
        """Leave every deployment running (the window is closing): stop watching them."""
        self._adopted_timer.stop()
        for d in self.deployments.values():
            if d.process is not None and d.process.stdout is not None:
                d.stopping = True  # the reader sees the pipe close; that is no failure

    # ---- internals ------------------------------------------------------------------------

    def _spawn(self, d: LiveDeployment) -> None:
        d.state, d.info, d.error, d.ready_at = "starting", {}, "", None
        d.stopping = d.restart_pending = False
        d.adopted_pid = None
        key = d.key
        try:
            d.process = start_server(d.request, self.home)
        except (LLMOpsError, OSError) as exc:
            d.process, d.state, d.error = None, "failed", str(exc)
            self.sig_stopped.emit(key, d.error)
            self.sig_changed.emit(key)
            return
        process = d.process
        create_worker(follow, process, yielded=lambda ev: self._on_event(key, ev),
                      returned=lambda code: self._on_process_exited(key, process, code),
                      errored=lambda _exc: self._on_process_exited(key, process, -1),
                      receiver=self, name=f"llmops-deploy-{key}")

    def _on_process_exited(self, key: int, process: subprocess.Popen[bytes],
                           code: int) -> None:
        d = self.deployments.get(key)
        if d is not None and d.process is process:  # not a restart's newer process
            self._on_exited(key, code)

    def _on_event(self, key: int, event: Event) -> None:
        if isinstance(event, Log):
            self._on_line(key, "log", event.level, event.message)
        elif isinstance(event, Result):
            self._on_ready(key, event.data)
        elif isinstance(event, Error):
            self._on_line(key, "error", event.error_type, event.message)

    def _on_line(self, key: int, kind: str, level: str, message: str) -> None:
        d = self.deployments.get(key)
        if d is None:
            return
        if kind == "error":
            d.error = message
            message = f"error: {message}"
        elif level == "error" and not d.error:
            d.error = message
        d.lines.append(message)
        self.sig_line.emit(key, message)

    def _on_ready(self, key: int, data: object) -> None:
        d = self.deployments.get(key)
        if d is None or not isinstance(data, dict):
            return
        d.info = dict(data)
        d.state = "running"
        d.ready_at = time.monotonic()
        self.sig_started.emit(key, d.url)
        self.sig_changed.emit(key)

    def _on_exited(self, key: int, code: int) -> None:
        d = self.deployments.get(key)
        if d is None:
            return
        d.process = None
        if d.stopping or code == 0:
            d.state, reason = "stopped", ""
        else:
            d.state = "failed"
            reason = d.error or (f"The server stopped unexpectedly (exit code {code}); "
                                 f"see {self.log_path}.")
            d.error = reason
        d.ready_at = None
        self.sig_stopped.emit(key, reason)
        self.sig_changed.emit(key)
        if d.restart_pending:
            self._spawn(d)
            self.sig_changed.emit(key)


    def _poll_adopted(self) -> None:
        """An adopted server is not our child: notice its end by its pid, then read how it
        ended from the catalog (the server writes 'stopped' on a clean stop)."""
        adopted = [d for d in self.deployments.values() if d.adopted_pid is not None]
        for d in adopted:
            if is_server_process(d.adopted_pid):
                continue
            d.adopted_pid = None
            record = None
            if d.deployment_id is not None:
                reconcile(self._catalog)  # a server that died uncleanly is marked failed
                try:
                    record = deployment(self._catalog, d.deployment_id)
                except NotFoundError:
                    record = None
            failed = record is not None and record.state == "failed" and not d.stopping
            d.state = "failed" if failed else "stopped"
            d.error = (record.error or "") if failed and record else ""
            d.ready_at = None
            self.sig_stopped.emit(d.key, d.error)
            self.sig_changed.emit(d.key)
            if d.restart_pending:
                self._spawn(d)
                self.sig_changed.emit(d.key)
        if not any(d.adopted_pid is not None for d in self.deployments.values()):
            self._adopted_timer.stop()


def _monotonic_since(iso: str | None) -> float | None:
    from datetime import datetime, timezone

    if not iso:
        return None
    try:
        started = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    age = (datetime.now(timezone.utc) - started).total_seconds()
    return time.monotonic() - max(0.0, age)
