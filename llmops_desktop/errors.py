"""Every error the app raises on purpose.

Each error inherits the built-in it resembles, carries a message that tells
the user what to do next, and an exit code the CLI returns so that scripts
can tell failures apart.

Every subclass of :class:`LLMOpsError`, wherever it is defined, registers itself. An
error raised in a job's child crosses to the parent as an event
(:meth:`LLMOpsError.to_event`) that names its module and class and carries its
message, exit code and constructor fields; :func:`error_from_event` rebuilds the same
class there, importing its module (only one under ``llmops_desktop.``) if need be.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Modules outside this one that define errors: imported when an event names only a class
# (an older child, a helper process), so the name is found. tests/test_architecture.py
# checks that the list is complete.
ERROR_MODULES: tuple[str, ...] = (
    "llmops_desktop.share.errors",
    "llmops_desktop.datasets.store",
    "llmops_desktop.mirror.repos",
    "llmops_desktop.serving.engines.base",
    "llmops_desktop.evaluate.errors",
    "llmops_desktop.prompts.store",
    "llmops_desktop.prompts.templates",
)
_PACKAGE = "llmops_desktop."


ERROR_TYPES: dict[str, type[LLMOpsError]] = {}  # by class name; the first one defined wins
_BY_PATH: dict[str, type[LLMOpsError]] = {}  # by "module:qualname"


class LLMOpsError(Exception):
    """Base class; ``exit_code`` is what ``llmops`` exits with.

    The named parameters of a subclass's ``__init__`` after the message (say
    ``existing_id``) are its fields: kept as attributes of the same name, they travel
    with the error from a job's child to the parent.
    """

    exit_code = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ERROR_TYPES.setdefault(cls.__name__, cls)
        _BY_PATH[f"{cls.__module__}:{cls.__qualname__}"] = cls

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The constructor's parameters after the message: what an event carries."""
        if cls.__init__ is Exception.__init__:
            return ()
        params = list(inspect.signature(cls.__init__).parameters.values())[2:]
        return tuple(p.name for p in params
                     if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def to_event(self) -> dict[str, Any]:
        """This error as plain JSON: class, message, exit code and fields."""
        cls = type(self)
        return {"error_type": cls.__name__, "message": str(self), "exit_code": self.exit_code,
                "fields": {n: _to_json(getattr(self, n, None)) for n in cls.field_names()},
                "module": cls.__module__, "qualname": cls.__qualname__}

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> LLMOpsError:
        """The error an event describes (see :func:`error_from_event`)."""
        return error_from_event(event)


class NotFoundError(LLMOpsError, LookupError):
    """A model, artifact or job the user named does not exist."""

    exit_code = 3


class ArtifactNotFoundError(NotFoundError):
    pass


class JobNotFoundError(NotFoundError):
    pass


class ConflictError(LLMOpsError):
    """The request clashes with what the catalog already holds."""

    exit_code = 4


class DuplicateArtifactError(ConflictError, FileExistsError):
    """The same files are already in the catalog."""

    def __init__(self, message: str, existing_id: int | None = None) -> None:
        super().__init__(message)
        self.existing_id = existing_id


class HasDependentsError(ConflictError):
    """An artifact that others derive from cannot be removed on its own."""


class InvalidInputError(LLMOpsError, ValueError):
    """What the user pointed us at is not something we can take."""

    exit_code = 5


class EmptySourceError(InvalidInputError):
    pass


class NoWeightsError(InvalidInputError):
    pass


class CorruptFileError(InvalidInputError):
    """A weights file is truncated or malformed."""


class PickleRefusedError(InvalidInputError):
    """Pickle checkpoints can run arbitrary code when loaded."""


class UnreadableFileError(InvalidInputError, PermissionError):
    pass


class UnsafePathError(InvalidInputError):
    """A name from outside (a hub listing, a package member, a link) would leave its folder."""

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name


class DiskFullError(LLMOpsError, OSError):
    exit_code = 6


class CatalogError(LLMOpsError):
    """The catalog database is unusable (newer schema, corruption)."""

    exit_code = 7


class AuthError(LLMOpsError, PermissionError):
    """The server refused our credentials (401/403): a gated repo or a bad token."""

    exit_code = 9


class NetworkError(LLMOpsError, ConnectionError):
    """The server could not be reached, or closed the connection too often."""

    exit_code = 10


class NotAHubError(InvalidInputError):
    """The endpoint answers, but not as a Hugging Face hub does."""


class ChecksumError(CorruptFileError):
    """A downloaded file's size or sha256 is not what the hub said."""


class JobError(LLMOpsError, RuntimeError):
    """A job failed in its child process; the message is the child's."""


class CancelledError(LLMOpsError):
    """The user cancelled the work."""

    exit_code = 130


class OfflineModeError(LLMOpsError, ConnectionError):
    """A network operation was attempted while Offline is on."""

    exit_code = 8


ERROR_TYPES[LLMOpsError.__name__] = LLMOpsError
_BY_PATH[f"{LLMOpsError.__module__}:{LLMOpsError.__qualname__}"] = LLMOpsError


def _to_json(value: Any) -> Any:
    """A field's value as JSON; our frozen dataclasses and paths keep their type."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Path):
        return {"__path__": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        return {"__dataclass__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _to_json(getattr(value, f.name))
                           for f in dataclasses.fields(value)}}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    return str(value)


def _from_json(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"__path__"}:
        return Path(value["__path__"])
    if set(value) == {"__dataclass__", "fields"}:
        cls = _import_attr(str(value["__dataclass__"]))
        fields = {k: _from_json(v) for k, v in dict(value["fields"]).items()}
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            try:
                return cls(**fields)
            except TypeError:
                pass
        return fields
    return {k: _from_json(v) for k, v in value.items()}


def _import_attr(path: str) -> Any:
    """``module:qualname`` to the object, importing only modules of this package."""
    module, _, qualname = path.partition(":")
    if not (module == "llmops_desktop" or module.startswith(_PACKAGE)) or not qualname:
        return None
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj


def error_class(name: str, module: str = "", qualname: str = "") -> type[LLMOpsError] | None:
    """The registered error class: by module and qualname, else by name; None if unknown."""
    if module and qualname:
        key = f"{module}:{qualname}"
        if key not in _BY_PATH:
            _import_attr(key)  # registers it
        if key in _BY_PATH:
            return _BY_PATH[key]
    if name not in ERROR_TYPES:
        for extra in ERROR_MODULES:
            try:
                importlib.import_module(extra)
            except ImportError:
                continue
    return ERROR_TYPES.get(name)


def error_from_event(event: Mapping[str, Any]) -> LLMOpsError:
    """Rebuild an error a child process reported: its own class, message, exit code and
    fields; an unknown class comes back as a :class:`JobError` with the same message and
    exit code."""
    name = str(event.get("error_type") or event.get("type") or "")
    message = str(event.get("message", ""))
    exit_code = event.get("exit_code")
    raw_fields = event.get("fields") or {}
    fields = {k: _from_json(v) for k, v in raw_fields.items()} if isinstance(
        raw_fields, Mapping) else {}
    cls = error_class(name, str(event.get("module") or ""), str(event.get("qualname") or ""))
    if cls is None:
        exc: LLMOpsError = JobError(message)
    else:
        kwargs = {k: v for k, v in fields.items() if k in cls.field_names()}
        try:
            exc = cls(message, **kwargs)
        except Exception:  # noqa: BLE001 - a constructor that wants more: set what we have
            exc = cls.__new__(cls)
            Exception.__init__(exc, message)
            for key, value in kwargs.items():
                setattr(exc, key, value)
    if isinstance(exit_code, int) and exit_code != exc.exit_code:
        exc.exit_code = exit_code
    return exc


def error_from_name(name: str, message: str) -> LLMOpsError:
    """Rebuild an error reported by its class name only (no fields)."""
    return error_from_event({"error_type": name, "message": message})
