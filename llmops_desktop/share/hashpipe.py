"""The hashing pipe and write-behind that export and package import use; they live in
:mod:`llmops_desktop.hashing` (downloads use them too)."""

from __future__ import annotations

from llmops_desktop.hashing import PIPE_CHUNK as CHUNK
from llmops_desktop.hashing import HashPipe, WriteBehind, new_sha256, write_all

__all__ = ["CHUNK", "HashPipe", "WriteBehind", "new_sha256", "write_all"]
