"""Import a package: check the manifest and signature, verify every member while streaming
it into the job's staging folder, and only then register every artifact, with its lineage,
in one transaction.

Anything wrong (an unsafe or unexpected member, a size or hash mismatch, a truncated
archive, an unknown format, a bad signature, not enough disk) raises before the
catalog or the store is touched; the staging folder goes with the job.

Reading is bounded whatever the file holds: tar headers go through :class:`_BoundedTarInfo`
(no PAX or GNU long-name header over 64 KiB, no runs of them, no global or sparse headers),
the manifest and signature through :func:`load_bounded_json` (size, entries, depth), and
every byte comes from the one file descriptor the manifest was read from.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import ArtifactFile, Catalog
from llmops_desktop.errors import DiskFullError, InvalidInputError
from llmops_desktop.jobs.events import Event, Log, Progress, Result
from llmops_desktop.jobs.tasks import JobContext, register_task
from llmops_desktop.paths import Home
from llmops_desktop.safepath import safe_join
from llmops_desktop.share.errors import (
    PackageChangedError,
    PackageError,
    UnsafePackageError,
    UnsignedPackageError,
    UntrustedSignerError,
)
from llmops_desktop.share.evalruns import store_eval_runs
from llmops_desktop.share.hashpipe import HashPipe, WriteBehind, write_all
from llmops_desktop.share.keys import SignatureCheck, verify_signature
from llmops_desktop.share.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    MAX_SIGNATURE_BYTES,
    SIGNATURE_NAME,
    Manifest,
    ManifestArtifact,
    check_relpath,
    load_bounded_json,
    parse_manifest,
)
from llmops_desktop.share.package import slug
from llmops_desktop.share.requests import PackageImportRequest

CHUNK = 8 * 1024 * 1024
DISK_MARGIN = 64 * 1024 * 1024


@dataclass(frozen=True)
class PackageInfo:
    """What a package says about itself, read from its first members (cheap)."""

    path: Path
    size: int
    manifest: Manifest
    manifest_sha256: str
    signature: SignatureCheck | None

    @property
    def signed(self) -> bool:
        return self.signature is not None

    def signer_text(self) -> str:
        s = self.signature
        if s is None:
            return "not signed"
        who = f"{s.trusted_as!r}" if s.trusted_as else "an unknown key"
        return f"signed by {who} ({s.fingerprint}{', ' + s.signer if s.signer else ''})"

    def to_json(self) -> dict[str, Any]:
        m = self.manifest
        s = self.signature
        return {
            "path": str(self.path), "size_bytes": self.size, "model": m.raw.get("model"),
            "format_version": m.raw.get("format_version"),
            "exported_by": m.raw.get("exported_by"), "created_at": m.raw.get("created_at"),
            "app": m.raw.get("app"), "status": m.raw.get("status"),
            "license": m.raw.get("license"), "manifest_sha256": self.manifest_sha256,
            "signature": None if s is None else {
                "fingerprint": s.fingerprint, "signer": s.signer, "trusted_as": s.trusted_as},
            "artifacts": [{"id": a.key, "ref": a.ref, "kind": a.kind,
                           "content_digest": a.content_digest, "size_bytes": a.size_bytes,
                           "files": len(a.files)} for a in m.artifacts],
            "total_bytes": m.total_bytes,
        }


MAX_EXTENDED_HEADER_BYTES = 64 * 1024
"""A PAX extended header or GNU long name/link is read whole by tarfile: refuse bigger ones
before it does (ours are a few hundred bytes)."""
MAX_EXTENDED_CHAIN = 4
"""Extended headers in a row before one member (each would recurse once in tarfile)."""


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo whose processing refuses what would make tarfile read without bound: a PAX
    or GNU long-name header over :data:`MAX_EXTENDED_HEADER_BYTES`, a run of extended
    headers, PAX global headers (they accumulate for the whole archive) and GNU sparse
    members (their extension blocks are read in an unbounded loop)."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        extended = self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                                 tarfile.XHDTYPE, tarfile.SOLARIS_XHDTYPE)
        if self.type in (tarfile.XGLTYPE, tarfile.GNUTYPE_SPARSE):
            kind = "a PAX global header" if self.type == tarfile.XGLTYPE else "a GNU sparse file"
            raise UnsafePackageError(
                f"The package holds {kind} at byte {self.offset:,}, which LLMOps packages never "
                "contain. It was refused and nothing was imported.")
        if extended:
            kind = "PAX extended header" if self.type in (tarfile.XHDTYPE,
                                                          tarfile.SOLARIS_XHDTYPE) else \
                "GNU long name"
            if self.size > MAX_EXTENDED_HEADER_BYTES:
                raise UnsafePackageError(
                    f"The package has a {kind} of {self.size:,} bytes at byte {self.offset:,}, "
                    f"more than the {MAX_EXTENDED_HEADER_BYTES:,} allowed. It was refused and "
                    "nothing was imported.")
            chain = getattr(tarfile_, "_llmops_chain", 0) + 1
            if chain > MAX_EXTENDED_CHAIN:
                raise UnsafePackageError(
                    f"The package has {chain} extended headers in a row at byte "
                    f"{self.offset:,}. It was refused and nothing was imported.")
            tarfile_._llmops_chain = chain  # type: ignore[attr-defined]
        else:
            tarfile_._llmops_chain = 0  # type: ignore[attr-defined]
        return super()._proc_member(tarfile_)


def _next(tar: tarfile.TarFile) -> tarfile.TarInfo | None:
    try:
        return tar.next()
    except PackageError:
        raise
    except tarfile.TarError as exc:
        raise PackageError(f"The package is truncated or damaged ({exc}). Copy it again; "
                           "nothing was imported.") from None
    except (RecursionError, MemoryError, UnicodeError, ValueError) as exc:
        raise PackageError(f"The package's tar headers are malformed ({type(exc).__name__}). "
                           "It was refused and nothing was imported.") from None


def _open(path: Path) -> tarfile.TarFile:
    """The package as a tar read through bounded headers; its file stays open with it (read
    the data with :func:`_pread` on ``tar.fileobj``, so every byte comes from this one file
    even if the path is replaced meanwhile)."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise InvalidInputError(f"{path} does not exist.") from None
    except IsADirectoryError:
        raise InvalidInputError(f"{path} is a folder, not a package file.") from None
    except PermissionError:
        raise InvalidInputError(f"{path} cannot be read (permission denied).") from None
    try:
        return tarfile.open(fileobj=fh, mode="r:", tarinfo=_BoundedTarInfo)
    except PackageError:
        fh.close()
        raise
    except tarfile.TarError as exc:
        fh.close()
        raise PackageError(f"{path.name} is not a package (not a tar archive: {exc}), or it is "
                           "truncated. Nothing was imported.") from None
    except (RecursionError, MemoryError, UnicodeError, ValueError) as exc:
        fh.close()
        raise PackageError(f"{path.name} has malformed tar headers ({type(exc).__name__}). "
                           "Nothing was imported.") from None
    except BaseException:
        fh.close()
        raise


def _close(tar: tarfile.TarFile) -> None:
    fh = tar.fileobj
    tar.close()
    if fh is not None:
        fh.close()


class _PRead:
    """``readinto`` at an offset of an open file, without moving its position."""

    def __init__(self, fd: int, offset: int) -> None:
        self.fd, self.pos = fd, offset

    def readinto(self, view: memoryview) -> int:
        n = os.preadv(self.fd, [view], self.pos)
        self.pos += n
        return n


def _check_member_safe(member: tarfile.TarInfo) -> None:
    """Refuse members that could escape the staging folder or are not plain files."""
    check_relpath(member.name.rstrip("/") if member.isdir() else member.name,
                  f"member {member.name!r}")
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        raise UnsafePackageError(
            f"Member {member.name!r} is a {kind} (to {member.linkname!r}). Packages hold "
            "plain files only, since a link can point anywhere on this machine; the package "
            "was refused and nothing was imported.")
    if member.ischr() or member.isblk() or member.isfifo():
        kind = "FIFO" if member.isfifo() else "device file"
        raise UnsafePackageError(
            f"Member {member.name!r} is a {kind}. Packages hold plain files only; the package "
            "was refused and nothing was imported.")
    if member.issparse() or not member.isreg():
        raise UnsafePackageError(
            f"Member {member.name!r} is not a plain file (tar type {member.type!r}). The "
            "package was refused and nothing was imported.")


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int, what: str) -> bytes:
    if member.size > limit:
        raise PackageError(f"The package's {what} is {member.size:,} bytes, more than the "
                           f"{limit:,} allowed. Nothing was imported.")
    data = os.pread(tar.fileobj.fileno(), member.size, member.offset_data)  # type: ignore[union-attr]
    if len(data) != member.size:
        raise PackageError(f"The package is truncated inside its {what}. Copy it again; "
                           "nothing was imported.")
    return data


def read_header(home: Home | None, path: str | os.PathLike[str]) -> tuple[PackageInfo, tarfile.TarFile,
                                                                     tarfile.TarInfo | None]:
    """Open a package and read its manifest and signature; returns the info, the open tar
    and the first data member (or None)."""
    path = Path(path).expanduser().absolute()
    tar = _open(path)
    try:
        first = _next(tar)
        if first is None:
            raise PackageError(f"{path.name} is an empty archive, not a package.")
        if first.name != MANIFEST_NAME:
            _check_member_safe(first)
            raise PackageError(f"{path.name} does not start with {MANIFEST_NAME} (its first "
                               f"member is {first.name!r}), so it is not an LLMOps package. "
                               "Nothing was imported.")
        _check_member_safe(first)
        manifest_data = _read_small(tar, first, MAX_MANIFEST_BYTES, MANIFEST_NAME)
        manifest = parse_manifest(manifest_data)
        second = _next(tar)
        check: SignatureCheck | None = None
        if second is not None and second.name == SIGNATURE_NAME:
            _check_member_safe(second)
            sig = _read_small(tar, second, MAX_SIGNATURE_BYTES, "signature")
            load_bounded_json(sig, "The package's signature member", limit=MAX_SIGNATURE_BYTES,
                              max_depth=4, max_items=64)  # bounds only; keys parses it
            check = verify_signature(home, manifest_data, sig)
            second = _next(tar)
        info = PackageInfo(path, os.fstat(tar.fileobj.fileno()).st_size,  # type: ignore[union-attr]
                           manifest, hashlib.sha256(manifest_data).hexdigest(), check)
        return info, tar, second
    except BaseException:
        _close(tar)
        raise


def inspect_package(home: Home | None, path: str | os.PathLike[str]) -> PackageInfo:
    """The manifest and signature of a package, verified; the data is not read."""
    info, tar, _ = read_header(home, path)
    _close(tar)
    return info


def trust_decision(info: PackageInfo, *, require_signatures: bool, trust_unknown: bool = False,
                   accept_fingerprint: str | None = None, allow_unsigned: bool = False) -> str:
    """What the signature means for this import, or the error that refuses it."""
    sig = info.signature
    if sig is None:
        if require_signatures:
            raise UnsignedPackageError(
                "The package is not signed, and Settings require signatures ('Require "
                "signatures'). Ask the sender to export it with --sign (or tick Sign), or turn "
                "the setting off. Nothing was imported.")
        if not allow_unsigned:
            raise UnsignedPackageError(
                "The package is not signed, so who made it cannot be checked. If you know "
                "where it comes from, import it with --allow-unsigned (the window asks). "
                "Nothing was imported.")
        return "not signed (accepted by the user)"
    if sig.trusted_as:
        return f"signed by {sig.trusted_as} ({sig.fingerprint})"
    if trust_unknown or (accept_fingerprint and accept_fingerprint == sig.fingerprint):
        return f"signed by an unknown key {sig.fingerprint} {sig.signer} (accepted by the user)"
    raise UntrustedSignerError(
        f"The package is signed by a key that is not in your trust list: {sig.fingerprint}"
        f"{' (' + sig.signer + ')' if sig.signer else ''}. Check this fingerprint with the "
        "sender, then trust their public key in Settings (or 'llmops keys trust NAME FILE'), "
        "or import with --trust-unknown. Nothing was imported.", sig.fingerprint)


class _Staged:
    def __init__(self) -> None:
        self.present: dict[str, int] = {}  # key -> local artifact id with the same content
        self.folders: dict[str, Path] = {}  # key -> staging folder


def import_package(catalog: Catalog, path: str | os.PathLike[str], *, staging: Path,
                   job_id: int | None = None, require_signatures: bool = False,
                   trust_unknown: bool = False, accept_fingerprint: str | None = None,
                   allow_unsigned: bool = False,
                   accept_manifest_sha256: str | None = None) -> Iterator[Event]:
    """Verify and import a package; yields progress, ends with a Result.

    ``accept_manifest_sha256`` is the manifest digest the user was shown when accepting an
    unsigned or unknown-signer package: a package whose manifest is now another is refused.
    """
    start = time.monotonic()
    yield Progress(0, None, "bytes", "reading the manifest")
    info, tar, member = read_header(catalog.home, path)
    try:
        if accept_manifest_sha256 and accept_manifest_sha256 != info.manifest_sha256:
            raise PackageChangedError(
                f"{info.path.name} changed after you accepted it: its manifest is now "
                f"sha256 {info.manifest_sha256[:16]}…, you accepted {accept_manifest_sha256[:16]}…"
                ". Nothing was imported; check where the file comes from, then import it again "
                "(you will be asked again).")
        decision = trust_decision(info, require_signatures=require_signatures,
                                  trust_unknown=trust_unknown,
                                  accept_fingerprint=accept_fingerprint,
                                  allow_unsigned=allow_unsigned)
        manifest = info.manifest
        yield Log(f"package {info.path.name}: {manifest.main.ref} and "
                  f"{len(manifest.artifacts) - 1} more artifact(s), "
                  f"{manifest.total_bytes / 1e6:.1f} MB; {decision}")
        staged = _Staged()
        for a in manifest.artifacts:
            existing = catalog.find_by_digest(a.content_digest)
            if existing is not None:
                staged.present[a.key] = existing.id
                yield Log(f"{a.ref} is already here as {existing.ref}; its files are verified "
                          "but not copied again")
        needed = sum(a.size_bytes for a in manifest.artifacts if a.key not in staged.present)
        staging.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(staging).free
        if needed + DISK_MARGIN > free:
            raise DiskFullError(
                f"The package declares {needed / 1e9:.2f} GB of files to store and only "
                f"{free / 1e9:.2f} GB is free at {catalog.home.models_dir}. Free some space "
                "first. Nothing was imported.")
        yield from _verify_members(info, tar, member, staging, staged)
    finally:
        _close(tar)
    yield Progress(manifest.total_bytes, manifest.total_bytes, "bytes", "verified")
    made = yield from _register(catalog, info, staged, job_id, decision)
    elapsed = time.monotonic() - start
    main_id = made.get(manifest.main.key) or staged.present[manifest.main.key]
    main = catalog.artifact(main_id)
    yield Log(f"imported {main.ref} (artifact #{main.id}) from {info.path.name} in "
              f"{elapsed:.2f} s")
    yield Result({"artifact_id": main.id, "ref": main.ref, "path": str(main.path),
                  "created": list(made.values()), "reused": list(staged.present.values()),
                  "artifact_ids": [made.get(a.key) or staged.present[a.key]
                                   for a in manifest.artifacts],
                  "signature": decision, "seconds": round(elapsed, 3),
                  "size_bytes": manifest.total_bytes})


def _verify_members(info: PackageInfo, tar: tarfile.TarFile, member: tarfile.TarInfo | None,
                    staging: Path, staged: _Staged) -> Iterator[Event]:
    expected = info.manifest.members()
    seen: set[str] = set()
    total = info.manifest.total_bytes
    done = 0
    fd = tar.fileobj.fileno()  # type: ignore[union-attr]  # the file the manifest came from
    with HashPipe(CHUNK) as pipe:
        while member is not None:
            _check_member_safe(member)
            name = member.name
            if name in (MANIFEST_NAME, SIGNATURE_NAME) or name not in expected:
                raise UnsafePackageError(
                    f"Member {name!r} is not listed in the package's manifest. A package holds "
                    "exactly the files its manifest names; this one was refused and nothing "
                    "was imported.")
            if name in seen:
                raise UnsafePackageError(f"Member {name!r} appears twice in the package. It was "
                                         "refused and nothing was imported.")
            art, mf = expected[name]
            if member.size != mf.size:
                raise PackageError(
                    f"{art.ref}/{mf.relpath} has {member.size:,} bytes in the archive but the "
                    f"manifest says {mf.size:,}: the package was damaged or tampered with. "
                    "Nothing was imported.")
            out = None
            if art.key not in staged.present:
                folder = staged.folders.setdefault(
                    art.key, safe_join(staging, art.key, what="package artifact id"))
                target = safe_join(folder, mf.relpath, what="package member")
                target.parent.mkdir(parents=True, exist_ok=True)
                out = open(target, "wb", buffering=0)
            behind = WriteBehind(out.fileno()) if out is not None else None
            h = hashlib.sha256()
            try:
                data = _PRead(fd, member.offset_data)
                got = 0
                for chunk in pipe.chunks(data.readinto, member.size, h):
                    n = len(chunk)
                    if behind is not None:
                        behind.wrote(write_all(out, chunk))  # the disk writes as we go
                    got += n
                    done += n
                    yield Progress(done, total, "bytes", f"verifying {mf.relpath}",
                                   detail={"file": f"{art.ref}/{mf.relpath}"})
                if got < member.size:
                    raise PackageError(
                        f"The package is truncated: {art.ref}/{mf.relpath} stops "
                        f"{member.size - got:,} bytes short. Copy the package again; nothing "
                        "was imported.")
                if behind is not None:
                    behind.flush()  # on disk before the catalog calls it READY
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                    raise DiskFullError(f"The disk filled up while importing ({exc.strerror}). "
                                        "Free some space; nothing was imported.") from None
                raise
            finally:
                if out is not None:
                    out.close()
            if h.hexdigest() != mf.sha256:
                raise PackageError(
                    f"{art.ref}/{mf.relpath} does not match the sha256 in the manifest: the "
                    "package was damaged or tampered with. Nothing was imported; ask for a "
                    "fresh copy.")
            seen.add(name)
            member = _next(tar)
    missing = sorted(set(expected) - seen)
    if missing:
        raise PackageError(
            f"The package is truncated or incomplete: {len(missing)} file(s) the manifest "
            f"lists are missing (first: {missing[0]}). Copy it again; nothing was imported.")


def _parent_id(catalog: Catalog, a: ManifestArtifact, ids: dict[str, int]) -> int | None:
    if a.parent is not None and a.parent in ids:
        return ids[a.parent]
    for anc in a.raw.get("ancestors") or []:
        digest = anc.get("content_digest") if isinstance(anc, dict) else None
        if isinstance(digest, str) and digest:
            found = catalog.find_by_digest(digest)
            if found is not None:
                return found.id
    if a.parent_digest:
        found = catalog.find_by_digest(a.parent_digest)
        if found is not None:
            return found.id
    return None


def _claim_folder(parent: Path, name: str) -> Path:
    """A new, empty store folder named ``name`` (or ``name-2``, ``name-3``… when taken): made
    with an exclusive mkdir, so a folder already there, whoever left it, is never touched."""
    parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        folder = safe_join(parent, name if n == 1 else f"{name}-{n}", what="store folder")
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            n += 1


def _register(catalog: Catalog, info: PackageInfo, staged: _Staged, job_id: int | None,
              decision: str) -> Iterator[Event]:
    """Every new artifact in one transaction, with the renames into the store."""
    from llmops_desktop.share.governance import DEFAULT_STATUS, STATUSES

    manifest = info.manifest
    home = catalog.home
    ids: dict[str, int] = dict(staged.present)
    made: dict[str, int] = {}
    renamed: list[tuple[Path, Path]] = []
    claimed: list[Path] = []
    sig = info.signature
    carry_status = sig is not None and sig.trusted_as is not None
    origin = {"file": info.path.name, "manifest_sha256": info.manifest_sha256,
              "exported_by": manifest.raw.get("exported_by"),
              "exported_at": manifest.raw.get("created_at"), "app": manifest.raw.get("app"),
              "signature": decision,
              "signer_fingerprint": sig.fingerprint if sig else None}
    notes: list[str] = []
    try:
        with catalog.transaction() as conn:
            for a in manifest.artifacts:
                existing = catalog.find_by_digest(a.content_digest)
                if existing is not None:  # arrived meanwhile, or was already here
                    ids[a.key] = existing.id
                    staged.present.setdefault(a.key, existing.id)
                    continue
                raw = a.raw
                final_root = _claim_folder(home.models_dir,
                                           f"{slug(a.name)}-{a.content_digest[:12]}")
                claimed.append(final_root)
                path = final_root / a.files[0].relpath if a.kind == "gguf" else final_root
                metadata = dict(raw.get("metadata") or {})
                metadata["package"] = {**origin, "origin_ref": a.ref,
                                       "origin_job": raw.get("job"),
                                       "origin_created_at": raw.get("created_at"),
                                       "datasets": raw.get("datasets") or [],
                                       "ancestors": raw.get("ancestors") or []}
                artifact = catalog.add_artifact(
                    model_name=a.name, kind=a.kind, storage="copy", path=path,
                    files=[ArtifactFile(f.relpath, f.size, f.sha256) for f in a.files],
                    parent_id=_parent_id(catalog, a, ids), job_id=job_id,
                    params=dict(raw.get("params") or {}), metadata=metadata,
                    source=f"package:{info.path.name}:{a.ref}",
                    description=str(raw.get("description") or ""),
                    license=str(raw.get("license") or manifest.raw.get("license") or ""),
                    tags=[str(t) for t in raw.get("tags") or []], action="import-package")
                ids[a.key] = made[a.key] = artifact.id
                status = raw.get("status")
                if status in STATUSES and status != DEFAULT_STATUS:
                    if carry_status:
                        conn.execute("UPDATE artifacts SET status = ? WHERE id = ?",
                                     (status, artifact.id))
                        catalog.audit("status-from-package", artifact_id=artifact.id, details={
                            "from": DEFAULT_STATUS, "to": status,
                            "comment": f"{status} in the package {info.path.name}, "
                                       f"{decision}"})
                    else:
                        notes.append(f"{a.ref} was {status} where it was exported; it comes in "
                                     "as draft because the package is not signed by a trusted "
                                     "key")
                for ev in raw.get("evaluations") or []:
                    if isinstance(ev, dict) and isinstance(ev.get("value"), (int, float)):
                        catalog.add_evaluation(
                            artifact.id, str(ev.get("metric", "")), float(ev["value"]),
                            dataset=str(ev.get("dataset", "")),
                            dataset_sha256=str(ev.get("dataset_sha256", "")),
                            params={**(ev.get("params") or {}), "from_package": info.path.name})
                store_eval_runs(catalog, artifact.id, a.eval_runs, info.path.name)
                os.replace(staged.folders[a.key], final_root)  # onto our own empty folder
                renamed.append((final_root, staged.folders[a.key]))
    except BaseException:
        for final, back in reversed(renamed):
            if final.exists():
                os.replace(final, back)
        for final in claimed:
            with contextlib.suppress(OSError):
                final.rmdir()  # only our empty claim; never anything with files in it
        raise
    for note in notes:
        yield Log(note, level="warning")
    return made


@register_task("import-package", PackageImportRequest)
def import_package_task(ctx: JobContext, request: PackageImportRequest) -> Iterator[Event]:
    r = request  # import_package verifies the signature decision against the manifest
    yield from import_package(
        ctx.catalog, r.path, staging=ctx.staging_dir / "package", job_id=ctx.job_id,
        require_signatures=bool(getattr(ctx.settings, "require_signatures", False)),
        trust_unknown=r.trust_unknown, accept_fingerprint=r.accept_fingerprint,
        allow_unsigned=r.allow_unsigned, accept_manifest_sha256=r.accept_manifest_sha256)
