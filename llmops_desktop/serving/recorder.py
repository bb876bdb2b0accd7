"""Writes the request log to the catalog in batches, on a thread of its own.

:meth:`RequestRecorder.record` only appends to an in-memory queue, so the event loop never
waits for SQLite. The thread writes what has accumulated every ``interval`` seconds or
as soon as ``batch_size`` rows wait, with its own catalog connection, one transaction per
batch. :meth:`close` writes everything still queued before it returns, so a clean stop
loses nothing; a failed write is retried at the next flush (and logged).
"""

from __future__ import annotations

import logging
import queue
import threading
import time

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.serving.store import RequestRecord, insert_requests

log = logging.getLogger("llmops_desktop.serving")
_MAX_PENDING = 100_000  # rows kept for retry while the catalog cannot be written


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False


class RequestRecorder:
    """Batches :class:`RequestRecord` rows into the catalog's ``request_log``."""

    def __init__(self, home: Home, *, interval: float = 1.0, batch_size: int = 50) -> None:
        self.home = home
        self.interval = interval
        self.batch_size = batch_size
        self.written = 0
        self._queue: queue.SimpleQueue[RequestRecord | _Flush | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="request-recorder", daemon=True)
        self._started = False
        self._closed = False

    def start(self) -> RequestRecorder:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def record(self, row: RequestRecord) -> None:
        """Queue a row (never blocks, never touches the database)."""
        if not self._closed:
            self._queue.put(row)

    def flush(self, timeout: float = 10.0) -> bool:
        """Write what is queued now; True once it is in the catalog."""
        if not self._started or self._closed:
            return False
        marker = _Flush()
        self._queue.put(marker)
        return marker.done.wait(timeout) and marker.ok

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        if self._started:
            self._queue.put(None)
            self._thread.join(timeout)

    def __enter__(self) -> RequestRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        catalog = Catalog.open(self.home)
        pending: list[RequestRecord] = []
        deadline = time.monotonic() + self.interval
        try:
            while True:
                timeout = max(0.0, deadline - time.monotonic())
                try:
                    item = self._queue.get(timeout=timeout)
                except queue.Empty:
                    item = _TICK
                if isinstance(item, RequestRecord):
                    pending.append(item)
                    if len(pending) < self.batch_size:
                        continue
                pending = self._write(catalog, pending)
                deadline = time.monotonic() + self.interval
                if isinstance(item, _Flush):
                    item.ok = not pending
                    item.done.set()
                elif item is None:
                    return
        finally:
            if pending:
                log.error("%d request log row(s) could not be written to the catalog",
                          len(pending))
            catalog.close()

    def _write(self, catalog: Catalog, rows: list[RequestRecord]) -> list[RequestRecord]:
        """Write ``rows``; what could not be written is returned to try again."""
        if not rows:
            return rows
        try:
            self.written += insert_requests(catalog.conn, rows)
            return []
        except Exception as exc:  # noqa: BLE001 - the server keeps serving; retry later
            log.warning("could not write %d request log row(s) to the catalog (%s); will "
                        "retry", len(rows), exc)
            return rows[-_MAX_PENDING:]


_TICK = object()
