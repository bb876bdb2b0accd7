"""The registry of job kinds: each maps to a generator function run in a child.

A task takes a :class:`JobContext` and the job's parameters and yields
events. Tasks register themselves with :func:`register_task` when their
module is imported; the child imports :data:`TASK_MODULES` lazily so the
window never pays for a task's heavy imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.jobs.events import Event
from llmops_desktop.paths import Home
from llmops_desktop.settings import Settings

TaskFn = Callable[..., Iterator[Event]]
_REGISTRY: dict[str, TaskFn] = {}

# kind -> module that registers it. Imported only inside the child process.
TASK_MODULES: dict[str, str] = {
    "import": "llmops_desktop.importer",
    "demo": "llmops_desktop.demo",
    "download": "llmops_desktop.acquire.download",
    "quantize": "llmops_desktop.quantize.task",
    "finetune": "llmops_desktop.finetune.task",
    "merge": "llmops_desktop.finetune.merge",
    "lora-gguf": "llmops_desktop.finetune.merge",
    "export": "llmops_desktop.share.export",
    "import-package": "llmops_desktop.share.unpack",
}


@dataclass
class JobContext:
    """What a task gets besides its parameters."""

    catalog: Catalog
    home: Home
    job_id: int
    settings: Settings

    @property
    def staging_dir(self) -> Path:
        """A private folder for half-written files; removed when the job ends, however."""
        path = self.home.job_staging_dir(self.job_id)
        path.mkdir(parents=True, exist_ok=True)
        return path


def register_task(kind: str) -> Callable[[TaskFn], TaskFn]:
    def deco(fn: TaskFn) -> TaskFn:
        _REGISTRY[kind] = fn
        return fn
    return deco


def get_task(kind: str) -> TaskFn:
    if kind not in _REGISTRY and kind in TASK_MODULES:
        importlib.import_module(TASK_MODULES[kind])
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"Unknown job kind {kind!r}; known: {', '.join(sorted(TASK_MODULES))}") from None


def known_kinds() -> list[str]:
    return sorted(TASK_MODULES)


def task_params_for_display(params: dict[str, Any]) -> dict[str, Any]:
    """Job parameters with anything secret-looking removed (tokens never reach logs)."""
    return {k: ("***" if any(s in k.lower() for s in ("token", "key", "secret", "password"))
                else v) for k, v in params.items()}
