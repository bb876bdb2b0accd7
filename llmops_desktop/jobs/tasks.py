"""The registry of job kinds: each maps to a typed request and a generator run in a child.

Every long operation has a frozen request dataclass (a :class:`JobRequest`) beside
its task. Both front ends build the request, call its ``check`` and submit it
(``runner.submit(catalog, request)``); the job row keeps ``request.to_params()`` and
the child rebuilds the request with ``from_params`` and hands it to the task, which
checks it again. Tasks register themselves with :func:`register_task` when their
module is imported; the child imports :data:`TASK_MODULES` lazily so the window
never pays for a task's heavy imports.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.fields import check_values
from llmops_desktop.jobs.events import Event
from llmops_desktop.paths import Home
from llmops_desktop.settings import Settings

TaskFn = Callable[..., Iterator[Event]]
R = TypeVar("R", bound="JobRequest")

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
    "eval": "llmops_desktop.evaluate.task",
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


class JobRequest:
    """Base of every long operation's request: a frozen dataclass with a ``kind``.

    Subclasses declare their fields with ``llmops_desktop.fields.spec`` (ids that code
    fills in are ``exposed=False``), so flags and forms come from the same list.
    """

    kind: ClassVar[str] = ""

    def to_params(self) -> dict[str, Any]:
        """The job row's parameters: plain JSON (tuples become lists)."""
        assert dataclasses.is_dataclass(self)
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_params(cls: type[R], params: dict[str, Any]) -> R:
        """The request back from a job row's parameters; unknown names are refused."""
        assert dataclasses.is_dataclass(cls)
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InvalidInputError(f"{cls.kind or cls.__name__}: unknown parameter(s) "
                                    f"{', '.join(unknown)}; known: {', '.join(known)}.")
        hints = typing.get_type_hints(cls)
        values = {}
        for name, value in params.items():
            hint = hints.get(name)
            if isinstance(value, list) and "tuple" in str(hint):
                value = tuple(value)
            elif isinstance(value, dict) and isinstance(hint, type) and dataclasses.is_dataclass(hint):
                value = hint.from_dict(value) if hasattr(hint, "from_dict") else hint(**value)
            values[name] = value
        try:
            return cls(**values)
        except TypeError as exc:
            raise InvalidInputError(f"{cls.kind or cls.__name__}: {exc}") from None

    def check(self: R, catalog: Catalog | None = None) -> R:
        """Raise InvalidInputError (saying what to change) if this request cannot run.

        Returns the request, possibly normalised. The base checks each field's choices
        and bounds; subclasses add what needs the catalog.
        """
        check_values(self)
        return self


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


_REGISTRY: dict[str, tuple[TaskFn, type[JobRequest]]] = {}


def register_task(kind: str, request_cls: type[JobRequest]) -> Callable[[TaskFn], TaskFn]:
    """Register ``fn(ctx, request)`` as the task of ``kind``; a kind registers once."""
    if request_cls.kind != kind:
        raise ValueError(f"{request_cls.__name__}.kind is {request_cls.kind!r}, not {kind!r}")

    def deco(fn: TaskFn) -> TaskFn:
        if kind in _REGISTRY:
            raise ValueError(f"Job kind {kind!r} is already registered (by "
                             f"{_REGISTRY[kind][0].__module__}); pick another kind.")
        _REGISTRY[kind] = (fn, request_cls)
        return fn
    return deco


def _registered(kind: str) -> tuple[TaskFn, type[JobRequest]]:
    if kind not in _REGISTRY and kind in TASK_MODULES:
        importlib.import_module(TASK_MODULES[kind])
    try:
        return _REGISTRY[kind]
    except KeyError:
        raise ValueError(f"Unknown job kind {kind!r}; known: {', '.join(sorted(TASK_MODULES))}") from None


def request_class(kind: str) -> type[JobRequest]:
    """The request class of ``kind`` (its task module is imported for it)."""
    return _registered(kind)[1]


def get_task(kind: str) -> TaskFn:
    """The task as the child runs it: ``task(ctx, **params)``, the request rebuilt first."""
    fn, request_cls = _registered(kind)

    def run(ctx: JobContext, **params: Any) -> Iterator[Event]:
        return fn(ctx, request_cls.from_params(params))
    return run


def known_kinds() -> list[str]:
    return sorted(TASK_MODULES)


def task_params_for_display(params: dict[str, Any]) -> dict[str, Any]:
    """Job parameters with anything secret-looking removed (tokens never reach logs)."""
    return {k: ("***" if any(s in k.lower() for s in ("token", "key", "secret", "password"))
                else v) for k, v in params.items()}
