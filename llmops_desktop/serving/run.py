"""Run one deployment: resolve the artifact, refuse unsafe binds, load the engine, serve.

:func:`serve` blocks until Ctrl-C or SIGTERM, then stops cleanly: requests still running
are cancelled after a short grace period, worker threads finish their current token, the
request log is written to the catalog, and the deployment is marked stopped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import uvicorn

from llmops_desktop.catalog import Catalog
from llmops_desktop.httpserve import (
    NotifyingServer,
    bind_socket,
    not_a_shutdown_cancel,
    run_until_stopped,
    socket_url,
)
from llmops_desktop.netaddr import check_secret, is_loopback
from llmops_desktop.paths import Home
from llmops_desktop.serving.app import create_app
from llmops_desktop.serving.config import (
    API_KEY_ENV,
    DeploymentConfig,
    ServeOptions,
    check_bind,
)
from llmops_desktop.serving.engines.base import get_engine
from llmops_desktop.serving.recorder import RequestRecorder
from llmops_desktop.serving.store import (
    create_deployment,
    update_deployment,
)

log = logging.getLogger("llmops_desktop.serving")


def check_api_key(key: str) -> str:
    return check_secret(key, "API key")


def serve(artifact: str | int, options: ServeOptions | None = None, *,
          home: Home | str | os.PathLike[str] | None = None, api_key: str | None = None,
          on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve ``artifact`` (id, name or NAME@VERSION) over HTTP; blocks until stopped.

    ``api_key`` defaults to ``$LLMOPS_API_KEY``; a host other than a loopback address is
    refused without one. ``on_ready(info)`` is called once the socket accepts connections,
    with ``url``, ``deployment_id``, ``name``, ``engine``, ``n_ctx`` and ``parallel``.
    """
    home = home if isinstance(home, Home) else Home.resolve(home)
    options = (options or ServeOptions()).checked()
    api_key = check_api_key(api_key or os.environ.get(API_KEY_ENV, "")) or None
    check_bind(options.host, api_key)
    catalog = Catalog.open(home)
    try:
        target = catalog.resolve(artifact)
        from llmops_desktop.share.governance import check_servable

        check_servable(catalog, target)  # Settings may allow approved artifacts only
        config = DeploymentConfig.for_artifact(target, options, catalog)
        if config.engine == "vllm":  # vLLM's own server is the deployment's process
            from llmops_desktop.serving.engines.vllm_engine import serve_vllm

            serve_vllm(catalog, config, api_key, on_ready)
            return
        get_engine(config.engine)  # an unknown engine fails before the port is taken
        sock = bind_socket(options.host, options.port)
        url = socket_url(sock, options.host)
        config = replace(config, id=create_deployment(
            catalog, name=config.name, artifact_id=config.artifact_id,
            artifact_ref=config.artifact_ref, engine=config.engine, host=options.host,
            settings=config.settings_json()))
        _serve_bound(catalog, home, config, sock, url, api_key, on_ready)
    finally:
        catalog.close()


def _serve_bound(catalog: Catalog, home: Home, config: DeploymentConfig, sock: Any, url: str,
                 api_key: str | None, on_ready: Callable[[dict[str, Any]], None] | None) -> None:
    port = sock.getsockname()[1]
    try:
        engine = get_engine(config.engine).load(config.model_path, config.engine_settings())
    except BaseException as exc:
        sock.close()
        update_deployment(catalog, config.id, state="failed", error=str(exc) or type(exc).__name__)
        raise
    recorder = RequestRecorder(home).start()
    app = create_app(config, engine, recorder, api_key=api_key)
    info = {"url": url, "deployment_id": config.id, "name": config.name,
            "model": config.artifact_ref, "engine": config.engine, "n_ctx": engine.n_ctx,
            "parallel": engine.parallel_slots, "pid": os.getpid()}

    def started() -> None:
        update_deployment(catalog, config.id, state="running", port=port, url=url,
                          pid=os.getpid())
        if not is_loopback(config.options.host):
            log.warning("serving on %s: plain HTTP, so the API key and the text travel "
                        "unencrypted; use it on a network you trust", config.options.host)
        (on_ready or _log_ready)(info)

    uvicorn_log = logging.getLogger("uvicorn.error")
    if not_a_shutdown_cancel not in uvicorn_log.filters:
        uvicorn_log.addFilter(not_a_shutdown_cancel)
    server = NotifyingServer(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                    ws="none", server_header=False, timeout_graceful_shutdown=3,
                                    timeout_keep_alive=15), started)

    def stopped(error: str | None) -> None:
        app.state.llmops.close()
        recorder.close()
        engine.close()
        update_deployment(catalog, config.id, state="failed" if error else "stopped",
                          error=error)
        log.info("deployment %s stopped (%d request(s) logged)", config.name, recorder.written)

    run_until_stopped(server, sock, log, stopped)


def _log_ready(info: dict[str, Any]) -> None:
    log.info("serving %s (%s) on %s; OpenAI base URL %s/v1", info["name"], info["engine"],
             info["url"], info["url"])
