"""Find models in an existing Hugging Face cache without importing huggingface_hub.

The cache layout is ``<cache>/models--<org>--<name>/{refs,snapshots,blobs}``;
a snapshot folder holds symlinks into ``blobs/``. A cache may come from anyone (a
colleague's copy, a shared disk), so a ref's commit names a snapshot only through
:func:`~llmops_desktop.safepath.safe_join`, and a snapshot is refused when one of its
entries leads anywhere but that repo's ``blobs/`` or the snapshot itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from llmops_desktop.errors import UnsafePathError
from llmops_desktop.safepath import check_relative_name, is_within, safe_join


@dataclass(frozen=True)
class CachedModel:
    repo_id: str
    revision: str  # commit sha of the snapshot
    refs: tuple[str, ...]  # branch names pointing at it
    snapshot: Path
    size_bytes: int
    files: int


def default_cache_dir(configured: str = "") -> Path:
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def repo_id_from_dirname(name: str) -> str | None:
    if not name.startswith("models--"):
        return None
    return name[len("models--"):].replace("--", "/")


def _refs(repo_dir: Path) -> dict[str, list[str]]:
    """commit sha -> branch names."""
    out: dict[str, list[str]] = {}
    refs = repo_dir / "refs"
    if refs.is_dir():
        for ref in refs.rglob("*"):
            if ref.is_file():
                try:
                    sha = ref.read_text().strip()
                except OSError:
                    continue
                out.setdefault(sha, []).append(str(ref.relative_to(refs)))
    return out


def _snapshot_size(snapshot: Path) -> tuple[int, int]:
    size = files = 0
    for p in snapshot.rglob("*"):
        try:
            if p.is_file():
                size += p.stat().st_size
                files += 1
        except OSError:
            continue
    return size, files


def scan_hf_cache(cache_dir: Path | None = None) -> list[CachedModel]:
    """Every model snapshot in the cache, newest-ref first per repo."""
    cache = cache_dir or default_cache_dir()
    out: list[CachedModel] = []
    if not cache.is_dir():
        return out
    for repo_dir in sorted(cache.iterdir()):
        repo_id = repo_id_from_dirname(repo_dir.name)
        snapshots = repo_dir / "snapshots"
        if repo_id is None or not snapshots.is_dir():
            continue
        refs = _refs(repo_dir)
        for snap in sorted(snapshots.iterdir(), key=lambda p: (p.name not in refs, p.name)):
            if not snap.is_dir():
                continue
            size, files = _snapshot_size(snap)
            if files:
                out.append(CachedModel(repo_id, snap.name, tuple(sorted(refs.get(snap.name, []))),
                                       snap, size, files))
    return out


def check_snapshot(snapshot: Path) -> None:
    """Refuse a snapshot with an entry that leads out of it, other than into its repo's
    ``blobs/`` (a link to ``~/.ssh/id_rsa`` would otherwise be imported as a model file)."""
    repo_dir = snapshot.parent.parent
    if not is_within(snapshot, repo_dir / "snapshots"):
        raise UnsafePathError(f"The Hugging Face cache snapshot {snapshot} is a link out of "
                              f"{repo_dir / 'snapshots'}; it is not imported.", name=snapshot.name)
    for entry in sorted(snapshot.rglob("*")):
        rel = entry.relative_to(snapshot).as_posix()
        check_relative_name(rel, what=f"file name in the cache snapshot {snapshot}")
        if not (is_within(entry, snapshot) or is_within(entry, repo_dir / "blobs")):
            raise UnsafePathError(
                f"{rel} in the Hugging Face cache snapshot {snapshot} leads to "
                f"{os.path.realpath(entry)}, outside the cache's blobs/ folder; the snapshot is "
                "not imported. Download the model again into a clean cache.", name=rel)


def resolve_cached(path: Path) -> tuple[Path, str, str] | None:
    """(snapshot folder, repo id, commit) for a cache repo or snapshot folder, else None.

    The snapshot is checked (:func:`check_snapshot`); an unsafe one raises
    :class:`UnsafePathError` rather than being imported."""
    found = _find_snapshot(path.absolute())
    if found is not None:
        check_snapshot(found[0])
    return found


def _find_snapshot(path: Path) -> tuple[Path, str, str] | None:
    if path.parent.name == "snapshots" and repo_id_from_dirname(path.parent.parent.name):
        return path, repo_id_from_dirname(path.parent.parent.name) or "", path.name
    repo_id = repo_id_from_dirname(path.name)
    if repo_id and (path / "snapshots").is_dir():
        refs = _refs(path)
        for sha, names in refs.items():
            try:
                snap = safe_join(path / "snapshots", sha, what="commit in the cache's refs")
            except UnsafePathError:
                continue  # a ref naming no snapshot of ours: ignored, like a missing one
            if "main" in names and snap.is_dir():
                return snap, repo_id, sha
        snaps = sorted((p for p in (path / "snapshots").iterdir() if p.is_dir()),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        if snaps:
            return snaps[0], repo_id, snaps[0].name
    return None


def find_cached_repo(repo_id: str, cache_dir: Path | None = None) -> Path | None:
    """The ``models--org--name`` folder of a repo id, if the cache has it."""
    cache = cache_dir or default_cache_dir()
    try:
        candidate = safe_join(cache, "models--" + repo_id.replace("/", "--"), what="repo id")
    except UnsafePathError:
        return None  # no cache folder can have that name
    return candidate if (candidate / "snapshots").is_dir() else None
