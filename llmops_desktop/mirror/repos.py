"""A read-only view of the catalog as Hugging Face hub model repos.

Each model is a repo, each READY artifact version a revision (commit) of it, and
``main`` its latest version. Every file is presented as an LFS file, because
the catalog knows every file's sha256: the tree shows the LFS pointer's git blob
id, and the file's ETag is its sha256, which the hub clients use as the name of
the cached blob. No FastAPI here: the server only translates these records and
errors to HTTP.
"""

from __future__ import annotations

import hashlib
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.errors import LLMOpsError, NotFoundError, UnsafePathError
from llmops_desktop.safepath import check_relative_name, is_within

MAIN = "main"
_SHA = re.compile(r"^[0-9a-f]{40}$")
_VERSION_TAG = re.compile(r"^v([1-9][0-9]*)$")
_BAD_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_RUNS = re.compile(r"([-.])[-.]+")
LIBRARY = {"hf": "transformers", "gguf": "gguf", "lora": "peft"}
KIND_TAGS = {"hf": ("transformers", "safetensors", "text-generation"),
             "gguf": ("gguf", "text-generation"), "lora": ("peft", "lora")}


# ---- errors, each with the hub's X-Error-Code --------------------------------------------------

class MirrorError(LLMOpsError):
    """A request the mirror cannot answer; ``status`` and ``error_code`` go on the wire."""

    status = 500
    error_code: str | None = None

    def __init__(self, message: str, *, commit: str | None = None) -> None:
        super().__init__(message)
        self.commit = commit


class RepoNotFoundError(MirrorError, NotFoundError):
    status, error_code = 404, "RepoNotFound"


class RevisionNotFoundError(MirrorError, NotFoundError):
    status, error_code = 404, "RevisionNotFound"


class EntryNotFoundError(MirrorError, NotFoundError):
    status, error_code = 404, "EntryNotFound"


class FilesChangedError(MirrorError):
    """A file on disk no longer matches what the catalog recorded for it."""

    status = 409


# ---- naming -----------------------------------------------------------------------------------

def _clean_part(text: str) -> str:
    """One part of a repo id as the hub clients accept it: [\\w.-], no '--' or '..'."""
    text = _RUNS.sub(r"\1", _BAD_CHARS.sub("-", text)).strip("-.")
    return text or "model"


def repo_id_for(model_name: str) -> str:
    """The repo id a model is served as: ``namespace/name`` as is, else ``local/<name>``."""
    parts = model_name.split("/")
    if len(parts) == 2 and all(parts):
        return f"{_clean_part(parts[0])}/{_clean_part(parts[1])}"
    return f"local/{_clean_part('_'.join(p for p in parts if p))}"


def commit_sha(artifact: Artifact) -> str:
    """The revision's commit id: 40 hex, the same for the same content on every machine."""
    return hashlib.sha1(artifact.content_digest.encode("ascii")).hexdigest()


def hub_date(iso: str) -> str:
    """A catalog timestamp as the hub writes dates: ``2024-05-01T12:00:00.000Z``."""
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer text the hub would keep in git for this file."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
            f"size {size}\n").encode("ascii")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def artifact_root(artifact: Artifact) -> Path:
    """The folder an artifact's files are relative to (a GGUF's is the one beside it)."""
    return artifact.path.parent if artifact.kind == "gguf" else artifact.path


# ---- records ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RepoFile:
    """One file of a revision, with where its bytes are on this machine."""

    path: str
    size: int
    sha256: str
    local_path: Path

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))

    @property
    def blob_id(self) -> str:
        return git_blob_id(lfs_pointer(self.sha256, self.size))

    @property
    def etag(self) -> str:
        """The ETag the hub sends for an LFS file: its quoted sha256."""
        return f'"{self.sha256}"'

    def tree_entry(self) -> dict:
        return {"type": "file", "oid": self.blob_id, "size": self.size, "path": self.path,
                "lfs": {"oid": self.sha256, "size": self.size, "pointerSize": self.pointer_size}}

    def sibling(self, blobs: bool) -> dict:
        if not blobs:
            return {"rfilename": self.path}
        return {"rfilename": self.path, "size": self.size, "blobId": self.blob_id,
                "lfs": {"size": self.size, "sha256": self.sha256,
                        "pointerSize": self.pointer_size}}


@dataclass(frozen=True)
class Revision:
    """One artifact version of a repo, as a commit."""

    repo_id: str
    artifact: Artifact
    files: tuple[RepoFile, ...]
    created_at: str  # when the repo's first version was made

    @property
    def sha(self) -> str:
        return commit_sha(self.artifact)

    def file(self, path: str) -> RepoFile:
        for f in self.files:
            if f.path == path:
                return f
        raise EntryNotFoundError(
            f"{path} is not a file of {self.repo_id} at revision {self.sha} "
            f"({self.artifact.ref}).", commit=self.sha)

    def checked_file(self, path: str) -> RepoFile:
        """The file, after checking that it lies in the artifact's folder and is still on
        disk with its recorded size."""
        f = self.file(path)
        self._check_inside(f)
        try:
            st = f.local_path.stat()
            found = (f"{st.st_size} bytes" if stat.S_ISREG(st.st_mode) else "not a regular file")
            intact = stat.S_ISREG(st.st_mode) and st.st_size == f.size
        except OSError as exc:
            found, intact = f"cannot be read: {exc.strerror or exc}", False
        if not intact:
            raise FilesChangedError(
                f"The files of {self.artifact.ref} (artifact #{self.artifact.id}) changed on "
                f"disk since they were imported: {path} should be {f.size} bytes at "
                f"{f.local_path} and {found}. The mirror will not serve it; the owner of "
                f"this mirror can remove the artifact ('llmops rm {self.artifact.id}') and "
                "import the model again.", commit=self.sha)
        return f

    def _check_inside(self, f: RepoFile) -> None:
        """Never serve a byte from outside the artifact: the recorded name must be a plain
        relative path, and its folders (for a stored copy, the file too) must not be links
        that lead out. A model imported by reference may keep files as links (an HF cache
        snapshot links into ``blobs/``), so there only the folders are checked."""
        root = artifact_root(self.artifact)
        try:
            check_relative_name(f.path, what="catalog file name")
            inside = (is_within(f.local_path.parent, root) if self.artifact.storage == "reference"
                      else is_within(f.local_path, root))
        except UnsafePathError as exc:
            inside, why = False, str(exc)
        else:
            why = f"it leads through a link out of {root}"
        if not inside:
            raise FilesChangedError(
                f"The mirror will not serve {f.path} of {self.artifact.ref} (artifact "
                f"#{self.artifact.id}): {why}. The owner of this mirror can remove the "
                f"artifact ('llmops rm {self.artifact.id}') and import the model again.",
                commit=self.sha)

    # ---- hub JSON ----

    def model_info(self, *, blobs: bool = False, siblings: bool = True) -> dict:
        a = self.artifact
        namespace = self.repo_id.split("/", 1)[0]
        tags = list(dict.fromkeys([*KIND_TAGS.get(a.kind, ()), *a.tags]))
        if a.license:
            tags.append(f"license:{a.license}")
        info: dict = {
            "_id": self.sha[:24], "id": self.repo_id, "modelId": self.repo_id,
            "author": namespace, "sha": self.sha, "lastModified": hub_date(a.created_at),
            "createdAt": hub_date(self.created_at), "private": False, "gated": False,
            "disabled": False, "downloads": 0, "likes": 0, "tags": tags,
            "library_name": LIBRARY.get(a.kind, a.kind), "usedStorage": a.size_bytes,
        }
        if a.kind in ("hf", "gguf"):
            info["pipeline_tag"] = "text-generation"
        if a.license:
            info["cardData"] = {"license": a.license}
        if siblings:
            info["siblings"] = [f.sibling(blobs) for f in self.files]
        return info

    def tree(self, path: str = "", *, recursive: bool = False) -> list[dict]:
        """Entries under ``path`` (the root when empty), as ``/api/models/.../tree`` lists them."""
        path = path.strip("/")
        for f in self.files:
            if f.path == path:
                return [f.tree_entry()]
        prefix = f"{path}/" if path else ""
        under = [f for f in self.files if f.path.startswith(prefix)]
        if path and not under:
            raise EntryNotFoundError(
                f"{path} is not a folder of {self.repo_id} at revision {self.sha}.",
                commit=self.sha)
        entries: dict[str, dict] = {}
        for f in under:
            rest = f.path[len(prefix):].split("/")
            depth = len(rest) if recursive else 1
            for i in range(1, min(depth, len(rest) - 1) + 1):  # the folders on the way
                folder = prefix + "/".join(rest[:i])
                entries.setdefault(folder, {"type": "directory", "oid": self._tree_id(folder),
                                            "path": folder})
            if recursive or len(rest) == 1:
                entries[f.path] = f.tree_entry()
        return [entries[k] for k in sorted(entries)]

    def _tree_id(self, folder: str) -> str:
        """A git tree id over the folder's pointer blobs: stable, changes with the content."""
        return _git_tree_id([(f.path[len(folder) + 1:], f.blob_id) for f in self.files
                             if f.path.startswith(folder + "/")])


def _git_tree_id(entries: Iterable[tuple[str, str]]) -> str:
    files: dict[str, str] = {}
    folders: dict[str, list[tuple[str, str]]] = {}
    for rel, blob in entries:
        head, sep, rest = rel.partition("/")
        if sep:
            folders.setdefault(head, []).append((rest, blob))
        else:
            files[head] = blob
    items = [(name, b"100644", bytes.fromhex(blob)) for name, blob in files.items()]
    items += [(name, b"40000", bytes.fromhex(_git_tree_id(sub))) for name, sub in folders.items()]
    items.sort(key=lambda it: it[0] + ("/" if it[1] == b"40000" else ""))
    body = b"".join(mode + b" " + name.encode() + b"\0" + oid for name, mode, oid in items)
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


# ---- the view ---------------------------------------------------------------------------------

class HubRepos:
    """The catalog's READY artifacts grouped into repos; one instance per request."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._by_repo: dict[str, list[Artifact]] = {}
        by_model: dict[str, list[Artifact]] = {}
        for a in catalog.artifacts():
            by_model.setdefault(a.model_name, []).append(a)
        # A name that already is a valid repo id keeps it; others that clean up to the
        # same id get a numbered suffix, in name order, so ids are stable.
        names = sorted(by_model, key=lambda n: (repo_id_for(n) != n, n))
        for name in names:
            repo_id = base = repo_id_for(name)
            n = 2
            while repo_id in self._by_repo:
                repo_id, n = f"{base}-{n}", n + 1
            self._by_repo[repo_id] = sorted(by_model[name], key=lambda a: a.version)

    def repo_ids(self) -> list[str]:
        return sorted(self._by_repo)

    def _artifacts(self, repo_id: str) -> list[Artifact]:
        try:
            return self._by_repo[repo_id]
        except KeyError:
            raise RepoNotFoundError(
                f"Repository {repo_id} is not on this mirror. GET /api/models lists the "
                "models it serves.") from None

    def exists(self, repo_id: str) -> bool:
        return repo_id in self._by_repo

    def revision(self, repo_id: str, rev: str = MAIN) -> Revision:
        """``main``, the 40-hex commit of any version, or ``v<N>`` for version N."""
        versions = self._artifacts(repo_id)
        chosen: Artifact | None = None
        if rev == MAIN:
            chosen = versions[-1]
        elif _SHA.match(rev):
            chosen = next((a for a in versions if commit_sha(a) == rev), None)
        elif m := _VERSION_TAG.match(rev):
            chosen = next((a for a in versions if a.version == int(m.group(1))), None)
        if chosen is None:
            known = ", ".join(["main", *(f"v{a.version}" for a in versions)])
            raise RevisionNotFoundError(
                f"Revision {rev!r} is not in {repo_id}. Use one of {known}, or the commit id of "
                "a version.")
        return self._revision(repo_id, chosen, versions)

    def _revision(self, repo_id: str, artifact: Artifact, versions: list[Artifact]) -> Revision:
        base = artifact_root(artifact)
        files = tuple(RepoFile(f.relpath, f.size, f.sha256, base.joinpath(*f.relpath.split("/")))
                      for f in self.catalog.files(artifact.id))
        return Revision(repo_id=repo_id, artifact=artifact, files=files,
                        created_at=versions[0].created_at)

    def refs(self, repo_id: str) -> dict:
        """Branches and tags as ``list_repo_refs`` reads them: ``main`` and ``v<N>`` tags."""
        versions = self._artifacts(repo_id)
        return {
            "branches": [{"name": MAIN, "ref": "refs/heads/main",
                          "targetCommit": commit_sha(versions[-1])}],
            "converts": [],
            "tags": [{"name": f"v{a.version}", "ref": f"refs/tags/v{a.version}",
                      "targetCommit": commit_sha(a)} for a in versions],
        }

    def search(self, *, search: str = "", author: str = "", tags: Iterable[str] = (),
               sort: str = "id", descending: bool = False) -> list[Revision]:
        """The ``main`` revision of each matching repo, as ``/api/models`` filters them."""
        wanted = {t.lower() for t in tags}
        out: list[Revision] = []
        for repo_id in self.repo_ids():
            if search and search.lower() not in repo_id.lower():
                continue
            if author and repo_id.split("/", 1)[0].lower() != author.lower():
                continue
            main = self._main_lazy(repo_id)
            if wanted and not wanted <= {t.lower() for t in main.model_info(
                    siblings=False)["tags"]}:
                continue
            out.append(main)
        keys = {"lastModified": lambda r: r.artifact.created_at,
                "createdAt": lambda r: r.created_at,
                "usedStorage": lambda r: r.artifact.size_bytes}
        out.sort(key=keys.get(sort, lambda r: r.repo_id), reverse=descending)
        return out

    def _main_lazy(self, repo_id: str) -> Revision:
        """The main revision without reading its file list (listing pages rarely need it)."""
        versions = self._by_repo[repo_id]
        return Revision(repo_id=repo_id, artifact=versions[-1], files=(),
                        created_at=versions[0].created_at)

    def with_files(self, revision: Revision) -> Revision:
        if revision.files:
            return revision
        return self._revision(revision.repo_id, revision.artifact,
                              self._by_repo[revision.repo_id])
