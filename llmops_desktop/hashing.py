"""Streaming sha256, the digest that identifies an artifact's content, and hashing a
stream on a second thread while the caller reads and writes it.

sha256 (OpenSSL, ~1 GB/s a core) is about as slow as copying through the page cache, so
doing both on one thread halves throughput. ``hashlib`` releases the GIL for large
updates, and so do file and socket reads and writes: with a ring of a few buffers
(:class:`HashPipe`), one thread copies chunk *n* while another hashes chunk *n - 1*. The
hash sees the chunks in order.

:class:`WriteBehind` starts the disk writing of what was written while the copy goes on
(``sync_file_range``), so the one flush at the end (``fsync``) waits for the last few
megabytes instead of the whole file: the disk works while the CPUs hash.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

CHUNK = 4 * 1024 * 1024
# The most bytes handed to one write(). Reads stay large (few Python steps per GB), but
# each write() is sliced. Measured on the development VM (Linux 6.18, ext4, which fills
# the page cache with folios as large as the write; Firecracker with a memory balloon):
# writing 2 GiB to a new file in 1 MiB write()s took 8.7-10.7 s once the machine had
# idled a few seconds, in 256 KiB 1.97 s, in 128 KiB 0.43 s, in 64 KiB 0.44 s, in 16 KiB
# 0.53 s (curl -o writes 16 KiB at a time). Allocating the large folios is the likely
# cost. Elsewhere 64 KiB writes cost a few thousand syscalls per GB more: noise beside
# the copy itself.
WRITE_SLICE = 64 * 1024


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hash a file in chunks; ``on_bytes`` is told how many bytes each chunk had."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            h.update(view[:n])
            if on_bytes:
                on_bytes(n)
    return h.hexdigest()


def write_all(fh: Any, data: bytes | bytearray | memoryview) -> int:
    """Write all of ``data`` to the unbuffered binary file ``fh``, at most
    :data:`WRITE_SLICE` bytes per ``write()`` (why: at :data:`WRITE_SLICE`); returns
    ``len(data)``."""
    view = memoryview(data).cast("B")
    n = len(view)
    done = 0
    while done < n:
        done += fh.write(view[done:done + WRITE_SLICE])
    return n


def content_digest(files: Iterable[tuple[str, str]]) -> str:
    """One sha256 over sorted ``(relpath, sha256)`` pairs: same files, same digest."""
    h = hashlib.sha256()
    for relpath, sha in sorted(files):
        h.update(f"{relpath}\0{sha}\n".encode())
    return h.hexdigest()


# ---- hashing beside the copy ------------------------------------------------------------------

PIPE_CHUNK = 8 * 1024 * 1024
BUFFERS = 3
WRITE_BEHIND_STEP = 32 * 1024 * 1024
SYNC_FILE_RANGE_WRITE = 2  # <fcntl.h>: start writing the range, do not wait


class HashPipe:
    """A ring of buffers and a one-thread hasher. Use :meth:`chunks` per file."""

    def __init__(self, chunk: int = PIPE_CHUNK, buffers: int = BUFFERS) -> None:
        self.buffers = [bytearray(chunk) for _ in range(buffers)]
        self.views = [memoryview(b) for b in self.buffers]
        self.pending: list[Future[Any] | None] = [None] * buffers
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmops-hash")
        self.index = 0

    def close(self) -> None:
        self.drain()
        self.executor.shutdown(wait=True)

    def __enter__(self) -> HashPipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def drain(self) -> None:
        """Wait until every chunk handed over so far is hashed."""
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
        self.drain()


def new_sha256() -> Any:
    return hashlib.sha256()


def _sync_file_range() -> object | None:
    """libc's ``sync_file_range`` (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:  # the process's own symbols hold libc's (find_library would run ldconfig -p)
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _sync_file_range()


class WriteBehind:
    """Tell it what was written to ``fd`` (in order, from ``start``); every ``step`` bytes it
    asks the kernel to start writing them to disk, without waiting. Where that is not
    available it does nothing, and the final ``fsync`` does all the work as before."""

    def __init__(self, fd: int, start: int = 0, step: int = WRITE_BEHIND_STEP) -> None:
        self.fd, self.step = fd, step
        self.written = self.started = start

    def wrote(self, n: int) -> None:
        self.written += n
        if _SYNC_FILE_RANGE is not None and self.written - self.started >= self.step:
            _SYNC_FILE_RANGE(self.fd, self.started, self.written - self.started,
                             SYNC_FILE_RANGE_WRITE)  # a failure only means no head start
            self.started = self.written

    def flush(self) -> None:
        """Everything written is on disk (``fsync``)."""
        os.fsync(self.fd)
