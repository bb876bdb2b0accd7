"""Child processes that end with their parent: the gateway's deployments, the window's gateway.

A gateway killed with SIGKILL cannot stop its deployments, and each of them holds a model
in memory. So the gateway starts them with Linux's ``PR_SET_PDEATHSIG``: the kernel sends
the child SIGTERM (a clean stop: its request log is written, its row marked stopped) the
moment its parent goes, however it goes. The window starts its gateway the same way.
Elsewhere (no ``prctl``) children start as before and a clean stop still stops them.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from llmops_desktop.paths import Home

PR_SET_PDEATHSIG = 1


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
    with open(log_path, "ab") as log:
        return subprocess.Popen(request.to_argv(home), stdout=subprocess.PIPE, stderr=log,  # noqa: S603
                                stdin=subprocess.DEVNULL, env=request.environment(),
                                start_new_session=True, preexec_fn=die_with_parent())
