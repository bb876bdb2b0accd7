"""Child processes that end with their parent: the gateway's deployments, the window's gateway.

A gateway killed with SIGKILL cannot stop its deployments, and each of them holds a model
in memory. So the gateway starts them with Linux's ``PR_SET_PDEATHSIG``: the kernel sends
the child SIGTERM (a clean stop: its request log is written, its row marked stopped) the
moment its parent goes, however it goes. The window starts its gateway the same way.

Each deployment also carries its gateway's pid in its environment
(``LLMOPS_GATEWAY_PID``); a gateway that starts stops any deployment whose gateway is
gone (:func:`reap_orphans`): a second line for where the kernel cannot send the signal.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from llmops_desktop.paths import Home

PR_SET_PDEATHSIG = 1
GATEWAY_PID_ENV = "LLMOPS_GATEWAY_PID"
log = logging.getLogger("llmops_desktop.gateway")


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child sent ``sig`` when this process ends; None where
    the kernel cannot do that. (The parent is the thread that forks: start children from
    a thread that lives as long as the process, such as the main thread or a pool's.)"""
    prctl, parent = _PRCTL, os.getpid()
    if prctl is None:
        return None

    def preexec() -> None:  # in the child, between fork and exec: nothing that allocates
        prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if os.getppid() != parent:  # the parent went before prctl took effect
            os._exit(128 + int(sig))

    return preexec


def start_deployment(request, home: Home) -> subprocess.Popen[bytes]:  # noqa: ANN001
    """:func:`~llmops_desktop.serving.deploy.start_server`, with the server made to stop
    when the process that starts it (the gateway) ends."""
    from llmops_desktop.serving.deploy import serving_log

    request.check()
    log_path = serving_log(home)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**request.environment(), GATEWAY_PID_ENV: str(os.getpid())}
    with open(log_path, "ab") as out:
        return subprocess.Popen(  # noqa: S603 - our own server module, no shell
            request.to_argv(home), stdout=subprocess.PIPE, stderr=out, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True, preexec_fn=die_with_parent())


def gateway_of(pid: int) -> int | None:
    """The pid of the gateway that started deployment ``pid`` (from its environment);
    None for a deployment started otherwise, or one we may not read."""
    import psutil

    try:
        value = psutil.Process(pid).environ().get(GATEWAY_PID_ENV, "")
    except (psutil.Error, OSError):
        return None
    return int(value) if value.isdigit() and len(value) < 10 else None


def is_gateway_process(pid: int) -> bool:
    """Whether ``pid`` is alive and a gateway (``llmops gateway`` or its module)."""
    import psutil

    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.AccessDenied:
        return True  # alive, another user's: not ours to judge
    except (psutil.Error, OSError):
        return False
    text = " ".join(cmdline)
    return "llmops_desktop.gateway" in text or ("llmops" in text and " gateway" in text)


def reap_orphans(catalog) -> list[int]:  # noqa: ANN001
    """Stop the deployments a gateway started and left behind (it is gone); returns their
    pids. Deployments started from the window or ``llmops serve`` are never touched: only
    a server process whose environment names a gateway that no longer runs."""
    from llmops_desktop.serving.deploy import stop_server
    from llmops_desktop.serving.store import is_server_process, reconcile

    reaped = []
    for record in reconcile(catalog):
        owner = gateway_of(record.pid) if record.pid else None
        if owner is None or is_gateway_process(owner) or not is_server_process(record.pid):
            continue
        log.warning("stopping deployment %s (pid %s): its gateway (pid %s) is gone",
                    record.name, record.pid, owner)
        stop_server(record.pid)
        catalog.audit("gateway_orphan_stopped", artifact_id=record.artifact_id,
                      details={"model": record.name, "pid": record.pid, "gateway_pid": owner})
        reaped.append(record.pid)
    return reaped
