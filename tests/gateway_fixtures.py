"""Gateway test helpers: two demo GGUF models in the catalog, a live gateway process."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from llmops_desktop.catalog import Artifact, Catalog
from tests.mirror_fixtures import import_artifact


def two_models(catalog: Catalog, demo_gguf: Path) -> tuple[Artifact, Artifact]:
    """The demo GGUF imported twice, as ``alpha`` and ``beta`` (a copy under another file
    name, so the catalog sees two artifacts)."""
    other = demo_gguf.with_name("beta-" + demo_gguf.name)
    shutil.copy(demo_gguf, other)
    return import_artifact(catalog, demo_gguf, "alpha"), import_artifact(catalog, other, "beta")


@dataclass
class GatewayProcess:
    proc: subprocess.Popen[str]
    info: dict[str, Any] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def models(self, key: str | None = None) -> dict[str, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = requests.get(self.url + "/v1/models", headers=headers, timeout=30)
        r.raise_for_status()
        return {m["id"]: m for m in r.json()["data"]}

    def wait_state(self, model: str, state: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.models()[model]["state"] != state:
            assert time.monotonic() < deadline, f"{model} never became {state}"
            time.sleep(0.2)


def _read(proc: subprocess.Popen[str], gw: GatewayProcess, ready: queue.Queue[dict]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        gw.lines.append(line.rstrip("\n"))
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("type") == "ready":
                ready.put(event)
    ready.put({})


@contextmanager
def gateway_process(home: Path | Any, *args: str) -> Iterator[GatewayProcess]:
    """``llmops gateway --port 0 --json ARGS`` as a child; SIGTERM (and its deployments
    stopped) on exit."""
    env = {k: v for k, v in os.environ.items() if k != "LLMOPS_API_KEY"}
    root = str(getattr(home, "root", home))
    proc = subprocess.Popen([sys.executable, "-m", "llmops_desktop.gateway", "--home", root,
                             "--port", "0", "--json", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    gw = GatewayProcess(proc)
    ready: queue.Queue[dict] = queue.Queue()
    reader = threading.Thread(target=_read, args=(proc, gw, ready), daemon=True)
    reader.start()
    try:
        gw.info = ready.get(timeout=90)
        assert gw.info, "the gateway did not start:\n" + "\n".join(gw.lines)
        yield gw
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)


def deployment_pid(catalog: Catalog, ref: str) -> int:
    """The pid of the running deployment the gateway started for ``ref``."""
    row = catalog.conn.execute("SELECT pid FROM deployments WHERE name = ? AND state = "
                               "'running' ORDER BY id DESC LIMIT 1", (ref,)).fetchone()
    assert row is not None, f"no running deployment of {ref}"
    return int(row[0])


def llmops(home: Any, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    root = str(getattr(home, "root", home))
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", root, *args],
                          capture_output=True, text=True, timeout=120)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc
