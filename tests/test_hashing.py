"""The copy loop's building blocks: the hash thread sees every chunk in order, and
``write_all`` writes every byte in slices the page cache fills quickly (hashing.WRITE_SLICE)."""

from __future__ import annotations

import hashlib
import io
import os

from llmops_desktop.hashing import WRITE_SLICE, HashPipe, write_all


class RecordingFile(io.FileIO):
    """A real file that remembers how many bytes each write() was given, and takes at most
    ``limit`` of them (a short write, as a pipe or a signal can cause)."""

    def __init__(self, path, limit: int | None = None) -> None:
        super().__init__(path, "wb")
        self.sizes: list[int] = []
        self.limit = limit

    def write(self, b) -> int:  # type: ignore[override]
        view = memoryview(b)
        self.sizes.append(len(view))
        return super().write(view[:self.limit] if self.limit else view)


def test_write_all_writes_every_byte_in_slices(tmp_path) -> None:
    data = os.urandom(3 * WRITE_SLICE + 12345)
    with RecordingFile(tmp_path / "a") as fh:
        assert write_all(fh, memoryview(bytearray(data))) == len(data)
    assert (tmp_path / "a").read_bytes() == data
    assert max(fh.sizes) == WRITE_SLICE and len(fh.sizes) == 4
    with RecordingFile(tmp_path / "b", limit=1000) as fh:  # short writes: the rest follows
        write_all(fh, data)
    assert (tmp_path / "b").read_bytes() == data


def test_the_hash_thread_sees_the_chunks_in_order(tmp_path) -> None:
    data = os.urandom(5 * 65536 + 77)
    src = tmp_path / "src"
    src.write_bytes(data)
    h = hashlib.sha256()
    with open(src, "rb", buffering=0) as fh, HashPipe(65536, 3) as pipe, \
            RecordingFile(tmp_path / "copy") as out:
        copied = sum(write_all(out, chunk) for chunk in pipe.chunks(fh.readinto, len(data) + 1, h))
    assert copied == len(data) and (tmp_path / "copy").read_bytes() == data
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
