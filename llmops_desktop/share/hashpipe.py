"""Hash a stream on a second thread while the caller reads and writes it.

sha256 (OpenSSL, ~1 GB/s a core) is about as slow as copying through the page cache, so
doing both on one thread halves throughput. ``hashlib`` releases the GIL for large
updates, and so do file reads and writes: with a ring of a few buffers, one thread
copies chunk *n* while another hashes chunk *n - 1*. The hash sees the chunks in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

CHUNK = 8 * 1024 * 1024
BUFFERS = 3


class HashPipe:
    """A ring of buffers and a one-thread hasher. Use :meth:`chunks` per file."""

    def __init__(self, chunk: int = CHUNK, buffers: int = BUFFERS) -> None:
        self.buffers = [bytearray(chunk) for _ in range(buffers)]
        self.views = [memoryview(b) for b in self.buffers]
        self.pending: list[Future[Any] | None] = [None] * buffers
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmops-hash")
        self.index = 0

    def close(self) -> None:
        self._drain()
        self.executor.shutdown(wait=True)

    def __enter__(self) -> HashPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self) -> None:
        for i, fut in enumerate(self.pending):
            if fut is not None:
                fut.result()
                self.pending[i] = None

    def chunks(self, read_into: Any, size: int, hasher: Any) -> Iterator[memoryview]:
        """Yield up to ``size`` bytes read by ``read_into(view) -> n`` chunk by chunk; each
        chunk is handed to ``hasher.update`` on the hash thread once the caller is done with
        it. Stops early when ``read_into`` returns 0 (the caller checks the byte count)."""
        remaining = size
        while remaining > 0:
            i = self.index
            self.index = (i + 1) % len(self.buffers)
            fut = self.pending[i]
            if fut is not None:  # that buffer is still being hashed
                fut.result()
                self.pending[i] = None
            view = self.views[i]
            n = read_into(view[:min(len(view), remaining)])
            if not n:
                break
            chunk = view[:n]
            yield chunk
            self.pending[i] = self.executor.submit(hasher.update, chunk)
            remaining -= n
        self._drain()


def new_sha256() -> Any:
    return hashlib.sha256()
