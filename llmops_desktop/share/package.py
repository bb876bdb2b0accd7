"""Write a package: plan what goes in, build the manifest, stream the tar.

The tar is written by hand from :meth:`tarfile.TarInfo.tobuf` headers so that each
file is read exactly once, in large chunks, straight from the store into the
package, hashed on the way and checked against the sha256 the catalog recorded.
Nothing is copied to a temporary place first: the package itself is written
under a hidden ``.partial`` name beside its destination and renamed when complete,
so a cancel or a crash never leaves a package that looks finished.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_desktop import __version__
from llmops_desktop.catalog import Artifact, ArtifactFile, Catalog
from llmops_desktop.catalog.catalog import current_user, utcnow
from llmops_desktop.errors import CorruptFileError, DiskFullError, InvalidInputError
from llmops_desktop.jobs.events import Event, Progress
from llmops_desktop.share.hashpipe import HashPipe, WriteBehind, write_all
from llmops_desktop.share.manifest import (
    ARTIFACTS_DIR,
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    SIGNATURE_NAME,
    SUFFIX,
    manifest_bytes,
    member_name,
)

CHUNK = 8 * 1024 * 1024
BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
MODEL_CARD_LIMIT = 256 * 1024
DISK_MARGIN = 32 * 1024 * 1024


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80] or "model"


def artifact_root(artifact: Artifact) -> Path:
    """The folder an artifact's relpaths are relative to (a GGUF's is its parent folder)."""
    return artifact.path.parent if artifact.kind == "gguf" else artifact.path


def type_of(a: Artifact) -> str:
    md = a.metadata
    return str(md.get("quantization") or a.params.get("target") or md.get("dtype") or a.kind)


@dataclass(frozen=True)
class PlannedArtifact:
    artifact: Artifact
    key: str
    files: tuple[ArtifactFile, ...]
    role: str  # "parent", "model" or "variant"

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)


@dataclass
class ExportPlan:
    main: Artifact
    items: list[PlannedArtifact] = field(default_factory=list)  # parents before children

    @property
    def data_bytes(self) -> int:
        return sum(i.size_bytes for i in self.items)

    def keys(self) -> dict[int, str]:
        return {i.artifact.id: i.key for i in self.items}

    def summary(self) -> list[dict[str, Any]]:
        return [{"artifact_id": i.artifact.id, "ref": i.artifact.ref, "kind": i.artifact.kind,
                 "type": type_of(i.artifact), "role": i.role, "files": len(i.files),
                 "size_bytes": i.size_bytes} for i in self.items]


def available_variants(catalog: Catalog, artifact_id: int) -> dict[str, Artifact]:
    """GGUF artifacts derived from this one, by quantization type (the newest of each)."""
    out: dict[str, Artifact] = {}
    for d in catalog.descendants(artifact_id):
        if d.kind == "gguf":
            t = type_of(d).upper()
            if t not in out or d.id > out[t].id:
                out[t] = d
    return out


def plan_export(catalog: Catalog, artifact_id: int, *, with_parents: bool = False,
                variants: Sequence[str] = ()) -> ExportPlan:
    """What a package of ``artifact_id`` holds; raises a clear error for a missing variant
    or a file that is no longer what the catalog recorded."""
    main = catalog.artifact(artifact_id)
    chosen: list[tuple[Artifact, str]] = []
    if with_parents:
        chosen += [(a, "parent") for a in reversed(catalog.ancestors(main.id))]
    chosen.append((main, "model"))
    wanted = [v.strip().upper() for v in variants if v.strip()]
    if wanted:
        have = available_variants(catalog, main.id)
        missing = [v for v in wanted if v not in have]
        if missing:
            known = ", ".join(sorted(have)) or "none"
            raise InvalidInputError(
                f"{main.ref} has no {', '.join(missing)} variant (it has: {known}). Make it "
                f"with 'llmops quantize {main.ref} --to {missing[0]}' first, or leave it out.")
        for v in sorted({have[v].id: v for v in wanted}):  # by id: parents first
            chosen.append((catalog.artifact(v), "variant"))
    plan = ExportPlan(main)
    used: set[str] = set()
    for a, role in chosen:
        if a.id in {i.artifact.id for i in plan.items}:
            continue
        key = base = f"{slug(a.model_name)}-v{a.version}"
        n = 2
        while key in used:
            key, n = f"{base}-{n}", n + 1
        used.add(key)
        files = tuple(catalog.files(a.id))
        _check_files(a, files)
        plan.items.append(PlannedArtifact(a, key, files, role))
    return plan


def _check_files(a: Artifact, files: Sequence[ArtifactFile]) -> None:
    root = artifact_root(a)
    for f in files:
        try:
            size = (root / f.relpath).stat().st_size
        except OSError:
            raise CorruptFileError(f"{a.ref} is damaged: {f.relpath} is missing from {root}. "
                                   "Import the model again before exporting it.") from None
        if size != f.size:
            raise CorruptFileError(f"{a.ref} is damaged: {f.relpath} has {size:,} bytes, the "
                                   f"catalog recorded {f.size:,}. Import it again.")


# ---- the manifest ------------------------------------------------------------------------------

def _job_entry(catalog: Catalog, job_id: int | None) -> dict[str, Any] | None:
    if job_id is None:
        return None
    from llmops_desktop.jobs.tasks import task_params_for_display

    try:
        job = catalog.job(job_id)
    except Exception:  # noqa: BLE001 - the job row was pruned: lineage without it
        return None
    return {"id": job.id, "kind": job.kind, "params": task_params_for_display(job.params),
            "state": job.state.value, "created_at": job.created_at,
            "finished_at": job.finished_at}


def _datasets(params: Sequence[dict[str, Any]], evaluations: Sequence[Any]) -> list[dict[str, Any]]:
    """Dataset hashes recorded anywhere in the artifact's making and evaluation."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(name: str, sha: str, used_for: str) -> None:
        if sha and (name, sha) not in seen:
            seen.add((name, sha))
            out.append({"name": name, "sha256": sha, "used_for": used_for})

    for p in params:
        for k, v in p.items():
            if "dataset" in k and k.endswith("sha256") and isinstance(v, str):
                stem = k[: -len("sha256")].rstrip("_")
                name = p.get(stem) or p.get(f"{stem}_path") or p.get(f"{stem}_name") or ""
                add(str(name), v, "training")
    for e in evaluations:
        add(e.dataset, e.dataset_sha256, f"evaluation:{e.metric}")
    return out


def model_card(catalog: Catalog, artifact: Artifact) -> str:
    """The README.md of the artifact or its nearest Hugging Face ancestor, else its description."""
    for a in [artifact, *catalog.ancestors(artifact.id)]:
        if a.kind in ("hf", "lora") and a.path.is_dir():
            readme = a.path / "README.md"
            try:
                with open(readme, encoding="utf-8", errors="replace") as fh:
                    return fh.read(MODEL_CARD_LIMIT)
            except OSError:
                continue
    return artifact.description


def _artifact_entry(catalog: Catalog, item: PlannedArtifact, keys: dict[int, str]) -> dict[str, Any]:
    from llmops_desktop.share.evalruns import export_eval_runs
    from llmops_desktop.share.governance import get_status

    a = item.artifact
    ancestors = catalog.ancestors(a.id)
    parent_key = None
    for anc in ancestors:  # the nearest ancestor that travels in the package
        if anc.id in keys:
            parent_key = keys[anc.id]
            break
    job = _job_entry(catalog, a.job_id)
    evaluations = catalog.evaluations(a.id)
    return {
        "id": item.key, "role": item.role, "name": a.model_name, "version": a.version,
        "kind": a.kind, "type": type_of(a), "content_digest": a.content_digest,
        "size_bytes": item.size_bytes, "created_at": a.created_at, "source": a.source,
        "storage_path_name": a.path.name, "description": a.description, "license": a.license,
        "tags": list(a.tags), "status": get_status(catalog, a.id),
        "parent": parent_key,
        "parent_digest": ancestors[0].content_digest if ancestors else None,
        "ancestors": [{"name": x.model_name, "version": x.version, "kind": x.kind,
                       "type": type_of(x), "content_digest": x.content_digest,
                       "source": x.source, "in_package": x.id in keys,
                       "job": _job_entry(catalog, x.job_id), "params": x.params}
                      for x in ancestors],
        "params": a.params, "metadata": a.metadata, "job": job,
        "datasets": _datasets([a.params, *([job["params"]] if job else [])], evaluations),
        "evaluations": [e.to_json() for e in evaluations],
        "eval_runs": export_eval_runs(catalog, a.id),
        "files": [{"path": f.relpath, "size": f.size, "sha256": f.sha256} for f in item.files],
    }


def build_manifest(catalog: Catalog, plan: ExportPlan) -> dict[str, Any]:
    from llmops_desktop.share.governance import get_status

    keys = plan.keys()
    main = plan.main
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created_at": utcnow(),
        "app": {"name": "llmops-desktop", "version": __version__},
        "exported_by": {"user": current_user(), "host": socket.gethostname()},
        "model": {"id": keys[main.id], "name": main.model_name, "version": main.version,
                  "ref": main.ref, "kind": main.kind, "type": type_of(main)},
        "license": main.license,
        "status": get_status(catalog, main.id),
        "model_card": model_card(catalog, main),
        "total_bytes": plan.data_bytes,
        "artifacts": [_artifact_entry(catalog, i, keys) for i in plan.items],
    }


# ---- the tar stream ----------------------------------------------------------------------------

def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.type = size, mtime, 0o644, tarfile.REGTYPE
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size: int) -> int:
    return (BLOCK - size % BLOCK) % BLOCK


def package_size(plan: ExportPlan, manifest: bytes, signature: bytes | None,
                 mtime: int = 0) -> int:
    """The exact size of the package these members make, before writing a byte."""
    total = 0
    members: list[tuple[str, int]] = [(MANIFEST_NAME, len(manifest))]
    if signature is not None:
        members.append((SIGNATURE_NAME, len(signature)))
    members += [(member_name(i.key, f.relpath), f.size) for i in plan.items for f in i.files]
    for name, size in members:
        total += len(_header(name, size, mtime)) + size + _padding(size)
    total += 2 * BLOCK
    return total + (RECORD - total % RECORD) % RECORD


def estimate_size(catalog: Catalog, plan: ExportPlan, *, sign: bool = False) -> int:
    """The package's size in bytes (exact up to the signature's few hundred bytes)."""
    manifest = manifest_bytes(build_manifest(catalog, plan))
    return package_size(plan, manifest, b"x" * 400 if sign else None)


def default_package_name(artifact: Artifact) -> str:
    return f"{slug(artifact.model_name)}-v{artifact.version}-{artifact.content_digest[:12]}{SUFFIX}"


def check_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed + DISK_MARGIN:
        raise DiskFullError(f"Not enough disk space for {what}: {needed / 1e9:.2f} GB is needed "
                            f"and {free / 1e9:.2f} GB is free at {folder}. Free some space or "
                            "choose another destination.")


class _Writer:
    """Writes bytes to the package file, counting them for progress."""

    def __init__(self, fh: Any, total: int) -> None:
        self.fh, self.done, self.total = fh, 0, total
        self.behind = WriteBehind(fh.fileno())  # the disk writes while we copy and hash

    def write(self, data: bytes | memoryview) -> None:
        n = write_all(self.fh, data)
        self.done += n
        self.behind.wrote(n)


def write_package(catalog: Catalog, plan: ExportPlan, dest: Path, *,
                  manifest: bytes, signature: bytes | None) -> Iterator[Event]:
    """Stream the package to ``dest``; yields byte progress. ``dest`` appears only when
    complete and verified; a failure or cancel removes the partial file."""
    dest = Path(dest)
    if len(manifest) > MAX_MANIFEST_BYTES:
        raise InvalidInputError(
            f"The package's manifest would be {len(manifest):,} bytes, more than the "
            f"{MAX_MANIFEST_BYTES:,} an import reads (too many files or too much lineage). "
            "Export fewer artifacts (without --with-parents or variants). Nothing was written.")
    mtime = int(time.time())
    total = package_size(plan, manifest, signature, mtime)
    dest.parent.mkdir(parents=True, exist_ok=True)
    check_space(dest.parent, total, f"the package {dest.name}")
    partial = dest.with_name(f".{dest.name}.partial-{os.getpid()}")
    ok = False
    try:
        with open(partial, "wb", buffering=0) as raw, HashPipe(CHUNK) as pipe:
            out = _Writer(raw, total)
            yield Progress(0, total, "bytes", "writing the manifest")
            for name, data in [(MANIFEST_NAME, manifest)] + (
                    [(SIGNATURE_NAME, signature)] if signature is not None else []):
                out.write(_header(name, len(data), mtime))
                out.write(data)
                out.write(bytes(_padding(len(data))))
            for item in plan.items:
                root = artifact_root(item.artifact)
                for f in item.files:
                    out.write(_header(member_name(item.key, f.relpath), f.size, mtime))
                    yield from _stream_file(root / f.relpath, f, item.artifact, out, pipe)
                    out.write(bytes(_padding(f.size)))
            out.write(bytes(2 * BLOCK))
            out.write(bytes((RECORD - out.done % RECORD) % RECORD))
            os.fsync(raw.fileno())
        if out.done != total:
            raise CorruptFileError(f"The package came out at {out.done:,} bytes instead of "
                                   f"{total:,}; nothing was kept.")
        os.replace(partial, dest)
        ok = True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise DiskFullError(f"The disk holding {dest.parent} filled up while writing the "
                                f"package ({exc.strerror}). Nothing was kept.") from None
        raise
    finally:
        if not ok:
            partial.unlink(missing_ok=True)
    yield Progress(total, total, "bytes", "package written")


def _stream_file(path: Path, f: ArtifactFile, artifact: Artifact, out: _Writer,
                 pipe: HashPipe) -> Iterator[Event]:
    h = hashlib.sha256()
    copied = 0
    rel = f"{artifact.ref}/{f.relpath}"
    with open(path, "rb", buffering=0) as fh:
        for chunk in pipe.chunks(fh.readinto, f.size, h):
            out.write(chunk)
            copied += len(chunk)
            yield Progress(out.done, out.total, "bytes", f"packing {f.relpath}",
                           detail={"file": rel})
        if copied < f.size:
            raise CorruptFileError(f"{rel} is shorter than the catalog recorded; the store "
                                   "copy is damaged. Import the model again. Nothing was kept.")
        if fh.read(1):
            raise CorruptFileError(f"{rel} is longer than the catalog recorded; the store copy "
                                   "was changed. Nothing was kept.")
    if h.hexdigest() != f.sha256:
        raise CorruptFileError(
            f"{rel} no longer matches the sha256 the catalog recorded (the stored file changed "
            "or the disk is failing). The package was not written; import the model again.")


def package_path_for(dest: str | os.PathLike[str], artifact: Artifact) -> Path:
    """``dest`` as a package file: a folder gets the default file name inside."""
    path = Path(dest).expanduser()
    if path.is_dir() or str(dest).endswith(os.sep):
        return path / default_package_name(artifact)
    return path


__all__ = ["ARTIFACTS_DIR", "ExportPlan", "PlannedArtifact", "available_variants",
           "build_manifest", "check_space", "default_package_name", "estimate_size",
           "model_card", "package_path_for", "package_size", "plan_export", "slug",
           "write_package"]
