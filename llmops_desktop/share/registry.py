"""Shared-folder registries: a folder (a mounted share, a USB drive) of packages and an
``index.json`` that lists them.

Publishing writes the package under a hidden temporary name, renames it into place,
then updates the index under an advisory lock (``fcntl.lockf`` on ``.index.lock``,
which NFS and SMB mounts honour where flock may not): the index is read, the entry
added, and the new index written to a temporary file and renamed over the old one.
Two publishers never lose each other's entry, a reader never sees half an index, and a
half-copied package is never listed. An index that is missing or unreadable is rebuilt
from the packages' manifests.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.catalog.catalog import current_user, utcnow
from llmops_desktop.errors import UnsafePathError
from llmops_desktop.safepath import safe_join
from llmops_desktop.settings import Settings
from llmops_desktop.share.errors import RegistryError, RegistryNotFoundError
from llmops_desktop.share.manifest import SUFFIX, load_bounded_json

INDEX_NAME = "index.json"
LOCK_NAME = ".index.lock"
INDEX_FORMAT = "llmops-registry"
INDEX_VERSION = 1
MAX_INDEX_BYTES = 8 * 1024 * 1024
MAX_INDEX_ITEMS = 500_000
MAX_INDEX_DEPTH = 16


# ---- the registries setting --------------------------------------------------------------------

def parse_registries(text: str) -> dict[str, Path]:
    """``NAME=PATH`` entries separated by ';' or new lines."""
    out: dict[str, Path] = {}
    for part in text.replace("\n", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, path = part.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise RegistryError(f"Registry entry {part!r} is not NAME=PATH (for example "
                                "team=/mnt/share/models).")
        out[name.strip()] = Path(path.strip()).expanduser()
    return out


def format_registries(registries: dict[str, Path]) -> str:
    return "; ".join(f"{n}={p}" for n, p in registries.items())


def registries(settings: Settings) -> dict[str, Path]:
    return parse_registries(getattr(settings, "registries", "") or "")


def registry_root(settings: Settings, name: str) -> Path:
    regs = registries(settings)
    if name not in regs:
        known = ", ".join(sorted(regs)) or "none yet"
        raise RegistryNotFoundError(
            f"No registry named {name!r} (known: {known}). Add one with 'llmops registry add "
            f"{name} /path/to/shared/folder' or in Settings → Sharing.")
    root = regs[name]
    if not root.is_dir():
        raise RegistryError(f"Registry {name!r} is {root}, which is not a reachable folder. "
                            "Mount the share or plug in the drive, or fix the path in "
                            "Settings.")
    return root


# ---- the index ---------------------------------------------------------------------------------

@contextlib.contextmanager
def index_lock(root: Path, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold the registry's advisory write lock."""
    import fcntl

    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RegistryError(
                        f"The registry at {root} stayed locked for {timeout_s:.0f} s (another "
                        "publisher?). Try again; if nobody publishes, delete "
                        f"{root / LOCK_NAME}.") from None
                time.sleep(0.05)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)


def _empty_index() -> dict[str, Any]:
    return {"format": INDEX_FORMAT, "format_version": INDEX_VERSION, "updated_at": utcnow(),
            "packages": []}


def _load_index(root: Path) -> dict[str, Any] | None:
    """The index file within fixed bounds (size, entries, depth); None when there is none.
    Raises :class:`RegistryError` saying why an index is unusable."""
    try:
        with open(root / INDEX_NAME, "rb") as fh:
            data = fh.read(MAX_INDEX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise RegistryError(f"{INDEX_NAME} cannot be read ({exc.strerror})") from None
    raw = load_bounded_json(data, INDEX_NAME, limit=MAX_INDEX_BYTES, max_depth=MAX_INDEX_DEPTH,
                            max_items=MAX_INDEX_ITEMS, error=RegistryError,
                            then="It is ignored; the packages themselves are listed.")
    if not (isinstance(raw, dict) and raw.get("format") == INDEX_FORMAT
            and isinstance(raw.get("packages"), list)
            and all(isinstance(p, dict) for p in raw["packages"])):
        raise RegistryError(f"{INDEX_NAME} is not a registry index. It is ignored; the "
                            "packages themselves are listed.")
    return raw


def read_index(root: Path) -> dict[str, Any]:
    """The registry's index; rebuilt from the packages when missing or unusable (then
    ``index_error`` says why it was not used)."""
    try:
        data = _load_index(root)
    except RegistryError as exc:
        return {**rebuild_index(root), "index_error": str(exc)}
    if data is None:
        return rebuild_index(root)
    version = data.get("format_version", 0)
    if isinstance(version, int) and version > INDEX_VERSION:
        raise RegistryError(f"The registry at {root} was written by a newer LLMOps "
                            "Desktop; upgrade this app to use it.")
    return data


def rebuild_index(root: Path) -> dict[str, Any]:
    """An index made from the manifests of the packages in the folder (not written). Each
    package is read within the import's bounds; one that is refused is listed with
    ``refused`` (the reason) and the others are listed as usual."""
    from llmops_desktop.share.unpack import inspect_package

    index = _empty_index()
    for pkg in sorted(root.glob(f"*{SUFFIX}")):
        try:
            info = inspect_package(None, pkg)  # signatures checked, not named
        except Exception as exc:  # noqa: BLE001 - one bad package must not hide the rest
            index["packages"].append(refused_entry(pkg, exc))
            continue
        index["packages"].append(entry_for(info.manifest.raw, pkg.name, info.size,
                                           info.signature.fingerprint if info.signature else None,
                                           published_by=None))
    return index


def refused_entry(pkg: Path, exc: BaseException) -> dict[str, Any]:
    try:
        size = pkg.stat().st_size
    except OSError:
        size = 0
    return {"name": pkg.stem, "file": pkg.name, "size_bytes": size,
            "refused": str(exc) or type(exc).__name__}


def write_index(root: Path, index: dict[str, Any]) -> None:
    index = {**index, "updated_at": utcnow(),
             "packages": [p for p in index["packages"] if "refused" not in p]}
    index.pop("index_error", None)
    fd, tmp = tempfile.mkstemp(prefix=f".{INDEX_NAME}-", dir=root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(index, fh, indent=2)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, root / INDEX_NAME)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def entry_for(manifest: dict[str, Any], file_name: str, size: int, fingerprint: str | None,
              *, published_by: dict[str, Any] | None) -> dict[str, Any]:
    model = manifest.get("model") or {}
    arts = manifest.get("artifacts") or []
    main = next((a for a in arts if a.get("id") == model.get("id")), {})
    return {
        "name": Path(file_name).stem, "file": file_name, "size_bytes": size,
        "model": model.get("name"), "version": model.get("version"), "ref": model.get("ref"),
        "kind": model.get("kind"), "type": model.get("type"),
        "content_digest": main.get("content_digest"), "status": manifest.get("status"),
        "license": manifest.get("license"), "exported_by": manifest.get("exported_by"),
        "created_at": manifest.get("created_at"), "signed_by": fingerprint,
        "published_by": published_by, "published_at": utcnow() if published_by else None,
        "artifacts": [{"ref": f"{a.get('name')}@{a.get('version')}", "kind": a.get("kind"),
                       "type": a.get("type"), "content_digest": a.get("content_digest"),
                       "size_bytes": a.get("size_bytes")} for a in arts],
    }


def add_entry(root: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Add (or replace, by file name) one entry, under the lock."""
    with index_lock(root):
        index = read_index(root)
        index["packages"] = [p for p in index["packages"] if p.get("file") != entry["file"]]
        index["packages"].append(entry)
        write_index(root, index)
    return entry


def publish_target(root: Path, file_name: str) -> Path:
    return root / file_name


def published_by() -> dict[str, Any]:
    import socket

    return {"user": current_user(), "host": socket.gethostname()}


# ---- what a registry offers --------------------------------------------------------------------

def _package_path(root: Path, file: object) -> Path | None:
    """The package file an index entry names, when it is a plain name inside the folder."""
    if not isinstance(file, str) or "/" in file:
        return None
    try:
        return safe_join(root, file, what="package file named by the registry index")
    except UnsafePathError:
        return None


def _mark_local(catalog: Catalog | None, row: dict[str, Any]) -> None:
    local = None
    if catalog is not None and isinstance(row.get("content_digest"), str):
        found = catalog.find_by_digest(row["content_digest"])
        local = found.ref if found else None
    row["local"], row["local_ref"] = local is not None, local


def list_packages(catalog: Catalog | None, settings: Settings, name: str | None = None, *,
                  verify: bool = False) -> list[dict[str, Any]]:
    """Every package each registry (or the one named) offers, marked ``local`` when its
    model's content is already in the catalog. What the index says is not verified
    (``verified`` False) unless ``verify``: see :func:`verify_rows`."""
    regs = registries(settings)
    names = [name] if name else sorted(regs)
    rows: list[dict[str, Any]] = []
    for reg in names:
        try:
            root = registry_root(settings, reg)
            index = read_index(root)
        except RegistryError as exc:
            rows.append({"registry": reg, "error": str(exc)})
            if name:
                raise
            continue
        if index.get("index_error"):
            rows.append({"registry": reg, "error": f"{reg}: {index['index_error']}"})
        for p in index["packages"]:
            path = _package_path(root, p.get("file"))
            row = {**p, "registry": reg, "spec": f"{reg}/{p.get('name')}",
                   "path": str(path or ""), "available": path is not None and path.is_file(),
                   "verified": "refused" in p}
            if path is None:
                row["refused"] = (f"The index names {str(p.get('file'))[:200]!r}, which is not a "
                                  "file in the registry folder; it is not offered.")
            _mark_local(catalog, row)
            rows.append(row)
    return verify_rows(catalog, rows) if verify else rows


def verify_rows(catalog: Catalog | None, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with what each package itself says, read and checked within the import's
    bounds (manifest and signature; the data is not read): ``signed_by`` and ``status``
    come from the verified manifest, ``refused`` says why a package cannot be imported."""
    from llmops_desktop.share.unpack import inspect_package

    home = catalog.home if catalog is not None else None
    out = []
    for row in rows:
        if "error" in row:
            out.append(row)
            continue
        if row.get("refused") or not row.get("available"):  # nothing (more) to read
            out.append({**row, "verified": bool(row.get("refused"))})
            continue
        path = Path(row["path"])
        new = {**row, "verified": True}
        try:
            info = inspect_package(home, path)
        except Exception as exc:  # noqa: BLE001 - listed as refused, with the reason
            new.update(refused=str(exc) or type(exc).__name__, signed_by=None, status=None,
                       signer_trusted_as=None)
            out.append(new)
            continue
        sig = info.signature
        fresh = entry_for(info.manifest.raw, path.name, info.size,
                          sig.fingerprint if sig else None, published_by=None)
        for key in ("size_bytes", "model", "version", "ref", "kind", "type", "content_digest",
                    "status", "license", "exported_by", "created_at", "signed_by", "artifacts"):
            new[key] = fresh[key]
        new["signer_trusted_as"] = sig.trusted_as if sig else None
        new["manifest_sha256"] = info.manifest_sha256
        _mark_local(catalog, new)
        out.append(new)
    return out


def resolve_package(settings: Settings, spec: str) -> tuple[str, Path, dict[str, Any]]:
    """``NAME/PACKAGE`` (package name, file name, or model ref) -> (registry, file, entry)."""
    reg, sep, wanted = spec.partition("/")
    if not sep or not wanted:
        raise RegistryNotFoundError(f"{spec!r}: give REGISTRY/PACKAGE, e.g. team/"
                                    "demo-tiny-llama-v1 ('llmops registry list' shows them).")
    root = registry_root(settings, reg)
    entries = read_index(root)["packages"]
    matches = [p for p in entries if wanted in (p.get("name"), p.get("file"), p.get("ref"))]
    if not matches:
        matches = [p for p in entries if p.get("model") == wanted]
        matches.sort(key=lambda p: int(p.get("version") or 0))
        matches = matches[-1:]
    if not matches:
        raise RegistryNotFoundError(f"Registry {reg!r} offers no package {wanted!r}. 'llmops "
                                    f"registry list {reg}' shows what it has.")
    entry = matches[-1]
    path = root / str(entry["file"])
    if Path(str(entry["file"])).name != entry["file"] or not path.is_file():
        raise RegistryError(f"The index of {reg!r} lists {entry['file']} but the file is not "
                            "there (still being copied, or removed).")
    return reg, path, entry
