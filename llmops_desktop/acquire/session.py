"""The downloads a front end shows, and the seven states each one goes through.

A download is a "download" job (a child process); this module keeps what the user sees
of each: its state, bytes done, the file in flight and speed. States::

    starting ──► downloading ──► done
       │  │           │  ╲
       │  │           │   ╲──► failed ──► (Resume) starting / (Discard) cancelling
       │  │           ▼
       │  └──────► pausing ──► paused ──► (Resume) starting / (Discard) cancelling
       └─────────► cancelling ──► (partial files deleted) removed

Pause cancels the job and keeps the partial files; Resume starts the same job again,
which continues with HTTP Range requests; Cancel also deletes the partial files.
Downloads left paused or interrupted (by this front end, an earlier one or the CLI) come
in through :meth:`DownloadSession.partials_listed`; jobs started elsewhere through
:meth:`DownloadSession.sync_jobs`. The session does no I/O of its own: it is given how to
start and cancel a job, delete partial files and read a job's record, and it tells its
listeners what changed (:attr:`DownloadSession.changed`, ``removed``, ``listed``,
``relist``). The Download page shows one; nothing here knows about Qt.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.acquire.download import PartialDownload, download_key
from llmops_desktop.errors import ConflictError

STATES = ("starting", "downloading", "pausing", "paused", "cancelling", "done", "failed")
ACTIVE = frozenset({"starting", "downloading", "pausing", "cancelling"})  # a job is at work
RUNNING = frozenset({"starting", "downloading"})  # bytes may still arrive
RATE_WINDOW_S = 5.0
RATE_MIN_SPAN_S = 1.0


class RateMeter:
    """Bytes per second over the last ``RATE_WINDOW_S`` (smooths bursty progress events)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._samples: deque[tuple[float, float]] = deque()

    def sample(self, done: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if self._samples and done < self._samples[-1][1]:
            self._samples.clear()  # a restart from fewer bytes: measure afresh
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= RATE_WINDOW_S:
            self._samples.popleft()

    @property
    def rate(self) -> float | None:
        """None until the window spans ``RATE_MIN_SPAN_S``."""
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 - t0 >= RATE_MIN_SPAN_S else None

    def time_left(self, remaining: float) -> float | None:
        rate = self.rate
        return remaining / rate if rate and rate > 1 else None


@dataclass
class DownloadEntry:
    """One download; ``key`` is its folder under ``<home>/downloads``."""

    key: str
    params: dict[str, Any]
    commit: str = ""
    state: str = "paused"  # one of STATES
    job_id: int | None = None
    external: bool = False  # a job this front end did not start (the CLI, an earlier window)
    done: float = 0
    total: float | None = None
    message: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    ref: str = ""
    artifact_id: int | None = None
    meter: RateMeter = field(default_factory=RateMeter)

    @property
    def title(self) -> str:
        return str(self.params.get("repo_id", ""))


def params_of(partial: PartialDownload) -> dict[str, Any]:
    """The job parameters that continue a partial download."""
    # Pinned to the commit it started from: a branch that moved since cannot mix files.
    return {"repo_id": partial.repo_id, "revision": partial.commit,
            "include": list(partial.include), "exclude": list(partial.exclude),
            "files": list(partial.files), "name": partial.name, "endpoint": partial.endpoint}


class Listeners:
    """Functions called in order with the same arguments (``connect`` like a signal)."""

    def __init__(self) -> None:
        self._fns: list[Callable[..., Any]] = []

    def connect(self, fn: Callable[..., Any]) -> None:
        self._fns.append(fn)

    def disconnect(self, fn: Callable[..., Any]) -> None:
        self._fns.remove(fn)

    def emit(self, *args: Any) -> None:
        for fn in list(self._fns):
            fn(*args)


class DownloadSession:
    """The downloads one front end shows, keyed by their folder; see the module doc.

    ``start_job(params) -> job id`` and ``cancel_job(job_id)`` run the download job;
    ``discard_files(key)`` starts deleting a download's partial files and reports back
    with :meth:`discarded` or :meth:`discard_failed`; ``job_record(job_id)`` reads a
    finished job (its ``result`` and ``error``).
    """

    def __init__(self, *, start_job: Callable[[dict[str, Any]], int],
                 cancel_job: Callable[[int], None], discard_files: Callable[[str], None],
                 job_record: Callable[[int], Any]) -> None:
        self._start_job, self._cancel_job = start_job, cancel_job
        self._discard_files, self._job_record = discard_files, job_record
        self.entries: dict[str, DownloadEntry] = {}
        self.changed = Listeners()
        """(entry, announce): an entry's state or figures changed (announce: tell others)."""
        self.removed = Listeners()
        """(key): an entry is gone (discarded, cleared, or finished elsewhere)."""
        self.listed = Listeners()
        """(): the downloads on disk were read again (:meth:`partials_listed`)."""
        self.relist = Listeners()
        """(): the partial downloads on disk changed; read them again."""
        self._starting = False
        self._discarded: set[str] = set()  # keys deleted here; a late listing must not revive

    # ---- what the user does ------------------------------------------------------------------

    def request(self, endpoint: str, repo_id: str, commit: str, files: Iterable[str],
                name: str | None = None) -> DownloadEntry:
        """Download ``files`` of ``repo_id`` at ``commit``: a new entry, or a paused one
        continued with this choice of files. ConflictError while it is at work already."""
        key = download_key(endpoint, repo_id, commit)
        entry = self.entries.get(key)
        if entry is not None and entry.state in ACTIVE:
            raise ConflictError(f"{repo_id} is already downloading; pause or cancel it first.")
        params = {"repo_id": repo_id, "revision": commit, "files": sorted(files),
                  "include": [], "exclude": [], "name": name or None, "endpoint": endpoint}
        if entry is None or entry.external:
            entry = DownloadEntry(key=key, params=params, commit=commit)
        entry.params = params
        self.start(entry)
        return entry

    def start(self, entry: DownloadEntry) -> None:
        """Start (or resume) ``entry``'s job; a refusal (say, the catalog is locked) shows
        on the entry as failed."""
        entry.state, entry.error, entry.message, entry.detail = "starting", "", "", {}
        entry.external = False
        entry.meter.reset()
        self._discarded.discard(entry.key)
        self.entries[entry.key] = entry
        self._starting = True
        try:
            entry.job_id = self._start_job(entry.params)
        except Exception as exc:  # noqa: BLE001 - said on the entry, never a crash
            entry.state, entry.error, entry.job_id = "failed", str(exc), None
        finally:
            self._starting = False
        self._changed(entry)

    def act(self, key: str, action: str) -> DownloadEntry | None:
        """A row's button: ``pause``, ``resume``, ``cancel`` (or discard) or ``clear``."""
        entry = self.entries.get(key)
        if entry is None:
            return None
        if action == "pause" and entry.job_id is not None and entry.state in ACTIVE:
            entry.state = "pausing"
            self._cancel_job(entry.job_id)
        elif action == "resume" and entry.state in ("paused", "failed"):
            self.start(entry)
        elif action == "cancel":
            if entry.state in RUNNING and entry.job_id is not None:
                entry.state = "cancelling"
                self._cancel_job(entry.job_id)
            elif entry.state in ("paused", "failed"):
                self._discard(entry)
        elif action == "clear":
            self.remove(key)
        self._changed(entry)
        return entry

    def remove(self, key: str) -> None:
        if self.entries.pop(key, None) is not None:
            self.removed.emit(key)

    # ---- what the job says -------------------------------------------------------------------

    def entry_for_job(self, job_id: int) -> DownloadEntry | None:
        return next((e for e in self.entries.values() if e.job_id == job_id), None)

    def job_progress(self, job_id: int, event: Any) -> None:
        """A progress event of a job (``done``, ``total``, ``message``, ``detail``)."""
        entry = self.entry_for_job(job_id)
        if entry is None or entry.external:
            return
        if getattr(event, "total", None):
            entry.done, entry.total = event.done, event.total
        entry.message = getattr(event, "message", "") or ""
        entry.detail = dict(getattr(event, "detail", None) or {})
        if entry.state == "starting":
            entry.state = "downloading"
            self._changed(entry)

    def job_finished(self, job_id: int, state: str) -> None:
        """A job ended (``succeeded``, ``failed``, ``cancelled``, ``interrupted``)."""
        entry = self.entry_for_job(job_id)
        if entry is None:
            return
        if entry.external:
            self.remove(entry.key)
            self.relist.emit()
            return
        if state == "succeeded":
            result = self._job_record(job_id).result or {}
            entry.state, entry.ref = "done", str(result.get("ref", ""))
            entry.artifact_id = result.get("artifact_id")
            entry.done = entry.total or entry.done
        elif entry.state == "cancelling":
            self._discard(entry)
        elif entry.state == "pausing" or state == "cancelled":
            entry.state = "paused"
            self.relist.emit()
        else:
            entry.state = "failed"
            entry.error = self._job_record(job_id).error or f"The download {state}."
        self._changed(entry)

    def sync_jobs(self, active_jobs: Iterable[Any]) -> None:
        """Show download jobs this front end did not start (the CLI, an earlier window)."""
        if self._starting:
            return
        known = {e.job_id for e in self.entries.values()}
        for job in active_jobs:
            if job.kind != "download":
                continue
            key = f"job:{job.id}"
            if job.id not in known:
                self.entries[key] = DownloadEntry(key=key, params=dict(job.params),
                                                  state="downloading", job_id=job.id,
                                                  external=True)
            entry = self.entries.get(key)
            if entry is not None and entry.state == "downloading":
                entry.done, entry.total, entry.message = job.progress or 0, 1.0, job.message
                self._changed(entry)

    # ---- what is on disk ---------------------------------------------------------------------

    def partials_listed(self, partials: Iterable[PartialDownload],
                        default_endpoint: str) -> None:
        """The downloads that stopped before the end, as found on disk."""
        on_disk = set()
        for p in partials:
            on_disk.add(p.key)
            if p.key in self._discarded or self._external_covers(p, default_endpoint):
                continue
            entry = self.entries.get(p.key)
            if entry is None:
                entry = DownloadEntry(key=p.key, params=params_of(p), commit=p.commit)
                self.entries[p.key] = entry
            if entry.state in ("paused", "failed"):
                entry.done, entry.total = p.bytes_on_disk, p.total_bytes
            self._changed(entry, announce=False)
        for key, entry in list(self.entries.items()):
            if entry.state == "paused" and entry.job_id is None and key not in on_disk:
                self.remove(key)  # discarded elsewhere (the CLI, another window)
        self._discarded &= on_disk  # gone from disk now: a new download may use the key again
        self.listed.emit()

    def discarded(self, key: str) -> None:
        """The partial files of ``key`` are deleted."""
        self.remove(key)

    def discard_failed(self, key: str, exc: BaseException) -> None:
        if (entry := self.entries.get(key)) is not None:
            entry.state, entry.error = "failed", f"Could not delete the partial files: {exc}"
            self._changed(entry)

    # ---- figures -----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Some download may still receive bytes."""
        return any(e.state in RUNNING for e in self.entries.values())

    def sample(self, now: float | None = None) -> list[DownloadEntry]:
        """Measure the speed of the downloads at work; returns those (to redraw)."""
        now = time.monotonic() if now is None else now
        running = []
        for entry in self.entries.values():
            if entry.state == "downloading" and not entry.external:
                entry.meter.sample(entry.done, now)
            if entry.state in RUNNING:
                running.append(entry)
        return running

    # ---- internals ---------------------------------------------------------------------------

    def _external_covers(self, partial: PartialDownload, default_endpoint: str) -> bool:
        return any(e.external and e.state in ACTIVE and e.title == partial.repo_id
                   and str(e.params.get("endpoint") or default_endpoint).rstrip("/")
                   == partial.endpoint for e in self.entries.values())

    def _discard(self, entry: DownloadEntry) -> None:
        entry.state = "cancelling"
        self._discarded.add(entry.key)
        self._discard_files(entry.key)

    def _changed(self, entry: DownloadEntry, *, announce: bool = True) -> None:
        if entry.key in self.entries:
            self.changed.emit(entry, announce)
