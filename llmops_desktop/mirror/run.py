"""Run the mirror: bind, refuse unsafe binds, serve until Ctrl-C or SIGTERM; or start and
stop it as a child process (``python -m llmops_desktop.mirror``) for the window."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.httpsend import SendfileProtocol
from llmops_desktop.httpserve import (
    NotifyingServer,
    bind_socket,
    not_a_shutdown_cancel,
    run_until_stopped,
    socket_url,
)
from llmops_desktop.mirror.server import create_app
from llmops_desktop.netaddr import check_secret, is_loopback
from llmops_desktop.paths import Home
from llmops_desktop.procs import terminate
from llmops_desktop.secrets import get_secret

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8790
STOP_GRACE_S = 5.0
TOKEN_ENV = "LLMOPS_MIRROR_TOKEN"
log = logging.getLogger("llmops_desktop.mirror")


def check_token(token: str) -> str:
    return check_secret(token, "mirror token")


def serve(home: Home | str | os.PathLike[str] | None = None, host: str = DEFAULT_HOST,
          port: int = DEFAULT_PORT, token: str | None = None, *,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the catalog's READY artifacts as a read-only hub mirror; blocks until stopped.

    ``token`` defaults to the ``mirror_token`` secret (``LLMOPS_MIRROR_TOKEN``). With a
    token, every request needs ``Authorization: Bearer <token>``. A host other than a
    loopback address is refused without one. ``on_ready(url)`` is called once the
    socket accepts connections (by default it is logged). Ctrl-C and SIGTERM stop it
    cleanly (it returns). The ready line and one line per request go to the
    ``llmops_desktop.mirror`` logger; when nothing handles that logger, to stderr.
    """
    home = home if isinstance(home, Home) else Home.resolve(home)
    token = check_token(token if token else get_secret(home, "mirror_token")) or None
    if token is None and not is_loopback(host):
        raise InvalidInputError(
            f"Refusing to serve the mirror on {host} without a token: anyone who can reach "
            "this machine could read every model in the catalog. Pass --token TOKEN or set "
            "LLMOPS_MIRROR_TOKEN (colleagues then use it as their HF token), or bind to "
            "127.0.0.1.")
    sock = bind_socket(host, port)
    url = socket_url(sock, host)
    if not is_loopback(host):
        log.warning("serving on %s: plain HTTP, so the token and the files travel unencrypted; "
                    "use it on a network you trust", host)
    uvicorn_log = logging.getLogger("uvicorn.error")
    if not_a_shutdown_cancel not in uvicorn_log.filters:
        uvicorn_log.addFilter(not_a_shutdown_cancel)
    # file bodies go out with sendfile (httpsend): the asyncio loop, whose sockets have it
    config = uvicorn.Config(create_app(home, token), log_config=None, access_log=False,
                            lifespan="off", ws="none", server_header=False,
                            timeout_graceful_shutdown=3, timeout_keep_alive=15,
                            http=SendfileProtocol, loop="asyncio")
    server = NotifyingServer(config, lambda: (on_ready or _log_ready)(url))

    run_until_stopped(server, sock, log, lambda error: log.info("mirror stopped"))


def _log_ready(url: str) -> None:
    log.info("mirror listening on %s", url)


def mirror_command(home: Home, host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "llmops_desktop.mirror", "--home", str(home.root),
            "--host", host, "--port", str(port)]


def mirror_log(home: Home) -> Path:
    """Where a mirror child started by the window writes its stderr."""
    return home.root / "logs" / "mirror.log"


def start_mirror(home: Home, host: str, port: int) -> subprocess.Popen[bytes]:
    """Start the mirror as a child: JSON lines on its stdout (a ``mirror listening on URL``
    log line once ready, then one per request), stderr appended to :func:`mirror_log`. The
    token (the ``mirror_token`` secret) travels in its environment, never its command line."""
    env = dict(os.environ)
    token = get_secret(home, "mirror_token")
    if token:
        env[TOKEN_ENV] = token
    env["PYTHONUNBUFFERED"] = "1"
    log_path = mirror_log(home)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(mirror_command(home, host, port), stdout=subprocess.PIPE,
                                stderr=log_file, stdin=subprocess.DEVNULL, env=env)


def stop_mirror(process: subprocess.Popen[bytes], *, wait: bool = False) -> bool:
    """SIGTERM the mirror child; with ``wait``, SIGKILL it after the grace period."""
    return terminate(process, grace=STOP_GRACE_S if wait else None)
