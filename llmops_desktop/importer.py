"""Import a model from disk: an HF folder, a LoRA adapter folder, a .gguf, an HF cache entry.

:func:`inspect_source` checks everything that can be checked cheaply (layout,
headers, readability) before a byte is copied. :func:`import_model` is a
generator of progress events: it hashes every file while streaming it into a
private staging folder, then registers a READY artifact and renames the folder
into the store in one transaction. Any failure, a cancel or a kill leaves the
catalog and the store as they were.

A source folder is read only within its bounds: a link that leads out of the
folder (or, for an HF cache snapshot, out of the folder and that repo's
``blobs/``) is refused, naming the link, before any file is read; the files are
re-checked as they are opened. Registering never deletes a store folder: a
name that is taken gets a fresh folder beside it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import ArtifactFile, Catalog
from llmops_desktop.errors import (
    CorruptFileError,
    DiskFullError,
    EmptySourceError,
    InvalidInputError,
    NoWeightsError,
    PickleRefusedError,
    UnreadableFileError,
    UnsafePathError,
)
from llmops_desktop.formats.gguf_meta import gguf_summary, read_gguf_info
from llmops_desktop.formats.hf_meta import config_summary, read_config, read_model_card
from llmops_desktop.formats.safetensors_meta import read_safetensors_info
from llmops_desktop.hashing import content_digest, write_all
from llmops_desktop.hfcache import find_cached_repo, repo_id_from_dirname, resolve_cached
from llmops_desktop.import_request import ImportRequest
from llmops_desktop.jobs.events import Event, Log, Progress, Result
from llmops_desktop.jobs.tasks import JobContext, register_task
from llmops_desktop.safepath import check_within_roots

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
MODES = ("copy", "hardlink", "reference")
DISK_MARGIN = 64 * 1024 * 1024
CHUNK = 8 * 1024 * 1024
_PICKLE_WHY = ("Pickle checkpoints can run arbitrary code when they are loaded, so they are "
               "refused by default. Prefer a safetensors or GGUF copy of the model; if you "
               "trust the source, import again with --allow-pickle (or tick 'Allow pickle "
               "checkpoints' in Settings).")


@dataclass(frozen=True)
class ImportSource:
    """What is about to be imported, already checked."""

    kind: str  # "hf", "lora" or "gguf"
    path: Path  # the folder, or the .gguf file
    files: tuple[tuple[str, Path], ...]  # (relpath in the artifact, absolute source path)
    name: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    description: str = ""
    license: str = ""
    skipped: tuple[str, ...] = ()
    bounds: tuple[Path, ...] = ()  # real folders every file must lie in (links followed)

    @property
    def total_bytes(self) -> int:
        return sum(p.stat().st_size for _, p in self.files)

    @property
    def root(self) -> Path:
        return self.path if self.path.is_dir() else self.path.parent


def _is_hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _check_readable(path: Path, rel: str) -> None:
    try:
        with open(path, "rb") as fh:
            fh.read(1)
    except PermissionError:
        raise UnreadableFileError(
            f"{rel} cannot be read (permission denied). Fix its permissions or copy the "
            "model somewhere you can read, then import again.") from None
    except OSError as exc:
        reason = "it is a broken link" if path.is_symlink() and not path.exists() else exc.strerror
        raise UnreadableFileError(f"{rel} cannot be read ({reason}). The source is incomplete; "
                                  "download or copy it again.") from None


def default_name(path: Path) -> str:
    name = path.stem if path.is_file() else path.name
    name = re.sub(r"[@\s]+", "-", name).strip("-") or "model"
    return f"model-{name}" if name.isdigit() else name


def inspect_source(path: str | os.PathLike[str], *, allow_pickle: bool = False,
                   name: str | None = None, hf_cache_dir: Path | None = None) -> ImportSource:
    """Check a source and read its metadata; raise a clear error for anything wrong."""
    raw = Path(path).expanduser()
    source_note = ""
    if not raw.exists() and not raw.is_symlink():
        cached = find_cached_repo(str(path), hf_cache_dir) if "/" in str(path) else None
        if cached is None:
            raise InvalidInputError(
                f"{raw} does not exist. Give a model folder, a .gguf file, or a repo id from "
                "your Hugging Face cache ('llmops hf-cache' lists them).")
        raw = cached
    raw = named = raw.absolute()
    cache_hit = resolve_cached(raw) if raw.is_dir() else None
    if cache_hit:
        snapshot, repo_id, commit = cache_hit
        raw, source_note = snapshot, f"hf-cache:{repo_id}@{commit}"
        name = name or repo_id
    if raw.is_file():
        return _inspect_file(raw, name=name, allow_pickle=allow_pickle)
    if not raw.is_dir():
        raise InvalidInputError(f"{raw} is neither a file nor a folder.")
    src = _inspect_folder(raw, name=name, allow_pickle=allow_pickle,
                          bounds=source_bounds(named, raw))
    if source_note:
        src = ImportSource(**{**src.__dict__, "source": source_note})
    return src


def source_bounds(named: Path, folder: Path) -> tuple[Path, ...]:
    """Where the files of ``folder`` may lie, as real paths: inside the folder itself and,
    for an HF cache snapshot, inside that repo's ``blobs/`` (which must not be a link).

    ``named`` is what the user pointed at (the folder, or the cache repo it was found
    in); a snapshot reached from a repo folder must lie inside that repo folder.
    """
    real = check_within_roots(folder, [named], name=str(folder), what="snapshot folder")
    bounds = [real]
    snapshots = real.parent
    if snapshots.name == "snapshots" and repo_id_from_dirname(snapshots.parent.name):
        blobs = snapshots.parent / "blobs"
        if blobs.is_dir() and os.path.realpath(blobs) == str(blobs):
            bounds.append(blobs)
    return tuple(bounds)


def _inspect_file(path: Path, *, name: str | None, allow_pickle: bool) -> ImportSource:
    suffix = path.suffix.lower()
    if suffix == ".gguf":
        _check_readable(path, path.name)
        info = read_gguf_info(path)
        summary = gguf_summary(info)
        if path.stat().st_size > info.data_end:
            summary["trailing_bytes"] = path.stat().st_size - info.data_end
        return ImportSource(
            kind="gguf", path=path, files=((path.name, path),),
            name=name or str(summary.get("name") or "").strip() or default_name(path),
            metadata=summary, source=f"file:{path}",
            description=str(summary.get("description", "")),
            license=str(summary.get("license", "")),
            bounds=(Path(os.path.realpath(path)),))  # the file the user named, links and all
    if suffix in PICKLE_SUFFIXES:
        raise PickleRefusedError(f"{path.name} is a pickle checkpoint. " + _PICKLE_WHY)
    if suffix == ".safetensors":
        raise InvalidInputError(
            f"{path.name} is a lone safetensors file with no config.json beside it. Import "
            "the whole model folder instead.")
    raise InvalidInputError(
        f"{path.name} is not a model file. Import a .gguf file, or a Hugging Face model folder "
        "(config.json with .safetensors weights).")


def _inspect_folder(folder: Path, *, name: str | None, allow_pickle: bool,
                    bounds: tuple[Path, ...] = ()) -> ImportSource:
    bounds = bounds or (Path(os.path.realpath(folder)),)
    entries: list[tuple[str, Path]] = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if _is_hidden(rel):
            continue
        # before anything is read: no file, and no folder link, may lead out of bounds
        check_within_roots(p, bounds, name=rel.as_posix(), what="file" if not p.is_dir()
                           else "folder")
        if p.is_dir():
            continue
        if p.is_symlink() and not p.exists():
            _check_readable(p, str(rel))
        if p.is_file():
            entries.append((rel.as_posix(), p))
    if not entries:
        raise EmptySourceError(f"{folder} is empty: there is nothing to import.")
    rels = {r for r, _ in entries}
    safetensors = [r for r in rels if r.endswith(".safetensors")]
    pickles = [r for r in rels if r.lower().endswith(PICKLE_SUFFIXES)]
    ggufs = [r for r in rels if r.lower().endswith(".gguf")]
    skipped: list[str] = []
    is_lora = "adapter_config.json" in rels
    if not is_lora and "config.json" not in rels:
        if ggufs:
            raise InvalidInputError(
                f"{folder} holds GGUF files but no config.json. Import a .gguf file itself: "
                + ", ".join(sorted(ggufs)[:3]))
        if safetensors or pickles:
            raise InvalidInputError(
                f"{folder} has weights but no config.json, so it is not a Hugging Face model "
                "folder. Copy the model's config.json beside the weights.")
        raise NoWeightsError(
            f"{folder} holds no model: no config.json and no weights (.safetensors or .gguf).")
    if not safetensors:
        if pickles and not allow_pickle:
            raise PickleRefusedError(
                f"{folder} has only pickle weights ({', '.join(sorted(pickles)[:3])}). "
                + _PICKLE_WHY)
        if not pickles:
            raise NoWeightsError(
                f"{folder} has a config but no weights: no .safetensors file. Download or copy "
                "the weight files too, then import again.")
    elif pickles and not allow_pickle:
        skipped = sorted(pickles)  # safetensors copies exist: leave the pickles behind
        entries = [(r, p) for r, p in entries if r not in set(skipped)]
    for rel, p in entries:
        _check_readable(p, rel)
    config = read_config(folder)
    meta: dict[str, Any] = {"format": "lora" if is_lora else "hf", **config_summary(config)}
    params = 0
    dtypes: dict[str, int] = {}
    for rel in sorted(safetensors):
        info = read_safetensors_info(folder / rel)
        params += info.parameters
        for d, n in info.dtypes.items():
            dtypes[d] = dtypes.get(d, 0) + n
    _check_shards(folder, rels)
    if params:
        meta["parameters"] = params
    if dtypes and "dtype" not in meta:
        meta["dtype"] = max(dtypes, key=dtypes.get).lower()
    meta["has_chat_template"] = _has_chat_template(folder, rels)
    meta["files"] = len(entries)
    card = read_model_card(folder)
    meta.update({k: v for k, v in card.items() if k == "base_model"})
    return ImportSource(
        kind="lora" if is_lora else "hf", path=folder, files=tuple(entries),
        name=name or default_name(folder), metadata=meta, source=f"folder:{folder}",
        description=card.get("description", ""), license=card.get("license", ""),
        skipped=tuple(skipped), bounds=bounds)


def _check_shards(folder: Path, rels: set[str]) -> None:
    import json

    for index in (r for r in rels if r.endswith(".safetensors.index.json")):
        try:
            weight_map = json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError, OSError):
            raise CorruptFileError(f"{index} is not a valid shard index.") from None
        base = Path(index).parent
        missing = sorted({s for s in weight_map.values()
                          if (base / s).as_posix().lstrip("./") not in rels})
        if missing:
            raise CorruptFileError(
                f"{folder.name} is missing weight shards listed in {index}: "
                + ", ".join(missing[:5]) + ". Copy or download them too.")


def _has_chat_template(folder: Path, rels: set[str]) -> bool:
    if "chat_template.jinja" in rels or "chat_template.json" in rels:
        return True
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():
        try:
            import json

            return bool(json.loads(cfg.read_text(encoding="utf-8")).get("chat_template"))
        except (ValueError, OSError, AttributeError):
            return False
    return False


# ---- the import itself ---------------------------------------------------------------------

def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "model"


def _reserve_store_folder(catalog: Catalog, slug: str, digest: str) -> Path:
    """A new, empty store folder for an artifact: ``<slug>-<digest12>``, or when that name
    is taken (on disk or by any artifact in the catalog) ``<slug>-2-<digest12>``, ``-3-`` …

    The folder is made here (``mkdir`` fails if it exists), so nothing that is already
    there is ever replaced or deleted; names keep ending in the digest, so a folder a
    crash left unregistered is still one the start-up sweep recognises.
    """
    models = catalog.home.models_dir
    owned = set()
    for path in catalog.store_paths():
        try:
            owned.add(path.relative_to(models).parts[0])
        except (ValueError, IndexError):
            continue
    for n in range(1, 10_000):
        name = f"{slug}-{digest[:12]}" if n == 1 else f"{slug}-{n}-{digest[:12]}"
        if name in owned:
            continue
        try:
            (models / name).mkdir()
        except FileExistsError:
            continue
        return models / name
    raise InvalidInputError(f"Could not find a free folder name for {slug} in {models}. "
                            "Remove stray folders there (they belong to no artifact), then "
                            "import again.")


def _release(folder: Path) -> None:
    """Give back a folder :func:`_reserve_store_folder` made, only while it is empty."""
    try:
        folder.rmdir()
    except OSError:
        pass


def _disk_error(exc: OSError, where: Path) -> DiskFullError:
    return DiskFullError(
        f"The disk holding {where} is full ({exc.strerror}). Free some space, or import with "
        "--mode hardlink or --mode reference, which need no extra space. Nothing was kept.")


class _Counter:
    def __init__(self, total: int) -> None:
        self.done, self.total = 0, total


def _open_within(path: Path, bounds: tuple[Path, ...], rel: str) -> int:
    """Open ``path`` (already a real path) for reading without following a link that
    appeared since it was checked, and check again where the open file really is."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(f"{rel} became a link while it was being imported; "
                                  "nothing was kept. Import again once nothing changes the "
                                  "source.", name=rel) from None
        raise
    proc = f"/proc/self/fd/{fd}"
    try:
        if bounds and os.path.exists(proc):
            check_within_roots(os.readlink(proc), bounds, name=rel)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_and_hash(src: Path, dst: Path | None, counter: _Counter, rel: str,
                   mode: str, bounds: tuple[Path, ...] = ()
                   ) -> Iterator[tuple[Event | None, str | None]]:
    """Stream one file: hash it, and for ``copy`` write it to ``dst``. Yields progress;
    the last item carries the sha256. ``dst`` is made with no wider permissions than
    ``src`` has (a private source stays private in the store)."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    before = src.stat()
    out = None
    try:
        if mode == "copy" and dst is not None:
            dst.parent.mkdir(parents=True, exist_ok=True)
            perms = (before.st_mode & 0o666) | 0o600  # the owner must read it back
            out = os.fdopen(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                    | getattr(os, "O_NOFOLLOW", 0), perms), "wb", buffering=0)
        with os.fdopen(_open_within(src, bounds, rel), "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                chunk = view[:n]
                h.update(chunk)
                if out is not None:
                    write_all(out, chunk)
                counter.done += n
                yield Progress(counter.done, counter.total, "bytes", f"hashing {rel}"), None
        if out is not None:
            os.fsync(out.fileno())
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise _disk_error(exc, dst or src) from None
        if dst is not None and out is not None and exc.filename in (None, str(dst)):
            raise
        raise UnreadableFileError(f"{rel} could not be read ({exc.strerror}).") from None
    finally:
        if out is not None:
            out.close()
    after = src.stat()
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise InvalidInputError(f"{rel} changed while it was being imported. Import again once "
                                "nothing is writing to it.")
    if dst is not None and mode != "reference" and dst.stat().st_size != before.st_size:
        raise CorruptFileError(f"{rel} was not copied completely; nothing was kept.")
    yield None, h.hexdigest()


def import_model(
    catalog: Catalog, source: ImportSource, *, mode: str = "copy", staging: Path,
    job_id: int | None = None, tags: Sequence[str] = (), parent_id: int | None = None,
    params: dict[str, Any] | None = None, move: bool = False, action: str = "import",
    known_sha256: dict[str, str] | None = None,
) -> Iterator[Event]:
    """Hash, store and register ``source``; yields progress, ends with a Result.

    ``staging`` must be a private folder inside the store's file system; it is left
    empty or removed. ``move`` renames the source files in (for sources we made
    ourselves, like the demo model) instead of copying them; with ``known_sha256``
    (relpath -> sha256 that this process computed while writing the file, as a
    download does) a moved file is not read a second time.
    """
    if mode not in MODES:
        raise InvalidInputError(f"Import mode must be one of {', '.join(MODES)}, not {mode!r}.")
    home = catalog.home
    total = source.total_bytes
    yield Log(f"importing {source.kind} from {source.path} ({total / 1e6:.1f} MB, "
              f"{len(source.files)} files, mode {mode})")
    for rel in source.skipped:
        yield Log(f"left out pickle file {rel} (the safetensors weights are imported instead)",
                  level="warning")
    if mode == "copy" and not move:
        free = shutil.disk_usage(home.models_dir).free
        if free < total + DISK_MARGIN:
            raise DiskFullError(
                f"Not enough disk space: the import needs {total / 1e9:.2f} GB and "
                f"{free / 1e9:.2f} GB is free where the store is ({home.models_dir}). Free "
                "some space, or import with --mode hardlink or --mode reference.")
    stage_root = staging / "artifact"
    if stage_root.exists():
        shutil.rmtree(stage_root)
    stage_root.mkdir(parents=True)
    if not move:  # a private source folder gives a private store folder
        stage_root.chmod((source.root.stat().st_mode & 0o755) | 0o700)
    counter = _Counter(total)
    files: list[ArtifactFile] = []
    start = time.monotonic()
    try:
        for rel, src in source.files:
            dst = stage_root / rel
            checked = source.bounds if not move else ()
            if checked:  # again, as it is opened: a link may have changed since inspect
                src = check_within_roots(src, checked, name=rel)
            if move:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
                hash_from, how = dst, "reference"
            elif mode == "hardlink":
                dst.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, dst, follow_symlinks=False)
                    if not stat.S_ISREG(os.lstat(dst).st_mode):
                        raise UnsafePathError(f"{rel} became a link while it was being "
                                              "imported; nothing was kept.", name=rel)
                except OSError as exc:
                    if exc.errno == errno.EXDEV:
                        raise InvalidInputError(
                            f"Cannot hard-link {rel}: the source is on another file system "
                            f"than the store ({home.models_dir}). Use --mode copy or "
                            "--mode reference.") from None
                    raise UnreadableFileError(f"Cannot hard-link {rel} ({exc.strerror}).") from None
                hash_from, how, checked = dst, "reference", ()
            else:
                hash_from, how = src, mode
            if move and known_sha256 and rel in known_sha256:
                counter.done += dst.stat().st_size
                files.append(ArtifactFile(rel, dst.stat().st_size, known_sha256[rel]))
                continue
            sha = ""
            for event, digest in _copy_and_hash(hash_from, dst if how == "copy" else None,
                                                counter, rel, how, checked):
                if event is not None:
                    yield event
                if digest is not None:
                    sha = digest
            files.append(ArtifactFile(rel, hash_from.stat().st_size, sha))
        elapsed = max(time.monotonic() - start, 1e-9)
        yield Progress(total, total, "bytes", "verified")
        yield Log(f"hashed {total / 1e6:.1f} MB in {elapsed:.2f} s ({total / 1e6 / elapsed:.0f} MB/s)")

        digest = content_digest((f.relpath, f.sha256) for f in files)
        existing = catalog.find_by_digest(digest)
        if existing is not None:
            from llmops_desktop.errors import DuplicateArtifactError

            raise DuplicateArtifactError(
                f"This model is already in the catalog as {existing.ref} (artifact "
                f"#{existing.id}); nothing was imported.", existing_id=existing.id)
        storage = "copy" if move else mode
        if storage == "reference":
            final_root = source.root
        else:
            final_root = _reserve_store_folder(catalog, _slug(source.name), digest)
        artifact_path = final_root / source.files[0][0] if source.kind == "gguf" else final_root
        metadata = {**source.metadata, "import_seconds": round(elapsed, 3)}
        renamed = False
        try:
            with catalog.transaction():
                artifact = catalog.add_artifact(
                    model_name=source.name, kind=source.kind, storage=storage,
                    path=artifact_path, files=files, parent_id=parent_id, job_id=job_id,
                    params={"mode": mode, **(params or {})}, metadata=metadata,
                    source=source.source, description=source.description,
                    license=source.license, tags=tags, action=action)
                if storage != "reference":
                    os.replace(stage_root, final_root)  # onto the empty folder we reserved
                    renamed = True
        except BaseException:
            if renamed and final_root.exists():
                os.replace(final_root, stage_root)
            elif storage != "reference":
                _release(final_root)
            raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_error(exc, home.models_dir) from None
        raise
    finally:
        shutil.rmtree(stage_root, ignore_errors=True)
    yield Log(f"registered {artifact.ref} (artifact #{artifact.id}) at {artifact.path}")
    yield Result({"artifact_id": artifact.id, "ref": artifact.ref, "path": str(artifact.path),
                  "size_bytes": artifact.size_bytes, "seconds": round(elapsed, 3)})


@register_task("import", ImportRequest)
def import_task(ctx: JobContext, request: ImportRequest) -> Iterator[Event]:
    yield Progress(0, None, "bytes", f"checking {request.path}")
    source = request.inspect(ctx.settings)  # the request's check, whose result is used
    yield from import_model(ctx.catalog, source, mode=request.mode or ctx.settings.import_mode,
                            staging=ctx.staging_dir, job_id=ctx.job_id, tags=request.tags)
