"""A job kind for tests, ``raise-error``: raises the error class its parameters name.

Run in a real job child with :func:`start_raising_job`: the child imports this module
(which registers the kind) and then runs ``llmops_desktop.jobs.child`` as usual, so
the error goes through the same event, runner and rebuilding code as any job's.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llmops_desktop.catalog import Catalog
from llmops_desktop.datasets.shapes import BadRow
from llmops_desktop.errors import LLMOpsError
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Event
from llmops_desktop.jobs.tasks import JobContext, JobRequest, register_task

KIND = "raise-error"

# A value for each constructor field an error class has; a new field needs a line here.
SAMPLE_FIELDS: dict[str, Any] = {
    "existing_id": 7,
    "name": "../outside",
    "fingerprint": "SHA256:1f2e3d4c5b6a",
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "bad_rows": [BadRow(3, "no 'text' column"), BadRow(9, "not JSON")],
    "missing": ["customer", "order_id"],
}


def error_class(module: str, qualname: str) -> type[LLMOpsError]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def sample_error(cls: type[LLMOpsError], message: str) -> LLMOpsError:
    return cls(message, **{n: SAMPLE_FIELDS[n] for n in cls.field_names()})


@dataclass(frozen=True)
class RaiseErrorRequest(JobRequest):
    """Raise the error class ``module``.``qualname`` with ``message``."""

    kind: ClassVar[str] = KIND

    module: str
    qualname: str
    message: str


@register_task(KIND, RaiseErrorRequest)
def raise_error(ctx: JobContext, request: RaiseErrorRequest) -> Iterator[Event]:
    yield from ()
    raise sample_error(error_class(request.module, request.qualname), request.message)


def start_raising_job(catalog: Catalog, cls: type[LLMOpsError], message: str) -> runner.JobRun:
    """Queue a ``raise-error`` job for ``cls`` and start its child (this module first)."""
    job = runner.submit(catalog, RaiseErrorRequest(cls.__module__, cls.__qualname__, message))
    tests = str(Path(__file__).resolve().parent)
    code = (f"import sys; sys.path.insert(0, {tests!r}); import error_task; "
            f"from llmops_desktop.jobs.child import main; sys.exit(main([{str(job.id)!r}]))")
    assert job.log_path is not None
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "ab") as log:
        process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                   stderr=log, stdin=subprocess.DEVNULL,
                                   env=runner.child_env(catalog.home), start_new_session=True)
    return runner.JobRun(catalog, job.id, process)
