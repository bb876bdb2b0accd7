"""Streaming sha256, and the digest that identifies an artifact's content."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path

CHUNK = 4 * 1024 * 1024


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


def content_digest(files: Iterable[tuple[str, str]]) -> str:
    """One sha256 over sorted ``(relpath, sha256)`` pairs: same files, same digest."""
    h = hashlib.sha256()
    for relpath, sha in sorted(files):
        h.update(f"{relpath}\0{sha}\n".encode())
    return h.hexdigest()
