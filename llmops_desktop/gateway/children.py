"""Child processes that end with their parent: the gateway's deployments, the window's gateway.

A gateway killed with SIGKILL cannot stop its deployments, and each of them holds a model
in memory. So the gateway starts them with Linux's ``PR_SET_PDEATHSIG``
(:func:`llmops_desktop.procs.die_with_parent_preexec`): the kernel sends
the child SIGTERM (a clean stop: its request log is written, its row marked stopped) the
moment its parent goes, however it goes. The window starts its gateway the same way.

Each deployment also carries its gateway's pid in its environment
(``LLMOPS_GATEWAY_PID``); a gateway that starts stops any deployment whose gateway is
gone (:func:`reap_orphans`): a second line for where the kernel cannot send the signal.
"""

from __future__ import annotations

import logging
import os
import subprocess

from llmops_desktop.paths import Home

GATEWAY_PID_ENV = "LLMOPS_GATEWAY_PID"
log = logging.getLogger("llmops_desktop.gateway")


def start_deployment(request, home: Home) -> subprocess.Popen[bytes]:  # noqa: ANN001
    """:func:`~llmops_desktop.serving.deploy.start_server`, with the server made to stop
    when the process that starts it (the gateway) ends, and carrying that process's pid."""
    from llmops_desktop.serving.deploy import start_server

    return start_server(request, home, die_with_parent=True,
                        extra_env={GATEWAY_PID_ENV: str(os.getpid())})


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
