"""The package's ``manifest.json``: what it holds, where it came from, and its checks.

A package (``.llmpkg``) is an uncompressed tar archive::

    manifest.json          always the first member
    manifest.sig           optional: an Ed25519 signature over manifest.json's exact bytes
    artifacts/<id>/<file>  every file of every artifact, in manifest order

The manifest (format version :data:`FORMAT_VERSION`) names each artifact with its
files' sizes and sha256, its lineage (parents, the job and parameters that made it,
dataset hashes where recorded), evaluations and evaluation runs (summaries with
intervals and the approval gate's verdict, share/evalruns.py), model card, license and
governance status, and says which app version, user and host wrote the package.
:func:`validate_manifest` checks all of it before a byte of data is read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from llmops_desktop.errors import UnsafePathError
from llmops_desktop.safepath import check_relative_name
from llmops_desktop.share.errors import PackageError, PackageVersionError, UnsafePackageError
from llmops_desktop.share.evalruns import parse_eval_runs

FORMAT = "llmops-package"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.sig"
ARTIFACTS_DIR = "artifacts"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""A manifest is read whole and parsed: its size bounds the memory an import needs."""
MAX_SIGNATURE_BYTES = 64 * 1024
MAX_JSON_DEPTH = 40
"""Arrays and objects nested deeper than this are refused before parsing."""
MAX_JSON_ITEMS = 200_000
"""Values a manifest (or index) may hold, counted on the raw bytes before parsing."""
MAX_ARTIFACTS = 1_000
MAX_FILES = 100_000
SUFFIX = ".llmpkg"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")


def check_relpath(path: str, where: str) -> str:
    """A relative POSIX path that stays inside its folder; raise for anything else."""
    if not isinstance(path, str) or not path or "\x00" in path:
        raise UnsafePackageError(f"{where}: an empty or invalid file name. The package is "
                                 "malformed; nothing was imported.")
    if path.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", path) or path.startswith("\\"):
        raise UnsafePackageError(f"{where}: {path!r} is an absolute path. A package may only "
                                 "hold relative paths; this one was refused and nothing was "
                                 "imported.")
    parts = PurePosixPath(path.replace("\\", "/")).parts
    if ".." in parts:
        raise UnsafePackageError(f"{where}: {path!r} contains '..', which could write outside "
                                 "the model's folder. The package was refused and nothing was "
                                 "imported.")
    if any(p in ("", ".") for p in path.split("/")):
        raise UnsafePackageError(f"{where}: {path!r} is not a clean relative path. The package "
                                 "was refused and nothing was imported.")
    try:
        check_relative_name(path, what=f"file name in {where}")
    except UnsafePathError as exc:
        raise UnsafePackageError(f"{exc} The package was refused and nothing was "
                                 "imported.") from None
    return path


# ---- bounded JSON ------------------------------------------------------------------------------

# A JSON string, or an unterminated one running to the end (possessive: never backtracks, so
# hostile quoting costs one linear pass).
_STRING = re.compile(rb'"(?>[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def load_bounded_json(data: bytes, what: str, *, limit: int, max_depth: int = MAX_JSON_DEPTH,
                      max_items: int = MAX_JSON_ITEMS,
                      error: type[Exception] = PackageError,
                      then: str = "The package was refused and nothing was imported.") -> Any:
    """``json.loads`` with fixed bounds checked on the raw bytes first: the size, the number
    of values (commas and opening brackets outside strings) and the nesting depth (a
    non-recursive scan). Anything over a bound, or not JSON, raises ``error`` naming it."""
    if len(data) > limit:
        raise error(f"{what} is {len(data):,} bytes, more than the {limit:,} allowed. {then}")
    bare = _STRING.sub(b"", data)
    opens = bare.count(b"[") + bare.count(b"{")
    items = bare.count(b",") + opens
    if items > max_items or bare.count(b"]") + bare.count(b"}") > max_items:
        raise error(f"{what} holds more than {max_items:,} entries, more than a real one "
                    f"needs. {then}")
    depth = 0
    for m in _BRACKET.finditer(bare):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                raise error(f"{what} nests arrays or objects more than {max_depth} levels "
                            f"deep. {then}")
        else:
            depth -= 1
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{what} is not valid JSON ({str(exc)[:200]}). {then}") from None


def member_name(artifact_key: str, relpath: str) -> str:
    return f"{ARTIFACTS_DIR}/{artifact_key}/{relpath}"


@dataclass(frozen=True)
class ManifestFile:
    relpath: str
    size: int
    sha256: str
    member: str


@dataclass(frozen=True)
class ManifestArtifact:
    key: str
    name: str
    version: int
    kind: str
    content_digest: str
    parent: str | None  # key of the parent inside this package
    parent_digest: str | None  # the parent's content digest, in or out of the package
    files: tuple[ManifestFile, ...]
    raw: dict[str, Any]
    eval_runs: tuple[dict[str, Any], ...] = ()  # checked (share/evalruns.py)

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Manifest:
    raw: dict[str, Any]
    artifacts: tuple[ManifestArtifact, ...]  # parents before children

    @property
    def main(self) -> ManifestArtifact:
        key = self.raw["model"]["id"]
        return next(a for a in self.artifacts if a.key == key)

    @property
    def total_bytes(self) -> int:
        return sum(a.size_bytes for a in self.artifacts)

    def members(self) -> dict[str, tuple[ManifestArtifact, ManifestFile]]:
        return {f.member: (a, f) for a in self.artifacts for f in a.files}


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise PackageError(f"The package's manifest is malformed: {what}. The package was "
                           "refused and nothing was imported; ask for a fresh copy.")


def parse_manifest(data: bytes) -> Manifest:
    """Parse and check a manifest; raise a clear :class:`PackageError` for anything wrong."""
    raw = load_bounded_json(
        data, "The package's manifest.json", limit=MAX_MANIFEST_BYTES,
        then="The package is damaged or not an LLMOps package; nothing was imported.")
    _need(isinstance(raw, dict), "it is not a JSON object")
    if raw.get("format") != FORMAT:
        raise PackageError(f"This is not an LLMOps package (manifest format {raw.get('format')!r},"
                           f" expected {FORMAT!r}). Nothing was imported.")
    version = raw.get("format_version")
    _need(isinstance(version, int) and not isinstance(version, bool), "no format_version")
    if version != FORMAT_VERSION:
        newer = version > FORMAT_VERSION
        raise PackageVersionError(
            f"The package uses format version {version}; this app reads version "
            f"{FORMAT_VERSION}. " + ("It was written by a newer LLMOps Desktop: upgrade this "
                                     "app to import it." if newer else
                                     "Export it again with a current app.")
            + " Nothing was imported.")
    model = raw.get("model")
    _need(isinstance(model, dict) and isinstance(model.get("id"), str), "no model entry")
    items = raw.get("artifacts")
    _need(isinstance(items, list) and items, "no artifacts listed")
    _need(len(items) <= MAX_ARTIFACTS, f"it lists {len(items):,} artifacts (at most "
          f"{MAX_ARTIFACTS:,})")
    artifacts: list[ManifestArtifact] = []
    keys: set[str] = set()
    members: set[str] = set()
    for i, item in enumerate(items):
        where = f"artifact #{i + 1}"
        _need(isinstance(item, dict), f"{where} is not an object")
        key = item.get("id")
        _need(isinstance(key, str) and bool(_KEY.match(key)), f"{where} has no valid id")
        _need(key not in keys, f"artifact id {key!r} appears twice")
        name, version_, kind = item.get("name"), item.get("version"), item.get("kind")
        _need(isinstance(name, str) and name.strip() != "", f"{key} has no model name")
        _need(isinstance(version_, int), f"{key} has no version number")
        _need(kind in ("hf", "gguf", "lora"), f"{key} has an unknown kind {kind!r}")
        parent = item.get("parent")
        _need(parent is None or (isinstance(parent, str) and parent in keys),
              f"{key}'s parent {parent!r} is not listed before it")
        files_raw = item.get("files")
        _need(isinstance(files_raw, list) and files_raw, f"{key} lists no files")
        files = []
        for f in files_raw:
            _need(isinstance(f, dict), f"{key} has a malformed file entry")
            rel = check_relpath(f.get("path"), f"manifest entry of {key}")
            size, sha = f.get("size"), f.get("sha256")
            _need(isinstance(size, int) and not isinstance(size, bool) and size >= 0,
                  f"{key}/{rel} has no valid size")
            _need(isinstance(sha, str) and bool(_SHA256.match(sha)),
                  f"{key}/{rel} has no valid sha256")
            member = member_name(key, rel)
            _need(member not in members, f"{member} is listed twice")
            members.add(member)
            _need(len(members) <= MAX_FILES, f"it lists more than {MAX_FILES:,} files")
            files.append(ManifestFile(rel, size, sha, member))
        from llmops_desktop.hashing import content_digest

        digest = content_digest((f.relpath, f.sha256) for f in files)
        _need(item.get("content_digest") in (None, digest),
              f"{key}'s content digest does not match its files")
        parent_digest = item.get("parent_digest")
        eval_runs = parse_eval_runs(item.get("eval_runs"), key, _need)
        artifacts.append(ManifestArtifact(
            key, name, version_, kind, digest, parent,
            parent_digest if isinstance(parent_digest, str) else None, tuple(files), item,
            eval_runs))
        keys.add(key)
    _need(model["id"] in keys, "the model entry names an artifact that is not listed")
    return Manifest(raw, tuple(artifacts))


def manifest_bytes(raw: dict[str, Any]) -> bytes:
    return (json.dumps(raw, indent=2, sort_keys=False, ensure_ascii=False, default=str)
            + "\n").encode("utf-8")
