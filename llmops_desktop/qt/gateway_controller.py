"""Start, watch and stop the window's gateway (``python -m llmops_desktop.gateway``).

The gateway is a child process, as the mirror is, started and stopped by
:mod:`llmops_desktop.gateway.run`; its JSON lines (``ready``, then ``models`` whenever a
model loads or unloads) reach the GUI thread through the pump. It runs with
``PR_SET_PDEATHSIG``, so it stops (and stops its deployments) if the window dies; the
window also stops it when it quits.
"""

from __future__ import annotations

import subprocess
from collections import deque
from typing import Any

from PySide6.QtCore import QObject, Signal

from llmops_desktop.paths import Home
from llmops_desktop.qt.pump import create_worker

KEEP_LINES = 200
ERROR_PREFIX = "llmops gateway: error: "


class GatewayController(QObject):
    """The window's gateway: at most one child, started and stopped on request."""

    sig_started = Signal(str)
    """The gateway accepts connections at this URL."""
    sig_models = Signal(list)
    """Every model's state (a list of dicts: model, state, memory_bytes, pid, error)."""
    sig_stopped = Signal(str)
    """The gateway's process ended: "" when it was asked to stop, else why it failed."""
    sig_state_changed = Signal(str)
    """The gateway is now stopped, starting, running or stopping."""

    def __init__(self, home: Home, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.state = "stopped"
        self.url = ""
        self.pid: int | None = None
        self.models: list[dict[str, Any]] = []
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._error = ""

    def is_running(self) -> bool:
        return self._process is not None

    def start(self, options: Any) -> None:
        """Start the gateway with ``options`` (a GatewayOptions); raises InvalidInputError
        for options it would refuse, before anything starts."""
        if self._process is not None:
            return
        from llmops_desktop.gateway.run import gateway_lines, start_gateway_process

        process = start_gateway_process(options, self.home)
        self._process, self.pid = process, process.pid
        self.url, self._error, self._stopping, self.models = "", "", False, []
        self.lines.clear()
        create_worker(gateway_lines, process, yielded=self._on_output,
                      returned=lambda code: self._on_process_exited(process, code),
                      errored=lambda _exc: self._on_process_exited(process, -1),
                      receiver=self, name="llmops-gateway")
        self._set_state("starting")

    def stop(self, *, wait: bool = False) -> None:
        """SIGTERM the gateway (it stops its deployments first); with ``wait`` (the app is
        quitting) wait for it, then SIGKILL."""
        process = self._process
        if process is None:
            return
        from llmops_desktop.gateway.run import stop_gateway_process

        self._stopping = True
        self._set_state("stopping")
        stop_gateway_process(process, wait=wait)

    # ---- slots ----------------------------------------------------------------------------

    def _set_state(self, state: str) -> None:
        self.state = state
        self.sig_state_changed.emit(state)

    def _on_output(self, item: dict[str, Any] | str) -> None:
        if isinstance(item, str):
            self.lines.append(item)
            if item.startswith(ERROR_PREFIX):
                self._error = item[len(ERROR_PREFIX):]
            return
        kind = item.get("type")
        if kind == "ready" and isinstance(item.get("url"), str):
            self.url = item["url"]
            self._set_models(item.get("states"))
            if not self._stopping:
                self._set_state("running")
            self.sig_started.emit(self.url)
        elif kind == "models":
            self._set_models(item.get("models"))

    def _set_models(self, models: object) -> None:
        if isinstance(models, list):
            self.models = [m for m in models if isinstance(m, dict)]
            self.sig_models.emit(self.models)

    def _on_process_exited(self, process: subprocess.Popen[bytes], code: int) -> None:
        if process is not self._process:  # an earlier gateway's late news
            return
        self._process, self.pid, self.url, self.models = None, None, "", []
        if self._stopping or code == 0:
            reason = ""
        else:
            last = next((line for line in reversed(self.lines) if line.strip()), "")
            reason = self._error or (f"The gateway stopped unexpectedly (exit code {code})"
                                     + (f": {last}" if last else "."))
        self.sig_models.emit([])
        self._set_state("stopped")
        self.sig_stopped.emit(reason)
