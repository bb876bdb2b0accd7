"""The events long work yields, and their one-JSON-object-per-line wire form.

A task is a generator of these events. The child process prints each as one
JSON line on stdout; the CLI and the window parse them back with
:func:`parse_event`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Union

from llmops_desktop.errors import LLMOpsError, error_from_event


@dataclass(frozen=True)
class Progress:
    done: float
    total: float | None = None
    unit: str = ""
    message: str = ""
    detail: dict[str, Any] | None = None  # e.g. the file in flight: {"file", "done", "total"}
    type: str = field(default="progress", init=False)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


@dataclass(frozen=True)
class Log:
    message: str
    level: str = "info"
    type: str = field(default="log", init=False)


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    step: float | None = None
    type: str = field(default="metric", init=False)


@dataclass(frozen=True)
class Result:
    data: dict[str, Any]
    type: str = field(default="result", init=False)


@dataclass(frozen=True)
class Error:
    """A failure: the error's class name, message, exit code and fields, and where the
    class lives, so the parent raises the same error (:meth:`to_exception`)."""

    error_type: str
    message: str
    exit_code: int | None = None  # None: the class's own
    fields: dict[str, Any] = field(default_factory=dict)
    module: str = ""
    qualname: str = ""
    type: str = field(default="error", init=False)

    @classmethod
    def from_exception(cls, exc: LLMOpsError) -> Error:
        return cls(**exc.to_event())

    def to_exception(self) -> LLMOpsError:
        """The error the child raised, rebuilt: same class, message, exit code, fields."""
        return error_from_event(asdict(self))


Event = Union[Progress, Log, Metric, Result, Error]
_TYPES: dict[str, type] = {"progress": Progress, "log": Log, "metric": Metric,
                           "result": Result, "error": Error}


def event_to_line(event: Event) -> str:
    return json.dumps(asdict(event), separators=(",", ":"), default=str)


def parse_event(line: str | bytes) -> Event | None:
    """An event from one line; None for a line that is not one (stray prints)."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    cls = _TYPES.get(data.pop("type", None))
    if cls is None:
        return None
    try:
        return cls(**data)
    except TypeError:
        return None
