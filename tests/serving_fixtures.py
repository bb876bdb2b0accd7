"""Serving test helpers: a server on a thread, a server process, a controllable engine."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import uvicorn

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.httpserve import NotifyingServer as _Server
from llmops_desktop.httpserve import bind_socket as _bind
from llmops_desktop.serving.app import create_app
from llmops_desktop.serving.config import DeploymentConfig, ServeOptions
from llmops_desktop.serving.engines.base import (
    Engine,
    EngineSettings,
    Piece,
    PromptTokens,
    SamplingParams,
    register_engine,
)
from llmops_desktop.serving.store import create_deployment


def make_deployment(catalog: Catalog, artifact: Artifact, **options: Any) -> DeploymentConfig:
    """A deployment of ``artifact`` with its row in the catalog, as ``serve`` makes it."""
    config = DeploymentConfig.for_artifact(artifact, ServeOptions(**options))
    return replace(config, id=create_deployment(
        catalog, name=config.name, artifact_id=artifact.id, artifact_ref=artifact.ref,
        engine=config.engine, host="127.0.0.1", settings=config.settings_json()))


@dataclass
class LiveServer:
    url: str
    app: Any

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    @property
    def state(self) -> Any:
        return self.app.state.llmops


@contextmanager
def server_thread(config: DeploymentConfig, engine: Engine, recorder: Any = None,
                  api_key: str | None = None) -> Iterator[LiveServer]:
    """uvicorn on 127.0.0.1 (a free port) on a thread, stopped on exit."""
    app = create_app(config, engine, recorder, api_key=api_key)
    sock = _bind("127.0.0.1", 0)
    started = threading.Event()
    server = _Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                                    ws="none", timeout_graceful_shutdown=1), started.set)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        assert started.wait(30), "the server did not start"
        yield LiveServer(f"http://127.0.0.1:{sock.getsockname()[1]}", app)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        app.state.llmops.close()


@register_engine("test-gated")
class GatedEngine(Engine):
    """Yields one piece at once, then waits for ``gate`` (checking the cancel flag every
    10 ms) before the rest: a generation the test holds open as long as it likes."""

    def __init__(self, slots: int = 1) -> None:
        self.gate = threading.Event()
        self.cancelled = threading.Event()
        self.running = 0
        self._slots = slots

    @classmethod
    def load(cls, model_path: Path, settings: EngineSettings) -> GatedEngine:
        return cls(settings.parallel)

    n_ctx = property(lambda self: 512)
    n_vocab = property(lambda self: 100)
    parallel_slots = property(lambda self: self._slots)
    has_chat_template = property(lambda self: True)

    def tokenize(self, text: str) -> PromptTokens:
        return PromptTokens([1] * max(1, len(text.split())))

    def tokenize_chat(self, messages: Sequence[dict[str, Any]]) -> PromptTokens:
        return PromptTokens([1] * (3 * len(messages)))

    def generate(self, prompt: PromptTokens, params: SamplingParams,
                 cancel: threading.Event):
        self.running += 1
        try:
            yield Piece("first ")
            while not self.gate.wait(0.01):
                if cancel.is_set():
                    self.cancelled.set()
                    return
            for _ in range(params.max_tokens - 1):
                yield Piece("x")
        finally:
            self.running -= 1


# ---- the server as a child process ----------------------------------------------------------

@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    info: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def _read(proc: subprocess.Popen[str], server: ServerProcess, ready: queue.Queue[dict]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        server.lines.append(line.rstrip("\n"))
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == "result":
            ready.put(event["data"])
        elif event.get("type") == "error":
            ready.put({})
    ready.put({})


@contextmanager
def server_process(home: Path, *args: str, env: dict[str, str] | None = None
                   ) -> Iterator[ServerProcess]:
    """``python -m llmops_desktop.serving`` on a free port; SIGTERM on exit."""
    child_env = {k: v for k, v in os.environ.items() if k != "LLMOPS_API_KEY"}
    child_env.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "llmops_desktop.serving", "--home", str(home),
                             "--port", "0", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=child_env)
    server = ServerProcess(proc)
    ready: queue.Queue[dict] = queue.Queue()
    reader = threading.Thread(target=_read, args=(proc, server, ready), daemon=True)
    reader.start()
    try:
        server.info = ready.get(timeout=90)
        assert server.info, f"the server did not start:\n{server.output}"
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
