"""Resumable, verified downloads from a hub or a mirror, as a job.

Partial files live in ``<home>/downloads/<key>/`` (not in the job's staging
folder) so a dropped connection, a pause, a killed job or a closed app
continues with an HTTP Range request from the last byte on disk, across
restarts. Every file's size and sha256 (the hub's LFS metadata; the git blob
sha1 for small files) is checked before it is renamed from ``.part``; only when
every file is verified does the folder enter the catalog, through the same
import path as a local folder, by renaming.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import queue
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from llmops_desktop.acquire.hub import HubClient, RemoteFile, RepoSnapshot, summary_to_json
from llmops_desktop.acquire.requests import DownloadRequest
from llmops_desktop.errors import (
    AuthError,
    ChecksumError,
    DiskFullError,
    DuplicateArtifactError,
    InvalidInputError,
    NetworkError,
    NotFoundError,
    PickleRefusedError,
    UnsafePathError,
)
from llmops_desktop.hashing import HashPipe, content_digest, write_all
from llmops_desktop.jobs.events import Event, Log, Progress, Result
from llmops_desktop.jobs.tasks import JobContext, register_task
from llmops_desktop.paths import Home
from llmops_desktop.safepath import safe_join

CHUNK = 1024 * 1024  # bytes read at once when resuming (hashing what is on disk)
# Bytes received at once: as many as arrive in about READ_SECONDS, between MIN_READ and
# MAX_READ (:class:`_PacedReader`). Few Python steps per GB on a fast link (2 GiB from the
# mirror on loopback: 4 MiB reads 1.3-1.6 s, 1 MiB reads 1.9 s, curl -o 1.8-2.0 s), while
# progress, pause and cancel stay prompt on a slow one.
MIN_READ, MAX_READ = 64 * 1024, 4 * 1024 * 1024
READ_SECONDS = 0.25
HASH_BUFFERS = 4  # MAX_READ buffers per file: the hash thread may lag behind by 3
PARALLEL_FILES = 4  # files of one repo fetched at the same time
UNKNOWN_SIZE = 1 << 62  # a file the hub gives no size for: read to the end
MAX_RETRIES = 5
TIMEOUT_S = 30
MANIFEST = "download.json"
PART = ".part"
PICKLE_HOW = ("Pickle checkpoints can run arbitrary code when they are loaded, so they are "
              "refused by default. Prefer a safetensors or GGUF copy of the model; if you trust "
              "the source, download again with --allow-pickle (or tick 'Allow pickle "
              "checkpoints' in Settings).")


def download_key(endpoint: str, repo_id: str, commit: str) -> str:
    return hashlib.sha256(f"{endpoint.rstrip('/')}\n{repo_id}\n{commit}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PartialDownload:
    """A download that stopped before the end; resumable."""

    key: str
    folder: Path
    endpoint: str
    repo_id: str
    revision: str
    commit: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    name: str | None
    files: tuple[str, ...]  # the exact selection
    bytes_on_disk: int
    total_bytes: int


def list_partial_downloads(home: Home) -> list[PartialDownload]:
    out = []
    root = home.downloads_dir
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir()):
        try:
            m = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        on_disk = sum(p.stat().st_size for p in folder.rglob("*")
                      if p.is_file() and p.name != MANIFEST)
        out.append(PartialDownload(
            key=folder.name, folder=folder, endpoint=m["endpoint"], repo_id=m["repo_id"],
            revision=m["revision"], commit=m["commit"], include=tuple(m.get("include", ())),
            exclude=tuple(m.get("exclude", ())), name=m.get("name"),
            files=tuple(f["path"] for f in m["files"]), bytes_on_disk=on_disk,
            total_bytes=sum(f.get("size") or 0 for f in m["files"])))
    return out


def download_folder(home: Home, key: str) -> Path:
    """``<home>/downloads/<key>``, refused if ``key`` or a link there leads elsewhere."""
    return safe_join(home.downloads_dir, key, what="download folder")


def local_paths(folder: Path, f: RemoteFile) -> tuple[Path, Path]:
    """Where ``f`` lands in ``folder``, and its ``.part``: both checked to stay inside it,
    through any link already on disk; raises :class:`UnsafePathError` before anything is
    written."""
    what = "file name in the hub's listing"
    if f.path in (MANIFEST, MANIFEST + ".tmp") or f.path.endswith(PART):
        raise UnsafePathError(
            f"The {what} {f.path!r} would overwrite the download's own bookkeeping "
            f"({MANIFEST} or a {PART} file); refused, nothing was downloaded.", name=f.path)
    return safe_join(folder, f.path, what=what), safe_join(folder, f.path + PART, what=what)


def discard_download(home: Home, key: str) -> bool:
    """Delete a partial download's files (cancel, as opposed to pause)."""
    folder = download_folder(home, key)
    if folder.is_dir() and not folder.is_symlink() and folder.parent == home.downloads_dir:
        shutil.rmtree(folder)
        return True
    return False


class _DropAuthOnRedirect(urllib.request.HTTPRedirectHandler):
    """Follow a hub's redirect to its file store, without sending the token elsewhere."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and urlsplit(newurl).netloc != urlsplit(req.full_url).netloc:
            new.remove_header("Authorization")
        return new


def _opener(proxy: str) -> urllib.request.OpenerDirector:
    handlers: list[Any] = [_DropAuthOnRedirect()]
    if proxy:
        handlers.append(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
    return urllib.request.build_opener(*handlers)


class _Hashers:
    def __init__(self, want_git: bool, size: int | None) -> None:
        self.sha256 = hashlib.sha256()
        self.git = hashlib.sha1(f"blob {size}\0".encode()) if want_git and size is not None else None

    def update(self, data: memoryview | bytes) -> None:
        self.sha256.update(data)
        if self.git is not None:
            self.git.update(data)


def _hash_existing(path: Path, hashers: _Hashers) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK * 8):
            hashers.update(chunk)
            n += len(chunk)
    return n


class _PacedReader:
    """``read_into(view)`` in pieces that take about READ_SECONDS to arrive: the size
    doubles (up to MAX_READ) while a full piece comes in under half that, and halves (down
    to MIN_READ) when one takes longer."""

    def __init__(self, read_into: Callable[[memoryview], int], size: int = CHUNK) -> None:
        self.read_into, self.size = read_into, size

    def __call__(self, view: memoryview) -> int:
        want = min(len(view), self.size)
        started = time.monotonic()
        n = self.read_into(view[:want])
        took = time.monotonic() - started
        if n == want == self.size and took < READ_SECONDS / 2:
            self.size = min(self.size * 2, MAX_READ)
        elif took > READ_SECONDS:
            self.size = max(self.size // 2, MIN_READ)
        return n


class _Transfer:
    """Moves one file's bytes into ``<folder>/<path>.part`` and verifies them."""

    def __init__(self, client: HubClient, snapshot: RepoSnapshot, folder: Path, proxy: str,
                 counter: list[int], total: int, index: int, count: int) -> None:
        self.client, self.snapshot, self.folder = client, snapshot, folder
        self.opener = _opener(proxy)
        self.counter, self.total, self.index, self.count = counter, total, index, count
        self.fetched = 0  # bytes received over the network in this run
        self.sha256: str | None = None  # of the verified file, when this run hashed it all
        self.offset = 0  # bytes of the current file on disk (and hashed)
        self._hashers: _Hashers | None = None  # the current file's hash state

    def run(self, f: RemoteFile) -> Iterator[Event]:
        final, part = local_paths(self.folder, f)
        if final.exists():  # verified and renamed in an earlier run
            self.counter[0] += final.stat().st_size
            self.sha256 = f.sha256
            return
        part.parent.mkdir(parents=True, exist_ok=True)
        hashers = _Hashers(want_git=f.sha256 is None and bool(f.git_oid), size=f.size)
        offset = 0
        if part.exists():
            if f.size is not None and part.stat().st_size > f.size:
                part.unlink()
            else:
                offset = _hash_existing(part, hashers)
                if offset:
                    yield Log(f"resuming {f.path} at byte {offset:,}")
        self.counter[0] += offset
        # hashes on its own thread while the next chunks arrive; a small file's buffers are
        # its size, not 4 x MAX_READ zeroed for a config.json
        buffer = min(MAX_READ, max(f.size or MAX_READ, MIN_READ))
        with HashPipe(buffer, HASH_BUFFERS) as pipe:
            offset = yield from self._fetch(f, part, hashers, offset, pipe)
            hashers = self._hashers
            pipe.drain()
        self._verify(f, part, hashers)
        self.sha256 = hashers.sha256.hexdigest()
        part.rename(final)
        yield Log(f"verified {f.path} ({final.stat().st_size:,} bytes)")

    def _fetch(self, f: RemoteFile, part: Path, hashers: _Hashers, offset: int,
               pipe: HashPipe) -> Iterator[Event]:
        """Request the rest of ``f`` from ``offset`` (again after a failure) until it is all
        on disk; returns the bytes on disk. ``self._hashers`` is the hash state after it
        (a fresh one when the server ignored Range and the file started over)."""
        self._hashers = hashers
        url = self.client.file_url(self.snapshot.repo_id, self.snapshot.commit, f.path)
        failures = 0
        while f.size is None or offset < f.size:
            headers = {"User-Agent": "llmops-desktop", "Accept-Encoding": "identity",
                       **self.client.auth_headers()}
            if offset:
                headers["Range"] = f"bytes={offset}-"
            try:
                resp = self.opener.open(urllib.request.Request(url, headers=headers),
                                        timeout=TIMEOUT_S)
            except urllib.error.HTTPError as exc:
                if exc.code == 416 and f.size is not None and offset >= f.size:
                    break
                raise self._http_error(exc, f) from None
            except (urllib.error.URLError, OSError, HTTPException) as exc:
                failures = yield from self._retry(failures, f, exc)
                continue
            with resp:
                if offset and resp.status != 206:  # the server ignored Range: start over
                    yield Log(f"{urlsplit(url).netloc} ignored the Range request; "
                              f"fetching {f.path} from the start", level="warning")
                    self.counter[0] -= offset
                    offset = 0
                    pipe.drain()  # nothing more goes to the old hash
                    hashers = self._hashers = _Hashers(want_git=hashers.git is not None,
                                                       size=f.size)
                    part.unlink(missing_ok=True)
                self.offset = offset
                try:
                    yield from self._stream(resp, part, hashers, f, pipe)
                except (OSError, HTTPException) as exc:
                    offset = self.offset  # what arrived before the failure is kept
                    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise DiskFullError(
                            f"The disk filled up while downloading {f.path}. Free some space "
                            "and download again: it resumes where it stopped.") from None
                    failures = yield from self._retry(failures, f, exc)
                    continue
                offset = self.offset
            if f.size is None:
                break
            failures = 0
        return offset

    def _stream(self, resp, part: Path, hashers: _Hashers, f: RemoteFile,
                pipe: HashPipe) -> Iterator[Event]:
        """Append the response body from ``self.offset``: received in paced reads
        (:class:`_PacedReader`) into the .part file, each buffer handed to the hash thread
        once written (the mirror sends with sendfile, so the hash has a core of its own). ``self.offset``
        always equals the bytes on disk and handed to the hash, in order, even when the
        connection breaks mid-way."""
        offset = self.offset
        left = f.size - offset if f.size is not None else UNKNOWN_SIZE
        with open(part, "r+b" if offset else "wb", buffering=0) as out:
            # No fallocate: on ext4 here, blocks reserved ahead (unwritten extents) made the
            # transfer of 2 GB 1.8-4.8 s slower in every round of bench_download --compare;
            # the free-space check before the transfer already fails early on a full disk.
            out.seek(offset)
            for chunk in pipe.chunks(_PacedReader(resp.readinto), left, hashers):
                n = write_all(out, chunk)
                offset += n
                self.offset = offset
                self.fetched += n
                self.counter[0] += n
                yield Progress(self.counter[0], self.total, "bytes", f.path,
                               detail={"file": f.path, "done": offset, "total": f.size,
                                       "index": self.index, "count": self.count})
        if f.size is not None and offset < f.size:
            raise HTTPException(f"connection closed at byte {offset:,} of {f.size:,}")

    def _retry(self, failures: int, f: RemoteFile, exc: BaseException) -> Iterator[Event]:
        failures += 1
        if failures > MAX_RETRIES:
            raise NetworkError(
                f"Downloading {f.path} failed {MAX_RETRIES} times in a row ({exc}). What "
                "arrived is kept: run the same download again to resume.") from None
        wait = min(2 ** (failures - 1), 15)
        yield Log(f"{f.path}: {exc}; retrying in {wait}s ({failures}/{MAX_RETRIES})",
                  level="warning")
        time.sleep(wait)
        return failures

    def _http_error(self, exc: urllib.error.HTTPError, f: RemoteFile) -> Exception:
        if exc.code in (401, 403):
            return AuthError(f"The server refused {f.path} ({exc.code}): the repo is gated or "
                             "the token is missing or wrong. Set the token in Settings or HF_TOKEN.")
        if exc.code == 404:
            return NotFoundError(f"{f.path} is listed by the hub but its file is missing (404).")
        return NetworkError(f"The server answered {exc.code} {exc.reason} for {f.path}.")

    def _verify(self, f: RemoteFile, part: Path, hashers: _Hashers) -> None:
        size = part.stat().st_size
        problem = None
        if f.size is not None and size != f.size:
            problem = f"its size is {size:,} bytes, the hub says {f.size:,}"
        elif f.sha256 and hashers.sha256.hexdigest() != f.sha256.lower():
            problem = f"its sha256 is {hashers.sha256.hexdigest()}, the hub says {f.sha256}"
        elif hashers.git is not None and f.git_oid and hashers.git.hexdigest() != f.git_oid:
            problem = f"its git hash is {hashers.git.hexdigest()}, the hub says {f.git_oid}"
        if problem:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"{f.path} arrived damaged: {problem}. The bad copy was "
                                "deleted; download again.")


def _run_transfers(transfers: Sequence[tuple[_Transfer, RemoteFile]], workers: int
                   ) -> Iterator[Event]:
    """Run the transfers, up to ``workers`` files at a time (a repo's small files arrive
    while its weights stream, and shards share the link); their events come out here, on
    the caller's thread. After a failure no further file starts, the files under way
    finish (each verified, or failing on its own), then the first failure is raised. A
    consumer that stops listening (pause, cancel) stops them all at their next chunk."""
    if workers <= 1 or len(transfers) <= 1:
        for transfer, f in transfers:
            yield from transfer.run(f)
        return
    events: queue.SimpleQueue[Event | None] = queue.SimpleQueue()
    stop = threading.Event()

    def work(transfer: _Transfer, f: RemoteFile) -> None:
        try:
            for event in transfer.run(f):
                if stop.is_set():
                    return  # closing the generator closes its file and hash thread
                events.put(event)
        finally:
            events.put(None)  # this one is done (or failed: its future says)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llmops-dl") as pool:
        futures = [pool.submit(work, t, f) for t, f in transfers]
        try:
            running, failed = len(futures), False
            while running:
                event = events.get()
                if event is not None:
                    yield event
                    continue
                running -= 1
                if not failed and any(fut.done() and fut.exception() for fut in futures):
                    failed = True  # files not started yet never will be
                    running -= sum(fut.cancel() for fut in futures)
            for fut in futures:
                if not fut.cancelled():
                    fut.result()  # the first failure, in the repo's file order
        finally:
            stop.set()  # the consumer gone (or the failure raised): the others stop too


def _write_manifest(folder: Path, client: HubClient, snapshot: RepoSnapshot,
                    files: Sequence[RemoteFile], include: Sequence[str], exclude: Sequence[str],
                    name: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    data = {"endpoint": client.endpoint, "repo_id": snapshot.repo_id,
            "revision": snapshot.revision, "commit": snapshot.commit, "include": list(include),
            "exclude": list(exclude), "name": name, "files": [f.__dict__ for f in files],
            "started_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    tmp.replace(folder / MANIFEST)


def _free_space_check(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise DiskFullError(f"Not enough disk space: {needed / 1e9:.2f} GB still to download, "
                            f"{free / 1e9:.2f} GB free at {folder}. Free some space first.")


def _pickle_policy(files: Sequence[RemoteFile], allow_pickle: bool, repo_id: str
                   ) -> tuple[list[RemoteFile], list[str]]:
    """The files to fetch under the pickle policy, and the pickle files left out.

    The same rule as importing a folder: pickle-only weights are refused unless pickle is
    allowed; pickles beside safetensors weights are left out (here: not even downloaded).
    A single GGUF without a config is imported alone, so other files do not matter."""
    from llmops_desktop.importer import PICKLE_SUFFIXES

    pickles = [f.path for f in files if f.path.lower().endswith(PICKLE_SUFFIXES)]
    paths = {f.path for f in files}
    ggufs = [p for p in paths if p.lower().endswith(".gguf")]
    if allow_pickle or not pickles or (
            len(ggufs) == 1 and not paths & {"config.json", "adapter_config.json"}):
        return list(files), []
    if any(p.endswith(".safetensors") for p in paths):
        return [f for f in files if f.path not in set(pickles)], sorted(pickles)
    raise PickleRefusedError(
        f"{repo_id} has only pickle weights ({', '.join(sorted(pickles)[:3])}); nothing was "
        "downloaded. " + PICKLE_HOW)


def download(ctx: JobContext, client: HubClient, repo_id: str, revision: str = "main",
             include: Sequence[str] = (), exclude: Sequence[str] = (), name: str | None = None,
             proxy: str = "", files: Sequence[str] = (),
             allow_pickle: bool = False) -> Iterator[Event]:
    """Download the chosen files of a repo (exact ``files``, or by include/exclude globs),
    verify them, and register the artifact. Every file name is checked before a byte is
    written, and pickle weights obey ``allow_pickle``, before the download as at import."""
    yield Progress(0, None, "bytes", f"asking {client.endpoint} about {repo_id}@{revision}")
    snapshot = client.snapshot(repo_id, revision)
    if files:
        wanted = set(files)
        missing = sorted(wanted - {f.path for f in snapshot.files})
        if missing:
            raise InvalidInputError(f"{repo_id}@{snapshot.commit[:10]} has no file "
                                    + ", ".join(missing[:5]))
        files = [f for f in snapshot.files if f.path in wanted]
    else:
        files = snapshot.select(include, exclude)
    if not files:
        raise InvalidInputError(
            f"No file of {repo_id}@{snapshot.commit[:10]} matches the include/exclude patterns. "
            f"It has: {', '.join(f.path for f in snapshot.files[:10])}")
    ggufs = [f.path for f in files if f.path.lower().endswith(".gguf")]
    if len(ggufs) > 1 and not any(f.path in ("config.json", "adapter_config.json") for f in files):
        raise InvalidInputError(
            f"{len(ggufs)} GGUF files are selected ({', '.join(ggufs[:3])}…). Each download "
            "makes one model: choose one GGUF file, e.g. --include '*Q4_K_M.gguf'.")
    files, left_out = _pickle_policy(files, allow_pickle, repo_id)
    if left_out:
        yield Log(f"left out pickle files {', '.join(left_out[:5])} (the safetensors weights "
                  "are downloaded instead; --allow-pickle fetches them too)", level="warning")
    if all(f.sha256 for f in files):
        existing = ctx.catalog.find_by_digest(content_digest((f.path, f.sha256) for f in files))
        if existing is not None:
            raise DuplicateArtifactError(
                f"These files are already in the catalog as {existing.ref} (artifact "
                f"#{existing.id}); nothing was downloaded.", existing_id=existing.id)
    folder = download_folder(ctx.home, download_key(client.endpoint, repo_id, snapshot.commit))
    where = [local_paths(folder, f) for f in files]  # every name checked before any write
    _write_manifest(folder, client, snapshot, files, include, exclude, name)
    total = sum(f.size or 0 for f in files)
    on_disk = sum(final.stat().st_size if final.exists() else
                  part.stat().st_size if part.exists() else 0 for final, part in where)
    _free_space_check(folder, total - on_disk)
    yield Log(f"{repo_id}@{snapshot.commit[:10]}: {len(files)} files, {total / 1e6:.1f} MB"
              + (f", {on_disk / 1e6:.1f} MB already here" if on_disk else ""))
    counter = [0]
    started = time.monotonic()
    transfers = [(_Transfer(client, snapshot, folder, proxy, counter, total, i, len(files)), f)
                 for i, f in enumerate(files)]
    yield from _run_transfers(transfers, PARALLEL_FILES)
    fetched = sum(t.fetched for t, _ in transfers)
    hashes = {f.path: t.sha256 for t, f in transfers if t.sha256}
    seconds = max(time.monotonic() - started, 1e-9)
    yield Progress(total, total, "bytes", "verified")
    yield Log(f"fetched {fetched:,} bytes in {seconds:.2f} s ({fetched / seconds / 1e6:.0f} MB/s)")
    yield from _register(ctx, client, snapshot, folder, files, name, fetched, seconds, hashes,
                         allow_pickle)


def _register(ctx: JobContext, client: HubClient, snapshot: RepoSnapshot, folder: Path,
              files: Sequence[RemoteFile], name: str | None, fetched: int,
              seconds: float, hashes: dict[str, str], allow_pickle: bool) -> Iterator[Event]:
    from llmops_desktop.importer import ImportSource, import_model, inspect_source

    (folder / MANIFEST).rename(ctx.staging_dir / MANIFEST)  # keep it out of the artifact
    ggufs = [f.path for f in files if f.path.lower().endswith(".gguf")]
    has_config = any(f.path in ("config.json", "adapter_config.json") for f in files)
    single = len(ggufs) == 1 and not has_config
    target = local_paths(folder, next(f for f in files if f.path == ggufs[0]))[0] \
        if single else folder
    if single:  # the artifact holds the .gguf alone, named by its file name
        hashes = {Path(ggufs[0]).name: hashes[ggufs[0]]} if ggufs[0] in hashes else {}
    try:
        source = inspect_source(target, name=name or snapshot.repo_id,
                                allow_pickle=allow_pickle)
    except Exception:
        (ctx.staging_dir / MANIFEST).rename(folder / MANIFEST)
        raise
    metadata = {**source.metadata, "endpoint": client.endpoint, "repo_id": snapshot.repo_id,
                "revision": snapshot.revision, "commit": snapshot.commit,
                "downloaded_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "download": summary_to_json(snapshot) | {"files": [f.path for f in files]}}
    source = ImportSource(**{**source.__dict__, "metadata": metadata,
                             "source": f"hub:{client.endpoint}/{snapshot.repo_id}@{snapshot.commit}",
                             "license": source.license or snapshot.license})
    result: dict[str, Any] = {}
    for event in import_model(ctx.catalog, source, staging=ctx.staging_dir / "import",
                              job_id=ctx.job_id, move=True, action="download",
                              known_sha256=hashes,
                              params={"repo_id": snapshot.repo_id, "revision": snapshot.revision,
                                      "endpoint": client.endpoint}):
        if isinstance(event, Result):
            result = event.data
            continue
        yield event
    shutil.rmtree(folder, ignore_errors=True)
    yield Result({**result, "commit": snapshot.commit, "fetched_bytes": fetched,
                  "download_seconds": round(seconds, 3)})


@register_task("download", DownloadRequest)
def download_task(ctx: JobContext, request: DownloadRequest) -> Iterator[Event]:
    from llmops_desktop.secrets import get_secret

    r = request.check(ctx.catalog)
    allow = ctx.settings.allow_pickle if r.allow_pickle is None else r.allow_pickle
    client = HubClient(r.endpoint or ctx.settings.hf_endpoint, get_secret(ctx.home, "hf_token"),
                       offline=ctx.settings.offline)
    socket.setdefaulttimeout(TIMEOUT_S)
    yield from download(ctx, client, r.repo_id, r.revision, r.include, r.exclude, r.name,
                        proxy=ctx.settings.proxy, files=r.files, allow_pickle=allow)
