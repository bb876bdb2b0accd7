"""The one checked way to join a name from outside onto a local folder.

Names that come from outside the app — a hub listing's ``rfilename``, a package
member, a mirror URL's path, a dataset's file name, an entry in an HF cache —
are hostile until proven otherwise. Every place that turns such a name into a
local path goes through :func:`safe_join`, which refuses

- empty names, ``.`` or ``..`` segments, absolute paths (``/x``, ``C:\\x``),
- backslashes (a Windows separator that POSIX would keep inside one name),
- NUL and other control characters,
- names or segments longer than the file system allows,
- and any path that, once existing symlinks are followed, leaves the folder.

:func:`check_within_roots` is the same guard for files found on disk inside a folder
that is read as a whole (an import source): their links must stay within given roots.

It checks the name before anything is written, so a refused listing leaves the
disk exactly as it was (pip's and huggingface_hub's own path checks do the same).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from llmops_desktop.errors import UnsafePathError

MAX_NAME_BYTES = 4096
MAX_SEGMENT_BYTES = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relative_name(name: object, *, what: str = "file name") -> PurePosixPath:
    """Validate ``name`` as a relative POSIX path with no way out; return it.

    Raises :class:`UnsafePathError` naming the reason; never touches the disk.
    """
    if not isinstance(name, str):
        raise UnsafePathError(f"The {what} {name!r} is not text; refused.", name=repr(name))
    shown = name if len(name) <= 200 else name[:200] + "…"
    if not name:
        raise UnsafePathError(f"An empty {what} was given; refused.", name=name)
    if _CONTROL.search(name):
        raise UnsafePathError(
            f"The {what} {shown!r} contains a NUL or control character; refused.", name=shown)
    if "\\" in name:
        raise UnsafePathError(
            f"The {what} {shown!r} contains a backslash; refused (only '/' separates folders).",
            name=shown)
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafePathError(
            f"The {what} {shown!r} is an absolute path; only names inside the folder are allowed.",
            name=shown)
    encoded = name.encode("utf-8", "surrogateescape")
    if len(encoded) > MAX_NAME_BYTES:
        raise UnsafePathError(f"The {what} {shown!r} is longer than {MAX_NAME_BYTES} bytes; refused.",
                              name=shown)
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(
                f"The {what} {shown!r} has an empty, '.' or '..' segment; it could point outside "
                "its folder, so it is refused.", name=shown)
        if len(part.encode("utf-8", "surrogateescape")) > MAX_SEGMENT_BYTES:
            raise UnsafePathError(f"The {what} {shown!r} has a segment longer than "
                                  f"{MAX_SEGMENT_BYTES} bytes; refused.", name=shown)
    return PurePosixPath(name)


def is_within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """True when ``path``, with every existing symlink followed, lies inside ``root``."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def safe_join(root: str | os.PathLike[str], name: object, *, what: str = "file name") -> Path:
    """``root / name`` after checking that ``name`` cannot leave ``root``.

    The name is validated as text first (:func:`check_relative_name`), then the
    joined path is resolved through any symlinks that already exist on disk and
    must still lie inside ``root``'s real path.
    """
    rel = check_relative_name(name, what=what)
    base = Path(root)
    joined = base.joinpath(*rel.parts)
    if not is_within(joined, base):
        raise UnsafePathError(
            f"The {what} {str(name)!r} resolves through a link to "
            f"{os.path.realpath(joined)}, outside {base}; refused.", name=str(name))
    return joined


def check_within_roots(path: str | os.PathLike[str], roots: Sequence[str | os.PathLike[str]],
                       *, name: str | None = None, what: str = "file") -> Path:
    """The real path of ``path`` (every link in a chain followed), checked to lie inside
    one of ``roots``; raise :class:`UnsafePathError` naming the link otherwise.

    For files found inside a folder that is read as a whole (an import source, an HF
    cache snapshot whose links point into ``blobs/``): a link may lead anywhere inside
    the allowed roots, never out of them. ``name`` is how the user knows the file (its
    path inside the folder). A root itself is taken at its real path.
    """
    real = Path(os.path.realpath(path))
    if any(is_within(real, root) for root in roots):
        return real
    shown = str(name if name is not None else path)
    shown = shown if len(shown) <= 200 else shown[:200] + "…"
    where = " or ".join(os.path.realpath(r) for r in roots) or "(nowhere)"
    via = "is a link to" if os.path.islink(path) else "leads through a link to"
    raise UnsafePathError(
        f"The {what} {shown!r} {via} {real}, outside {where}; links that leave the folder "
        "are refused. Replace the link with the real file (or remove it), then try again.",
        name=shown)
