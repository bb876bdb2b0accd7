"""Start, watch, cancel and recover job child processes.

The CLI and the window share every step here: :func:`submit` makes the row,
:func:`spawn` starts the child, :func:`reap` settles a child that died without
saying how it ended, :func:`cancel` stops one, :func:`recover` runs at start-up.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from llmops_desktop.catalog import Catalog, Job, JobState
from llmops_desktop.errors import JobNotFoundError
from llmops_desktop.jobs.events import Event
from llmops_desktop.paths import Home
from llmops_desktop.procs import read_events, terminate
from llmops_desktop.settings import Settings, load_settings

if TYPE_CHECKING:
    from llmops_desktop.jobs.tasks import JobRequest

CANCEL_GRACE_S = 10.0


def submit(catalog: Catalog, request: JobRequest | str,
           params: dict[str, Any] | None = None) -> Job:
    """Queue a job for ``request`` (its kind, its ``to_params()``); the caller checked it.

    A kind and a parameter dict (scripts, tests) are made into that kind's request
    first, so a job row always holds a request's parameters.
    """
    from llmops_desktop.jobs.tasks import JobRequest, request_class

    if not isinstance(request, JobRequest):
        request = request_class(request).from_params(params or {})
    return catalog.create_job(request.kind, request.to_params())


def child_command(job_id: int) -> list[str]:
    return [sys.executable, "-m", "llmops_desktop.jobs.child", str(job_id)]


def child_env(home: Home, settings: Settings | None = None,
              secrets: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: our home, unbuffered output, offline switches, proxy, and
    ``secrets`` (a key the job needs, such as an eval judge's: never on its command line or
    in its job row)."""
    settings = settings or load_settings(home.settings_path)
    offline = settings.offline
    env = dict(os.environ)
    if settings.proxy:
        for var in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            env[var] = settings.proxy
    env["LLMOPS_HOME"] = str(home.root)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    env["HF_HUB_DISABLE_UPDATE_CHECK"] = "1"
    env["DO_NOT_TRACK"] = "1"
    env["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # the job reports its own progress
    env["TQDM_DISABLE"] = "1"
    # The Offline setting decides, whatever the shell had: on, the hub client refuses
    # every request; off, downloads work even where HF_HUB_OFFLINE=1 was exported.
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if offline:
            env[var] = "1"
        else:
            env.pop(var, None)
    env.update(secrets or {})
    return env


def spawn(catalog: Catalog, job: Job, *,
          secrets: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start the job's child (``secrets`` added to its environment only); its stderr
    (warnings, a crash before it could report) goes to the job's log file."""
    assert job.log_path is not None
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(job.log_path, "ab") as log:
        return subprocess.Popen(
            child_command(job.id), stdout=subprocess.PIPE, stderr=log,
            stdin=subprocess.DEVNULL, env=child_env(catalog.home, secrets=secrets),
            start_new_session=True)


@dataclass
class JobRun:
    """A job started by this process: iterate it for its events."""

    catalog: Catalog
    job_id: int
    process: subprocess.Popen[bytes]

    def events(self) -> Iterator[Event]:
        assert self.process.stdout is not None
        yield from read_events(self.process.stdout)
        self.wait()

    def wait(self) -> Job:
        code = self.process.wait()
        return reap(self.catalog, self.job_id, code)

    def cancel(self) -> None:
        cancel(self.catalog, self.job_id)


def start(catalog: Catalog, request: JobRequest | str,
          params: dict[str, Any] | None = None, *,
          secrets: Mapping[str, str] | None = None) -> JobRun:
    job = submit(catalog, request, params)
    return JobRun(catalog, job.id, spawn(catalog, job, secrets=secrets))


def describe_exit(code: int | None) -> str:
    if code is None:
        return "its process is gone"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"its process was killed ({name})"
    return f"its process exited with code {code} without reporting a result"


def reap(catalog: Catalog, job_id: int, exit_code: int | None) -> Job:
    """Called when a child has exited: settle a job the child could not finish itself."""
    job = catalog.job(job_id)
    if not job.state.finished:
        catalog.finish_job(job_id, JobState.INTERRUPTED,
                           error=f"The job stopped unexpectedly: {describe_exit(exit_code)}. "
                                 "Nothing half-done was kept; start it again.")
        shutil.rmtree(catalog.home.job_staging_dir(job_id), ignore_errors=True)
        job = catalog.job(job_id)
    return job


def process_alive(job: Job) -> bool:
    """Whether the job's own child still runs (a recycled pid does not count)."""
    if not job.pid:
        return False
    try:
        import psutil

        proc = psutil.Process(job.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if job.pid_started is not None and abs(proc.create_time() - job.pid_started) > 1.0:
            return False
        return True
    except Exception:  # noqa: BLE001 - NoSuchProcess, AccessDenied, no psutil
        return False


def cancel(catalog: Catalog, job_id: int, *, grace_s: float = CANCEL_GRACE_S) -> Job:
    """Ask the job's process group to stop (SIGTERM), then SIGKILL after ``grace_s``."""
    job = catalog.job(job_id)
    if job.state.finished:
        return job
    if job.state is JobState.QUEUED and not job.pid:
        catalog.finish_job(job_id, JobState.CANCELLED, error="Cancelled before it started.")
        return catalog.job(job_id)
    if job.pid and process_alive(job):
        def still_running() -> bool:  # the child may settle its row before it exits
            current = catalog.job(job_id)
            return process_alive(current) and not current.state.finished

        terminate(job.pid, grace=grace_s, group=True, alive=still_running)
    job = catalog.job(job_id)
    if not job.state.finished:
        catalog.finish_job(job_id, JobState.CANCELLED, error="Cancelled by the user.")
        shutil.rmtree(catalog.home.job_staging_dir(job_id), ignore_errors=True)
        job = catalog.job(job_id)
    return job


STALE_QUEUED_S = 120.0


def recover(catalog: Catalog) -> list[Job]:
    """At start-up: mark jobs whose process is gone as interrupted; clear stray staging.

    Returns the jobs it marked. Staging folders of jobs that are not running are
    removed, so a killed import never leaves partial files in the store.
    """
    marked: list[Job] = []
    now = time.time()
    for job in catalog.jobs(states=[JobState.QUEUED, JobState.RUNNING], limit=10_000):
        if job.state is JobState.RUNNING and process_alive(job):
            continue
        if job.state is JobState.QUEUED and not job.pid:
            created = _parse_ts(job.created_at)
            if created is not None and now - created < STALE_QUEUED_S:
                continue  # another process is about to start it
        catalog.finish_job(job.id, JobState.INTERRUPTED,
                           error="The app or the job's process stopped before the job finished.")
        marked.append(catalog.job(job.id))
    live = {j.id for j in catalog.jobs(states=[JobState.QUEUED, JobState.RUNNING], limit=10_000)}
    if not live:
        _remove_unregistered_store_folders(catalog)
    staging = catalog.home.staging_dir
    if staging.is_dir():
        for entry in staging.iterdir():
            name = entry.name
            if name.startswith("job-") and name[4:].isdigit() and int(name[4:]) in live:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    return marked


_STORE_NAME = re.compile(r".+-[0-9a-f]{12}$")


def _remove_unregistered_store_folders(catalog: Catalog) -> None:
    """A job killed between renaming its folder into the store and committing leaves a
    folder no artifact names; remove such folders (only ones named as the store names
    them, and only while no job runs)."""
    models = catalog.home.models_dir
    used = set()
    for path in catalog.store_paths():
        try:
            used.add(path.relative_to(models).parts[0])
        except (ValueError, IndexError):
            continue
    for entry in models.iterdir():
        if entry.is_dir() and _STORE_NAME.match(entry.name) and entry.name not in used:
            shutil.rmtree(entry, ignore_errors=True)


def _parse_ts(text: str) -> float | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def job_or_none(catalog: Catalog, job_id: int) -> Job | None:
    try:
        return catalog.job(job_id)
    except JobNotFoundError:
        return None
