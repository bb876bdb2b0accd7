"""Mirror test helpers: import models, run the mirror as the window does, env for clients."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.importer import import_model, inspect_source

READY_PREFIX = "mirror listening on "


def import_artifact(catalog: Catalog, path: Path, name: str) -> Artifact:
    """Put ``path`` in the catalog through the real import, as ``llmops import`` does."""
    result = None
    for event in import_model(catalog, inspect_source(path, name=name),
                              staging=catalog.home.job_staging_dir(1)):
        if event.type == "result":
            result = event
    assert result is not None
    return catalog.artifact(result.data["artifact_id"])


@dataclass
class MirrorProcess:
    """A ``python -m llmops_desktop.mirror`` child and everything it printed."""

    proc: subprocess.Popen[str]
    url: str = ""
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def _read(proc: subprocess.Popen[str], mirror: MirrorProcess, ready: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        mirror.lines.append(line)
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == "log" and event.get("message", "").startswith(READY_PREFIX):
            ready.put(event["message"][len(READY_PREFIX):])
        elif event.get("type") == "error":
            ready.put("")
    ready.put("")  # the child ended without becoming ready


def mirror_command(home: Path, *extra: str, host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "llmops_desktop.mirror", "--home", str(home), "--host", host,
            "--port", "0", *extra]


@contextmanager
def running_mirror(home: Path, *extra: str, env: dict[str, str] | None = None
                   ) -> Iterator[MirrorProcess]:
    """Start the mirror on 127.0.0.1 (a free port), wait for its ready line, stop it after."""
    child_env = {k: v for k, v in os.environ.items() if k != "LLMOPS_MIRROR_TOKEN"}
    child_env.update(env or {})
    proc = subprocess.Popen(mirror_command(home, *extra), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=child_env)
    mirror = MirrorProcess(proc)
    ready: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=_read, args=(proc, mirror, ready), daemon=True)
    reader.start()
    try:
        mirror.url = ready.get(timeout=60)
        assert mirror.url, f"the mirror did not start:\n{mirror.output}"
        yield mirror
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    assert proc.returncode == 0, f"the mirror did not stop cleanly ({proc.returncode}):\n" \
                                 f"{mirror.output}"


def client_env(url: str, tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for a hub client child: our endpoint, a private cache, nothing online."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN")}
    env.update(HF_ENDPOINT=url, HF_HOME=str(tmp / "hf-home"), HF_HUB_CACHE=str(tmp / "hf-cache"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", **extra)
    return env
