"""What a hub says about a repo, through huggingface_hub, with errors a user can act on.

huggingface_hub answers the metadata (the commit a revision resolves to, each
file's size and LFS sha256, search); the bytes are moved by :mod:`.download`
because huggingface_hub does not resume across processes.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.errors import (
    AuthError,
    LLMOpsError,
    NetworkError,
    NotAHubError,
    NotFoundError,
    OfflineModeError,
    UnsafePathError,
)
from llmops_desktop.safepath import check_relative_name

USER_AGENT = "llmops-desktop"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None  # from the LFS metadata; None for small files kept in git
    git_oid: str | None  # git blob sha1, checked when there is no sha256


@dataclass(frozen=True)
class RepoSnapshot:
    repo_id: str
    revision: str  # as asked
    commit: str  # 40-hex sha it resolved to
    files: tuple[RemoteFile, ...]
    license: str = ""
    gated: bool = False
    last_modified: str = ""
    tags: tuple[str, ...] = field(default=())

    def select(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[RemoteFile]:
        """Files matching any ``include`` glob (all when none) and no ``exclude`` glob."""
        def hit(path: str, globs: Sequence[str]) -> bool:
            name = path.rsplit("/", 1)[-1]
            return any(fnmatch.fnmatch(path, g) or fnmatch.fnmatch(name, g) for g in globs)

        return [f for f in self.files
                if (not include or hit(f.path, include)) and not hit(f.path, exclude)]

    @property
    def total_size(self) -> int:
        return sum(f.size or 0 for f in self.files)


@dataclass(frozen=True)
class ModelSummary:
    repo_id: str
    downloads: int | None
    likes: int | None
    last_modified: str
    tags: tuple[str, ...]


def _translate(exc: BaseException, endpoint: str, repo_id: str = "", revision: str = "") -> LLMOpsError:
    """A huggingface_hub or transport error as one of ours, with what to do next."""
    if isinstance(exc, LLMOpsError):
        return exc
    from huggingface_hub import errors as hf

    name = type(exc).__name__
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return OfflineModeError("Offline is on, so nothing is downloaded. Turn Offline off in "
                                "Settings (or 'llmops settings offline off') to download.")
    if isinstance(exc, hf.GatedRepoError):
        return AuthError(f"{repo_id} is gated: accept its terms on the hub with your account, "
                         "then set your token in Settings (or HF_TOKEN).")
    if isinstance(exc, hf.RevisionNotFoundError):
        return NotFoundError(f"{repo_id} has no revision {revision!r} at {endpoint}. Check the "
                             "branch, tag or commit name.")
    if isinstance(exc, hf.RepositoryNotFoundError):
        return NotFoundError(f"No repo {repo_id!r} at {endpoint} (or it is private and your "
                             "token cannot see it). Check the name, or set a token in Settings.")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return AuthError(f"{endpoint} refused the request ({status}): the token is missing, "
                         "wrong or lacks access. Set it in Settings or with HF_TOKEN.")
    if isinstance(exc, hf.HfHubHTTPError) and status == 404:
        return NotAHubError(f"{endpoint} answered 404 where a Hugging Face hub has its API. "
                            "Is this the right endpoint?")
    if isinstance(exc, (ValueError, KeyError, TypeError)) or "JSONDecode" in name:
        return NotAHubError(f"{endpoint} does not answer like a Hugging Face hub ({exc}). Check "
                            "the endpoint in Settings.")
    if isinstance(exc, OSError) or any(s in name for s in ("Connect", "Timeout", "Network",
                                                           "Transport", "Protocol", "Read")):
        return NetworkError(f"Cannot reach {endpoint} ({name}: {exc}). Check the endpoint, the "
                            "proxy setting and the network, or turn Offline on.")
    if isinstance(exc, hf.HfHubHTTPError):
        return NetworkError(f"{endpoint} answered an error: {exc}")
    return NetworkError(f"Talking to {endpoint} failed: {name}: {exc}")


def _check_listed_name(name: object, endpoint: str, repo_id: str) -> None:
    """Refuse the whole listing when one file name could land outside the download folder."""
    try:
        check_relative_name(name, what="file name")
    except UnsafePathError as exc:
        raise UnsafePathError(
            f"{endpoint} lists a file of {repo_id} that is not a safe name: {exc} Nothing was "
            "downloaded. The hub or mirror may be misconfigured or hostile; check the endpoint "
            "in Settings.", name=exc.name) from None


def _check_listing(paths: Sequence[str], endpoint: str, repo_id: str) -> None:
    """Refuse a listing that names one path twice, or a path both as a file and a folder."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise UnsafePathError(f"{endpoint} lists {path!r} twice in {repo_id}; the listing is "
                                  "refused and nothing was downloaded.", name=path)
        seen.add(path)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in seen:
                raise UnsafePathError(
                    f"{endpoint} lists {'/'.join(parts[:i])!r} in {repo_id} both as a file and "
                    f"as the folder of {path!r}; the listing is refused and nothing was "
                    "downloaded.", name=path)


class HubClient:
    """Metadata from one endpoint, with one token (never logged)."""

    def __init__(self, endpoint: str, token: str = "", *, offline: bool = False,
                 proxy: str = "") -> None:
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self.offline = offline
        self.proxy = proxy

    def _api(self):
        if self.offline:
            raise OfflineModeError("Offline is on, so nothing is downloaded. Turn Offline off "
                                   "in Settings (or 'llmops settings offline off') to download.")
        from huggingface_hub import HfApi, constants

        # huggingface_hub reads HF_HUB_OFFLINE once, at import; our setting decides, now.
        constants.HF_HUB_OFFLINE = False
        if self.proxy:  # its HTTP client takes the proxy from the environment
            import os

            os.environ["HTTPS_PROXY"] = os.environ["HTTP_PROXY"] = self.proxy
        return HfApi(endpoint=self.endpoint, token=self._token or False,
                     library_name=USER_AGENT)

    def snapshot(self, repo_id: str, revision: str = "main") -> RepoSnapshot:
        try:
            info = self._api().model_info(repo_id, revision=revision, files_metadata=True)
        except Exception as exc:  # noqa: BLE001 - translated below
            raise _translate(exc, self.endpoint, repo_id, revision) from None
        sha = getattr(info, "sha", None)
        if not sha or len(sha) != 40:
            raise NotAHubError(f"{self.endpoint} did not say which commit {revision!r} of "
                               f"{repo_id} is; it does not answer like a Hugging Face hub.")
        files = []
        for s in info.siblings or []:
            lfs = getattr(s, "lfs", None)
            _check_listed_name(s.rfilename, self.endpoint, repo_id)
            files.append(RemoteFile(path=s.rfilename, size=getattr(s, "size", None),
                                    sha256=getattr(lfs, "sha256", None) if lfs else None,
                                    git_oid=getattr(s, "blob_id", None)))
        _check_listing([f.path for f in files], self.endpoint, repo_id)
        card = getattr(info, "card_data", None)
        lic = ""
        if card is not None:
            lic = str(getattr(card, "license", "") or "")
        modified = getattr(info, "last_modified", None)
        return RepoSnapshot(repo_id=repo_id, revision=revision, commit=sha, files=tuple(files),
                            license=lic, gated=bool(getattr(info, "gated", False)),
                            last_modified=modified.isoformat() if modified else "",
                            tags=tuple(getattr(info, "tags", None) or ()))

    def search(self, query: str = "", *, author: str | None = None,
               limit: int = 50) -> list[ModelSummary]:
        try:
            found = list(self._api().list_models(search=query or None, author=author,
                                                 limit=limit))
        except Exception as exc:  # noqa: BLE001 - translated below
            raise _translate(exc, self.endpoint) from None
        out = []
        for m in found:
            modified = getattr(m, "last_modified", None)
            out.append(ModelSummary(repo_id=m.id, downloads=getattr(m, "downloads", None),
                                    likes=getattr(m, "likes", None),
                                    last_modified=modified.isoformat() if modified else "",
                                    tags=tuple(getattr(m, "tags", None) or ())))
        return out

    def file_url(self, repo_id: str, commit: str, path: str) -> str:
        from urllib.parse import quote

        return f"{self.endpoint}/{repo_id}/resolve/{commit}/{quote(path)}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}


def summary_to_json(snapshot: RepoSnapshot) -> dict[str, Any]:
    return {"repo_id": snapshot.repo_id, "revision": snapshot.revision, "commit": snapshot.commit,
            "license": snapshot.license, "gated": snapshot.gated,
            "last_modified": snapshot.last_modified, "total_size": snapshot.total_size,
            "files": [f.__dict__ for f in snapshot.files]}
