"""Start, watch and cancel jobs for the window.

A job is a child process (``runner.spawn``). For jobs this window starts, the
child's JSON lines reach the GUI thread through the pump (:mod:`llmops_desktop.qt.pump`,
reading with :func:`llmops_desktop.procs.follow`); every job, including
those started by the CLI or an earlier window, is also seen by polling the
catalog, since the child writes its own state and progress into the job row.
Cancelling can block for the SIGTERM grace period, so it runs in a thread.
"""

from __future__ import annotations

import subprocess
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from llmops_desktop.catalog import Catalog, Job
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Event, Log, Progress, Result
from llmops_desktop.jobs.tasks import JobRequest
from llmops_desktop.paths import Home
from llmops_desktop.procs import follow
from llmops_desktop.qt.pump import create_worker
from llmops_desktop.qt.workers import run_in_thread

POLL_MS = 1000


class JobController(QObject):
    """The window's view of jobs: start them, follow them, cancel them."""

    sig_job_started = Signal(int)
    """A job was submitted and its child started (job id)."""
    sig_job_progress = Signal(int, object, str)
    """A running job reported progress: job id, fraction (or None), message."""
    sig_job_progress_event = Signal(int, object)
    """The same progress in full: job id and the child's Progress event (``done``,
    ``total``, ``unit``, ``message``, ``detail`` such as a download's file in flight)."""
    sig_job_log = Signal(int, str)
    """A job this window started printed a log line."""
    sig_job_finished = Signal(int, str)
    """A job reached a final state (job id, state value); fired once per job."""
    sig_jobs_changed = Signal()
    """The list of jobs or one of their states changed."""
    sig_active_changed = Signal(int)
    """The number of queued or running jobs changed."""

    def __init__(self, home: Home, catalog: Catalog, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.catalog = catalog
        self._jobs: list[Job] = []
        self._snapshot: dict[int, tuple[str, Any, str]] = {}
        self._live: dict[int, tuple[float | None, str]] = {}
        self._owned: dict[int, subprocess.Popen[bytes]] = {}
        self._finished: set[int] = set()
        self._seen_unfinished: set[int] = set()
        self._active = -1
        self._cancelling: set[int] = set()
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.poll)
        self._timer.start()
        self.poll()

    # ---- queries --------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        """The latest jobs, newest first, as of the last poll."""
        return list(self._jobs)

    def live_progress(self, job_id: int) -> tuple[float | None, str] | None:
        """The freshest progress a child reported on stdout (finer than the job row)."""
        return self._live.get(job_id)

    def active_jobs(self) -> list[Job]:
        return [j for j in self._jobs if not j.state.finished]

    def is_cancelling(self, job_id: int) -> bool:
        return job_id in self._cancelling

    # ---- actions --------------------------------------------------------------------------

    def start(self, request: JobRequest, *,
              secrets: dict[str, str] | None = None) -> Job:
        """Submit a checked request's job and start its child (``secrets`` in its
        environment only); returns the job row."""
        job = runner.submit(self.catalog, request)
        process = runner.spawn(self.catalog, job, secrets=secrets)
        self._owned[job.id] = process
        job_id = job.id
        create_worker(follow, process, yielded=lambda ev: self._on_child_event(job_id, ev),
                      returned=lambda code: self._on_child_exited(job_id, code),
                      errored=lambda _exc: self._on_child_exited(job_id, process.poll()),
                      receiver=self, name=f"llmops-job-{job_id}")
        self.sig_job_started.emit(job.id)
        self.poll()
        return job

    def cancel(self, job_id: int) -> None:
        """Stop a job (in a thread: SIGTERM, then SIGKILL after the grace period)."""
        if job_id in self._cancelling:
            return
        self._cancelling.add(job_id)
        home = self.home

        def work() -> Job:
            with Catalog.open(home) as cat:
                return runner.cancel(cat, job_id)

        def done(_: object) -> None:
            self._cancelling.discard(job_id)
            self.poll()

        run_in_thread(work, done, done, receiver=self)
        self.sig_jobs_changed.emit()

    def poll(self) -> None:
        """Re-read the job rows; announce what changed."""
        try:
            jobs = self.catalog.jobs(limit=500)
        except Exception:  # noqa: BLE001 - a locked or closing catalog: try next tick
            return
        snapshot = {j.id: (j.state.value, j.progress, j.message) for j in jobs}
        changed = snapshot != self._snapshot
        self._jobs, self._snapshot = jobs, snapshot
        for job in jobs:
            if not job.state.finished:
                self._seen_unfinished.add(job.id)
            elif (job.id in self._seen_unfinished and job.id not in self._owned
                  and job.id not in self._finished):
                # Someone else's job (CLI, an earlier window) ended; ours are reaped.
                self._finished.add(job.id)
                self.sig_job_finished.emit(job.id, job.state.value)
        active = sum(1 for j in jobs if not j.state.finished)
        if changed:
            self.sig_jobs_changed.emit()
        if active != self._active:
            self._active = active
            self.sig_active_changed.emit(active)

    def stop(self) -> None:
        """Stop polling (the window is closing). Children keep running."""
        self._timer.stop()

    # ---- slots ----------------------------------------------------------------------------

    def _on_child_event(self, job_id: int, event: Event) -> None:
        if isinstance(event, Progress):
            fraction, message = event.fraction, event.message
            self._live[job_id] = (fraction, message)
            self.sig_job_progress.emit(job_id, fraction, message)
            self.sig_job_progress_event.emit(job_id, event)
        elif isinstance(event, Log):
            self.sig_job_log.emit(job_id, event.message)
        elif isinstance(event, Error):
            self.sig_job_log.emit(job_id, f"{event.error_type}: {event.message}")
        elif isinstance(event, Result):
            self.sig_job_log.emit(job_id, f"result: {event.data}")

    def _on_child_exited(self, job_id: int, code: int) -> None:
        self._owned.pop(job_id, None)
        try:
            job = runner.reap(self.catalog, job_id, code)
        except Exception:  # noqa: BLE001 - the catalog is closing
            return
        self.poll()
        if job.id not in self._finished:
            self._finished.add(job.id)
            self.sig_job_finished.emit(job.id, job.state.value)
