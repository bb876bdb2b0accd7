"""Entry point of a job's child process: ``python -m llmops_desktop.jobs.child JOB_ID``.

Runs the job's task, prints each event as one JSON line on stdout, keeps a
human-readable log in the job's log file, and moves the job row through
running to succeeded, failed or cancelled. SIGTERM cancels: the task's
``finally`` blocks run and the job's staging folder is removed. If the
parent goes away (the window closed), the job carries on; only stdout is lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import IO, Any

from llmops_desktop.catalog import Catalog, JobState, utcnow
from llmops_desktop.errors import CancelledError, JobError, LLMOpsError
from llmops_desktop.jobs.events import Error, Event, Log, Metric, Progress, Result, event_to_line
from llmops_desktop.jobs.tasks import JobContext, get_task
from llmops_desktop.paths import Home
from llmops_desktop.settings import load_settings

PROGRESS_INTERVAL = 0.1  # seconds between progress lines on stdout
DB_PROGRESS_INTERVAL = 0.5  # seconds between progress writes to the catalog


class _Cancelled(BaseException):
    """Raised by the SIGTERM handler; BaseException so no task swallows it."""


def _on_sigterm(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
    raise _Cancelled()


class EventSink:
    """Writes events to stdout (while someone reads it) and to the log file."""

    def __init__(self, log_file: IO[str]) -> None:
        self.log_file = log_file
        self.stdout_alive = True
        self._last_progress = 0.0
        self._last_phase: tuple[str, float | None] | None = None

    def emit(self, event: Event, *, force: bool = False) -> None:
        now = time.monotonic()
        if isinstance(event, Progress):
            # Throttled, except the first event of a new phase (another unit or total) and
            # the last one of a phase: a fast step still shows that it ran and finished.
            phase = (event.unit, event.total)
            edge = phase != self._last_phase or (event.total is not None
                                                 and event.done >= event.total)
            if not (force or edge) and now - self._last_progress < PROGRESS_INTERVAL:
                return
            self._last_progress, self._last_phase = now, phase
        if self.stdout_alive:
            try:
                sys.stdout.write(event_to_line(event) + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.stdout_alive = False  # the reader is gone; keep working
        text = _log_text(event)
        if text:
            stamp = datetime.now(timezone.utc).strftime("%H:%M:%S")
            self.log_file.write(f"{stamp} {text}\n")
            self.log_file.flush()


def _log_text(event: Event) -> str | None:
    if isinstance(event, Log):
        return f"{event.level.upper():7} {event.message}"
    if isinstance(event, Error):
        return f"ERROR   {event.error_type}: {event.message}"
    if isinstance(event, Result):
        return f"RESULT  {event.data}"
    if isinstance(event, Metric):
        return f"METRIC  {event.name}={event.value:g}" + (f" step={event.step:g}" if event.step is not None else "")
    return None


def run(job_id: int) -> int:
    home = Home.resolve()
    catalog = Catalog.open(home)
    job = catalog.job(job_id)
    if job.state is not JobState.QUEUED:
        print(f"job {job_id} is {job.state.value}, not queued", file=sys.stderr)
        return 2
    try:
        import psutil

        started = psutil.Process().create_time()
    except Exception:  # noqa: BLE001
        started = None
    catalog.update_job(job_id, state=JobState.RUNNING, pid=os.getpid(), pid_started=started,
                       started_at=utcnow(), progress=0.0)
    settings = load_settings(home.settings_path)
    ctx = JobContext(catalog=catalog, home=home, job_id=job_id, settings=settings)
    assert job.log_path is not None
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "a", encoding="utf-8") as log_file:
        sink = EventSink(log_file)
        sink.emit(Log(f"job #{job_id} ({job.kind}) started, pid {os.getpid()}"))
        last_db = 0.0
        result: dict[str, Any] | None = None
        try:
            task = get_task(job.kind)
            for event in task(ctx, **job.params):
                sink.emit(event)
                if isinstance(event, Result):
                    result = event.data
                elif isinstance(event, Progress):
                    now = time.monotonic()
                    if now - last_db >= DB_PROGRESS_INTERVAL:
                        last_db = now
                        catalog.update_job(job_id, progress=event.fraction,
                                           message=event.message)
            catalog.update_job(job_id, progress=1.0, message="done")
            catalog.finish_job(job_id, JobState.SUCCEEDED, result=result or {})
            sink.emit(Log("job succeeded"))
            return 0
        except (_Cancelled, CancelledError, KeyboardInterrupt) as exc:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            cancelled = (exc if isinstance(exc, CancelledError) and str(exc)
                         else CancelledError("Cancelled by the user."))
            sink.emit(Error.from_exception(cancelled), force=True)
            catalog.finish_job(job_id, JobState.CANCELLED, error=str(cancelled))
            return CancelledError.exit_code
        except LLMOpsError as exc:
            # Class, message, exit code and fields: the parent raises this same error.
            sink.emit(Error.from_exception(exc), force=True)
            catalog.finish_job(job_id, JobState.FAILED, error=str(exc))
            return exc.exit_code
        except Exception as exc:  # noqa: BLE001 - report anything, with the traceback in the log
            log_file.write(traceback.format_exc())
            failed = JobError(f"{type(exc).__name__}: {exc}")
            sink.emit(Error.from_exception(failed), force=True)
            catalog.finish_job(job_id, JobState.FAILED, error=str(failed))
            return failed.exit_code
        finally:
            shutil.rmtree(home.job_staging_dir(job_id), ignore_errors=True)
            catalog.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m llmops_desktop.jobs.child JOB_ID", file=sys.stderr)
        return 2
    try:
        os.setpgid(0, 0)  # own process group: cancel reaches any grandchildren too
    except OSError:
        pass
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, _on_sigterm)
    return run(int(args[0]))


if __name__ == "__main__":
    sys.exit(main())
