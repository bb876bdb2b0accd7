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
from llmops_desktop.settings import Settings
from llmops_desktop.share.errors import RegistryError, RegistryNotFoundError
from llmops_desktop.share.manifest import SUFFIX

INDEX_NAME = "index.json"
LOCK_NAME = ".index.lock"
INDEX_FORMAT = "llmops-registry"
INDEX_VERSION = 1


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


def read_index(root: Path) -> dict[str, Any]:
    """The registry's index; rebuilt from the packages when missing or unreadable."""
    try:
        data = json.loads((root / INDEX_NAME).read_text(encoding="utf-8"))
        if (isinstance(data, dict) and data.get("format") == INDEX_FORMAT
                and isinstance(data.get("packages"), list)):
            if int(data.get("format_version", 0)) > INDEX_VERSION:
                raise RegistryError(f"The registry at {root} was written by a newer LLMOps "
                                    "Desktop; upgrade this app to use it.")
            return data
    except (OSError, ValueError):
        pass
    return rebuild_index(root)


def rebuild_index(root: Path) -> dict[str, Any]:
    """An index made from the manifests of the packages in the folder (not written)."""
    from llmops_desktop.share.unpack import inspect_package

    index = _empty_index()
    for pkg in sorted(root.glob(f"*{SUFFIX}")):
        try:
            info = inspect_package(None, pkg)  # signatures checked, not named
        except Exception:  # noqa: BLE001 - an unreadable package is simply not listed
            continue
        index["packages"].append(entry_for(info.manifest.raw, pkg.name, info.size,
                                           info.signature.fingerprint if info.signature else None,
                                           published_by=None))
    return index


def write_index(root: Path, index: dict[str, Any]) -> None:
    index = {**index, "updated_at": utcnow()}
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

def list_packages(catalog: Catalog | None, settings: Settings,
                  name: str | None = None) -> list[dict[str, Any]]:
    """Every package each registry (or the one named) offers, marked ``local`` when its
    model's content is already in the catalog."""
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
        for p in index["packages"]:
            local = None
            if catalog is not None and p.get("content_digest"):
                found = catalog.find_by_digest(str(p["content_digest"]))
                local = found.ref if found else None
            present = (root / str(p.get("file", ""))).is_file()
            rows.append({**p, "registry": reg, "spec": f"{reg}/{p.get('name')}",
                         "path": str(root / str(p.get("file", ""))), "local": local is not None,
                         "local_ref": local, "available": present})
    return rows


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
