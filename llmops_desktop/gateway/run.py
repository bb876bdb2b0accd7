"""Run the gateway: check the address against the keys, bind, serve until stopped.

Stopping the gateway (Ctrl-C, SIGTERM) stops every deployment it started and writes
its request log first.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.paths import Home

log = logging.getLogger("llmops_desktop.gateway")

DEFAULT_GATEWAY_PORT = 8080


@dataclass(frozen=True)
class GatewayOptions:
    host: str = "127.0.0.1"
    port: int = DEFAULT_GATEWAY_PORT
    idle_unload: float = 600.0  # seconds a deployment may sit idle; 0: never unload
    memory_budget_gb: float | None = None  # GiB all loaded models may hold together
    load_timeout: float = 180.0  # seconds a request waits for its model to load
    gpus: str | None = None  # e.g. "0,1": the GPUs the deployments may use

    def checked(self) -> GatewayOptions:
        if self.idle_unload < 0:
            raise InvalidInputError("--idle-unload: seconds, 0 or more (0: never unload).")
        if self.memory_budget_gb is not None and self.memory_budget_gb <= 0:
            raise InvalidInputError("--memory-budget: GiB, more than 0.")
        if self.load_timeout <= 0:
            raise InvalidInputError("--load-timeout: seconds, more than 0.")
        if self.gpus is not None and not all(p.strip().isdigit()
                                             for p in self.gpus.split(",")):
            raise InvalidInputError(f"--gpus {self.gpus!r}: GPU indexes such as 0 or 0,1.")
        return self


def run_gateway(options: GatewayOptions, *, home: Home | str | os.PathLike[str] | None = None,
                on_ready: Callable[[dict[str, Any]], None] | None = None,
                on_state: Callable[[list[dict[str, Any]]], None] | None = None) -> None:
    """Serve the gateway on ``options.host``/``port``; blocks until stopped. Off loopback
    it refuses to start unless at least one usable API key exists. ``on_state`` hears every
    model's state (:meth:`DeploymentPool.states`) whenever one changes."""
    import uvicorn

    from llmops_desktop.catalog import Catalog
    from llmops_desktop.gateway.app import Gateway, create_gateway_app
    from llmops_desktop.gateway.keys import usable_keys
    from llmops_desktop.gateway.pool import DeploymentPool, PoolOptions
    from llmops_desktop.httpserve import (
        NotifyingServer,
        bind_socket,
        not_a_shutdown_cancel,
        run_until_stopped,
        socket_url,
    )
    from llmops_desktop.netaddr import is_loopback

    options = options.checked()
    home = home if isinstance(home, Home) else Home.resolve(home)
    catalog = Catalog.open(home)
    try:
        loopback = is_loopback(options.host)
        if not loopback and not usable_keys(catalog):
            raise InvalidInputError(
                f"Refusing to serve the gateway on {options.host} without an API key: anyone "
                "who can reach this machine could use every model. Make one per person with "
                "'llmops apikey create NAME', or bind to 127.0.0.1.")
        from llmops_desktop.gateway.children import reap_orphans

        reap_orphans(catalog)  # deployments an earlier gateway left behind hold memory
        budget = (int(options.memory_budget_gb * 2**30)
                  if options.memory_budget_gb is not None else None)
        pool = DeploymentPool(catalog, PoolOptions(idle_unload=options.idle_unload,
                                                   memory_budget=budget,
                                                   load_timeout=options.load_timeout))
        pool.on_change = on_state
        if options.gpus is not None:  # the deployments inherit it (start_server copies it)
            os.environ["CUDA_VISIBLE_DEVICES"] = options.gpus
        gateway = Gateway(pool, open_without_keys=loopback)
        app = create_gateway_app(gateway)
        sock = bind_socket(options.host, options.port)
        url = socket_url(sock, options.host)

        def started() -> None:
            info = {"url": url, "pid": os.getpid(),
                    "models": [s.name for s in pool.slots.values()],
                    "states": pool.states(),
                    "keys_required": not loopback or bool(usable_keys(catalog))}
            if not loopback:
                log.warning("gateway on %s: plain HTTP, so keys and text travel unencrypted; "
                            "use it on a network you trust", options.host)
            (on_ready or _log_ready)(info)

        uvicorn_log = logging.getLogger("uvicorn.error")
        if not_a_shutdown_cancel not in uvicorn_log.filters:
            uvicorn_log.addFilter(not_a_shutdown_cancel)
        server = NotifyingServer(uvicorn.Config(app, log_config=None, access_log=False,
                                                lifespan="on", ws="none", server_header=False,
                                                timeout_graceful_shutdown=5,
                                                timeout_keep_alive=15), started)

        def stopped(error: str | None) -> None:
            log.info("gateway stopped (%d request(s) logged)", gateway.book.written)

        run_until_stopped(server, sock, log, stopped)
    finally:
        catalog.close()


def _log_ready(info: dict[str, Any]) -> None:
    log.info("gateway on %s: OpenAI base URL %s/v1, %d model(s): %s", info["url"],
             info["url"], len(info["models"]), ", ".join(info["models"]) or "none yet")


STOP_GRACE_S = 20.0  # the gateway stops each deployment cleanly before it exits


def gateway_argv(home: Home, options: GatewayOptions) -> list[str]:
    """``python -m llmops_desktop.gateway`` with ``options`` and JSON lines on its stdout
    (``ready`` once it serves, ``models`` whenever a model's state changes)."""
    import sys

    argv = [sys.executable, "-m", "llmops_desktop.gateway", "--home", str(home.root), "--json",
            "--host", options.host, "--port", str(options.port),
            "--idle-unload", f"{options.idle_unload:g}",
            "--load-timeout", f"{options.load_timeout:g}"]
    if options.memory_budget_gb is not None:
        argv += ["--memory-budget", f"{options.memory_budget_gb:g}"]
    if options.gpus:
        argv += ["--gpus", options.gpus]
    return argv


def start_gateway_process(options: GatewayOptions, home: Home) -> subprocess.Popen[bytes]:
    """The gateway as a child (the window's): its stderr joins its stdout, and it stops
    (stopping its deployments) when the process that started it ends."""
    from llmops_desktop.procs import die_with_parent_preexec

    options = options.checked()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(gateway_argv(home, options), stdout=subprocess.PIPE,  # noqa: S603
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True, preexec_fn=die_with_parent_preexec())


def gateway_lines(process: subprocess.Popen[bytes]) -> Generator[dict[str, Any] | str, None, int]:
    """What a gateway child prints, to its end: its JSON lines as dicts, the rest as text
    (each line bounded; :func:`llmops_desktop.procs.read_output`); the generator returns
    its exit code."""
    from llmops_desktop.procs import follow, read_output

    return follow(process, read_output)


def stop_gateway_process(process: subprocess.Popen[bytes], *, wait: bool = False) -> bool:
    """SIGTERM the gateway (it stops its deployments first); with ``wait``, SIGKILL it
    after :data:`STOP_GRACE_S` (its deployments then get SIGTERM from the kernel)."""
    from llmops_desktop.procs import terminate

    return terminate(process, grace=STOP_GRACE_S if wait else None)
