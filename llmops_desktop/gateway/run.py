"""Run the gateway: check the address against the keys, bind, serve until stopped.

Stopping the gateway (Ctrl-C, SIGTERM) stops every deployment it started and writes
its request log first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
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
                on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve the gateway on ``options.host``/``port``; blocks until stopped. Off loopback
    it refuses to start unless at least one usable API key exists."""
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
        budget = (int(options.memory_budget_gb * 2**30)
                  if options.memory_budget_gb is not None else None)
        pool = DeploymentPool(catalog, PoolOptions(idle_unload=options.idle_unload,
                                                   memory_budget=budget,
                                                   load_timeout=options.load_timeout))
        if options.gpus is not None:  # the deployments inherit it (start_server copies it)
            os.environ["CUDA_VISIBLE_DEVICES"] = options.gpus
        gateway = Gateway(pool, open_without_keys=loopback)
        app = create_gateway_app(gateway)
        sock = bind_socket(options.host, options.port)
        url = socket_url(sock, options.host)

        def started() -> None:
            info = {"url": url, "pid": os.getpid(),
                    "models": [s.name for s in pool.slots.values()],
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
