"""The vLLM engine: vLLM's own OpenAI server as a deployment's process, for GPU servers.

vLLM is an optional extra (``pip install 'llmops-desktop[vllm]'``) that needs NVIDIA GPUs.
:func:`vllm_available` says whether it can run here, and why not (the Deployments page
greys the choice out with that reason; ``llmops serve --engine vllm`` refuses with it).

:func:`serve_vllm` is what ``llmops serve`` (and the server child the window and the
gateway start) does for ``--engine vllm``: it records the deployment, starts
``python -m vllm.entrypoints.openai.api_server`` for the Hugging Face folder (tensor
parallel over the GPUs in ``--gpus``, only those visible to it), waits until its
``/health`` answers, says where it listens (the same ready line as every deployment), and
stops it with itself. The API key reaches vLLM in its environment (``VLLM_API_KEY``),
never its command line. vLLM answers ``/v1/chat/completions``, ``/v1/completions`` and
``/v1/models`` itself, so the gateway proxies to it like to any deployment.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.procs import die_with_parent_preexec

log = logging.getLogger("llmops_desktop.serving")

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
VLLM_KEY_ENV = "VLLM_API_KEY"  # vLLM's own way to take a key without a command line
LOAD_TIMEOUT_S = 1800.0  # a large model's first load (weights, CUDA graphs) takes minutes
POLL_S = 0.5
STOP_GRACE_S = 30.0  # vLLM frees its GPU workers before it exits
MAX_READ = 1 << 20  # bytes read from vLLM's /v1/models


@functools.lru_cache(maxsize=1)
def vllm_available() -> tuple[bool, str]:
    """(whether vLLM can serve here, the reason when it cannot): vLLM installed and an
    NVIDIA GPU the driver sees. Cached: neither changes while the app runs."""
    if importlib.util.find_spec("vllm") is None:
        return False, ("vLLM is not installed. It is optional and needs an NVIDIA GPU: "
                       "pip install 'llmops-desktop[vllm]'.")
    from llmops_desktop.monitor.gpu import diagnose

    found = diagnose()
    if not found.available:
        return False, f"vLLM needs an NVIDIA GPU and none can be used here: {found.message}"
    return True, f"vLLM on {len(found.devices)} NVIDIA GPU(s)"


def require_vllm() -> None:
    """Raise InvalidInputError saying why vLLM cannot serve here, if it cannot."""
    ok, reason = vllm_available()
    if not ok:
        raise InvalidInputError(f"The vllm engine cannot run here: {reason} Use --engine "
                                "torch (or llama.cpp with a GGUF) instead.")


def tensor_parallel_size(config: Any) -> int:
    """vLLM's ``--tensor-parallel-size``: one shard per GPU in ``--gpus`` (1 without)."""
    return max(1, len(config.options.placement().gpus))


def vllm_command(config: Any, port: int) -> list[str]:
    """vLLM's OpenAI server for ``config`` (a DeploymentConfig) on ``port``. Every name a
    client may send as ``model`` is served; the deployment's own name comes first (the
    one vLLM's answers carry)."""
    from llmops_desktop.serving.templates import resolve_chat_template

    o = config.options
    names = [config.name] + sorted(config.aliases - {config.name})
    argv = [sys.executable, "-m", VLLM_MODULE, "--model", str(config.model_path),
            "--served-model-name", *names, "--host", o.host, "--port", str(port),
            "--tensor-parallel-size", str(tensor_parallel_size(config))]
    if o.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", f"{o.gpu_memory_utilization:g}"]
    if o.ctx is not None:
        argv += ["--max-model-len", str(o.ctx)]
    template = resolve_chat_template(o.chat_template)
    if template:
        argv += ["--chat-template", template]
    return argv


def vllm_environment(config: Any, api_key: str | None) -> dict[str, str]:
    """vLLM's environment: ours, only the chosen GPUs visible, the key if there is one."""
    from llmops_desktop.serving.config import API_KEY_ENV

    env = {k: v for k, v in os.environ.items() if k not in (API_KEY_ENV, VLLM_KEY_ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    gpus = config.options.placement().visible_devices
    if gpus is not None:
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = gpus
    if api_key:
        env[VLLM_KEY_ENV] = api_key
    return env


def start_vllm(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """vLLM's server in its own session (stopped as a group: tensor-parallel workers go
    too), its output on our stderr (the serving log when the window started us)."""
    return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,  # noqa: S603
                            stdout=sys.stderr.fileno(), stderr=sys.stderr.fileno(),
                            start_new_session=True,
                            preexec_fn=die_with_parent_preexec())  # gone if we die (Linux)


def _local_url(host: str, port: int) -> str:
    """Where this machine reaches a server listening on ``host``."""
    shown = host.strip("[]")
    if shown in ("", "0.0.0.0", "::"):
        shown = "127.0.0.1"
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


def _get(url: str, api_key: str | None, timeout: float = 2.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),  # noqa: S310
                                    timeout=timeout) as r:
            return r.status, r.read(MAX_READ)
    except urllib.error.HTTPError as exc:
        return exc.code, b""
    except (OSError, ValueError):
        return 0, b""


def wait_until_healthy(process: subprocess.Popen[bytes], base: str, stop: threading.Event,
                       timeout: float = LOAD_TIMEOUT_S) -> bool:
    """Poll ``base``/health until it answers 200 (True); False when ``stop`` is set.
    Raises InvalidInputError when vLLM exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not stop.is_set():
        code = process.poll()
        if code is not None:
            raise InvalidInputError(f"vLLM exited (code {code}) before it answered; its "
                                    "output is in the serving log (logs/serving.log).")
        if _get(base + "/health", None)[0] == 200:
            return True
        if time.monotonic() > deadline:
            raise InvalidInputError(f"vLLM did not answer /health within {timeout:.0f} s; "
                                    "its output is in the serving log.")
        stop.wait(POLL_S)
    return False


def served_context(base: str, api_key: str | None) -> int | None:
    """The context length vLLM serves (``max_model_len`` in its /v1/models), if it says."""
    status, body = _get(base + "/v1/models", api_key)
    try:
        data = json.loads(body) if status == 200 else {}
        value = data["data"][0].get("max_model_len")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) and value > 0 else None


def serve_vllm(catalog: Any, config: Any, api_key: str | None,
               on_ready: Callable[[dict[str, Any]], None] | None) -> None:
    """Serve ``config`` with vLLM until SIGTERM or Ctrl-C (or vLLM's end); blocks."""
    require_vllm()
    supervise(catalog, config, api_key, on_ready, vllm_command)


def supervise(catalog: Any, config: Any, api_key: str | None,
              on_ready: Callable[[dict[str, Any]], None] | None,
              command: Callable[[Any, int], list[str]], *,
              stop: threading.Event | None = None, timeout: float = LOAD_TIMEOUT_S) -> None:
    """Record the deployment, start ``command(config, port)`` (vLLM's server), say it is
    ready once its /health answers, and stop it with us: on SIGTERM or Ctrl-C (or
    ``stop``, set from another thread); a server that ends on its own fails the
    deployment. Must run on the main thread (it takes SIGTERM and SIGINT meanwhile)."""
    from dataclasses import replace

    from llmops_desktop.httpserve import bind_socket, socket_url
    from llmops_desktop.procs import terminate
    from llmops_desktop.serving.store import create_deployment, update_deployment

    o = config.options
    sock = bind_socket(o.host, o.port)  # the port is free (0: pick one) before vLLM starts
    port = sock.getsockname()[1]
    url = socket_url(sock, o.host)
    sock.close()
    config = replace(config, id=create_deployment(
        catalog, name=config.name, artifact_id=config.artifact_id,
        artifact_ref=config.artifact_ref, engine="vllm", host=o.host,
        settings=config.settings_json()))
    stop = threading.Event() if stop is None else stop
    previous = {s: signal.signal(s, lambda *_: stop.set())
                for s in (signal.SIGTERM, signal.SIGINT)}
    process = None
    error: str | None = None
    try:
        process = start_vllm(command(config, port), vllm_environment(config, api_key))
        base = _local_url(o.host, port)
        if wait_until_healthy(process, base, stop, timeout):
            update_deployment(catalog, config.id, state="running", port=port, url=url,
                              pid=os.getpid())
            info = {"url": url, "deployment_id": config.id, "name": config.name,
                    "model": config.artifact_ref, "engine": "vllm",
                    "n_ctx": served_context(base, api_key),
                    "parallel": None,  # vLLM schedules its own batch (--max-num-seqs)
                    "tensor_parallel": tensor_parallel_size(config), "pid": os.getpid(),
                    "engine_pid": process.pid}
            (on_ready or (lambda i: log.info("serving %s (vllm) on %s", i["name"],
                                             i["url"])))(info)
            while not stop.is_set() and process.poll() is None:
                stop.wait(POLL_S)
            if not stop.is_set():
                error = f"vLLM exited on its own (code {process.returncode}); see the log"
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        if process is not None:
            terminate(process, grace=STOP_GRACE_S, group=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        update_deployment(catalog, config.id, state="failed" if error else "stopped",
                          error=error)
    if error:
        raise InvalidInputError(error)
