"""The mirror's HTTP side: the part of the Hugging Face hub API its clients use.

``huggingface_hub`` (``snapshot_download``, ``hf download``), transformers'
``from_pretrained`` and our own downloader talk to it with ``HF_ENDPOINT``
pointed here. The endpoints, headers and error codes follow
``shared/notes/hf-hub-protocol.md``: no redirects, never a Xet header, an
``X-Error-Code`` on every hub error. Paths are split into segments before
percent-decoding, so a revision like ``refs%2Fpr%2F1`` or a subpath with
``%2F`` stays one segment.
"""

from __future__ import annotations

import hmac
import logging
import time
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import LLMOpsError, UnsafePathError
from llmops_desktop.httpsend import PATHSEND, RANGE_EXTENSION
from llmops_desktop.httpserve import BodyLimit
from llmops_desktop.mirror.repos import (
    MAIN,
    EntryNotFoundError,
    HubRepos,
    MirrorError,
    RepoNotFoundError,
)
from llmops_desktop.paths import Home
from llmops_desktop.safepath import check_relative_name

log = logging.getLogger("llmops_desktop.mirror")

PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
TOKEN_HOW = ("Pass it as your Hugging Face token: HF_TOKEN=<token> in the environment, "
             "token=... in Python, or --token on the hf command line.")
NO_TOKEN = "This mirror needs a token; ask its owner for it. " + TOKEN_HOW
BAD_TOKEN = "Invalid credentials in Authorization header"  # the hub's words for a wrong token


class BlobResponse(FileResponse):
    """Starlette's file response (HEAD, Range, If-Range), its body sent without copying.

    Served by :class:`~llmops_desktop.httpsend.SendfileProtocol`, a whole file goes out
    as ``http.response.pathsend`` (Starlette's own) and one byte range as the same
    message with an offset and a count: the kernel moves the bytes from the page cache
    to the socket. Elsewhere (a test client) the file is read in 1 MiB chunks.
    """

    chunk_size = 1024 * 1024
    _ranges_sent = False  # the server takes ranged pathsend messages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._ranges_sent = RANGE_EXTENSION in (scope.get("extensions") or {})
        await super().__call__(scope, receive, send)

    async def _handle_single_range(self, send: Send, start: int, end: int, file_size: int,
                                   send_header_only: bool) -> None:
        if not self._ranges_sent or send_header_only:
            await super()._handle_single_range(send, start, end, file_size, send_header_only)
            return
        headers = MutableHeaders(raw=list(self.raw_headers))
        headers["content-range"] = f"bytes {start}-{end - 1}/{file_size}"
        headers["content-length"] = str(end - start)
        await send({"type": "http.response.start", "status": 206, "headers": headers.raw})
        await send({"type": PATHSEND, "path": str(self.path), "offset": start,
                    "count": end - start})


def _header_text(text: str) -> str:
    """A message that may go in an HTTP header: one line of printable ASCII."""
    clean = text.encode("ascii", "replace").decode("ascii")
    return " ".join(clean.split())[:1000]


def error_response(status: int, message: str, *, code: str | None = None,
                   commit: str | None = None, headers: dict[str, str] | None = None) -> Response:
    """A hub-style error: JSON ``{"error": ...}``, the message also in ``X-Error-Message``."""
    head = {"X-Error-Message": _header_text(message), **(headers or {})}
    if code:
        head["X-Error-Code"] = code
    if commit:
        head["X-Repo-Commit"] = commit
    return JSONResponse({"error": message}, status_code=status, headers=head)


def _mirror_error(exc: MirrorError) -> Response:
    return error_response(exc.status, str(exc), code=exc.error_code, commit=exc.commit)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes")


def _segments(scope: Scope) -> list[str]:
    """The path's segments, each percent-decoded only after splitting on raw slashes."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    return [unquote_to_bytes(s).decode("utf-8", "replace") for s in raw.split(b"/")[1:]]


# ---- endpoints --------------------------------------------------------------------------------

def _list_models(repos: HubRepos, request: Request) -> Response:
    q = request.query_params
    try:
        limit = min(max(int(q.get("limit") or PAGE_SIZE), 1), MAX_PAGE_SIZE)
        offset = max(int(q.get("offset") or 0), 0)
    except ValueError:
        return error_response(400, "limit and offset must be whole numbers.")
    sort = q.get("sort") or "id"
    direction = q.get("direction")
    descending = direction == "-1" or (sort != "id" and direction != "1")
    found = repos.search(search=q.get("search") or "", author=q.get("author") or "",
                         tags=q.getlist("filter"), sort=sort, descending=descending)
    full = _flag(q.get("full"))
    page = found[offset:offset + limit]
    body = [(repos.with_files(r) if full else r).model_info(siblings=full) for r in page]
    headers = {}
    if offset + limit < len(found):
        next_url = request.url.include_query_params(offset=offset + limit, limit=limit)
        headers["Link"] = f'<{next_url}>; rel="next"'
    return JSONResponse(body, headers=headers)


def _model_info(repos: HubRepos, repo_id: str, rev: str, request: Request) -> Response:
    revision = repos.revision(repo_id, rev)
    return JSONResponse(revision.model_info(blobs=_flag(request.query_params.get("blobs"))))


def _tree(repos: HubRepos, repo_id: str, rev: str, path: str, request: Request) -> Response:
    revision = repos.revision(repo_id, rev)
    return JSONResponse(revision.tree(path, recursive=_flag(request.query_params.get("recursive"))))


def _resolve(repos: HubRepos, repo_id: str, rev: str, path: str) -> Response:
    """A file of a revision: ``path`` must equal one of its catalog file names exactly, and
    is checked like any name from outside (no ``..``, ``/abs``, backslash or NUL)."""
    revision = repos.revision(repo_id, rev)
    try:
        check_relative_name(path, what="file path")
    except UnsafePathError as exc:
        raise EntryNotFoundError(f"{exc} It is not a file of {repo_id}.",
                                 commit=revision.sha) from None
    f = revision.checked_file(path)
    return BlobResponse(f.local_path, headers={"X-Repo-Commit": revision.sha, "ETag": f.etag})


def _route(repos: HubRepos, segs: list[str], request: Request) -> Response:
    if segs[:2] == ["api", "models"]:
        rest = segs[2:]
        if rest in ([], [""]):
            return _list_models(repos, request)
        if len(rest) < 2 or not repos.exists(f"{rest[0]}/{rest[1]}"):
            repo_id = "/".join(rest[:2])
            raise RepoNotFoundError(f"Repository {repo_id} is not on this mirror. "
                                    "GET /api/models lists the models it serves.")
        repo_id, tail = f"{rest[0]}/{rest[1]}", rest[2:]
        if tail in ([], [""]):
            return _model_info(repos, repo_id, MAIN, request)
        if tail[0] == "revision" and len(tail) == 2:
            return _model_info(repos, repo_id, tail[1], request)
        if tail[0] == "tree" and len(tail) >= 2:
            return _tree(repos, repo_id, tail[1], "/".join(tail[2:]), request)
        if tail == ["refs"]:
            return JSONResponse(repos.refs(repo_id))
    elif (segs[:1] == ["api"] and segs[1:2] in (["datasets"], ["spaces"])) or (
            segs[:1] in (["datasets"], ["spaces"]) and segs[3:4] == ["resolve"]):
        raise RepoNotFoundError("This mirror serves models only, not datasets or spaces.")
    elif len(segs) >= 4 and segs[2] == "resolve":
        return _resolve(repos, f"{segs[0]}/{segs[1]}", segs[3], "/".join(segs[4:]))
    return error_response(404, f"{request.url.path} is not an endpoint of this mirror.")


# ---- the app ----------------------------------------------------------------------------------

class _Gate:
    """Checks the token (when there is one) and logs every request; plain ASGI, so
    file bodies stream through untouched."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._token = token.encode("utf-8") if token else None

    def _authorized(self, scope: Scope) -> bool:
        if self._token is None:
            return True
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    credentials.strip(), self._token)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status, sent, length = 0, 0, 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent, length
            if message["type"] == "http.response.start":
                status = message["status"]
                length = next((int(v) for n, v in message.get("headers", ())
                               if n.lower() == b"content-length" and v.isdigit()), 0)
            elif message["type"] == "http.response.body" and scope["method"] != "HEAD":
                sent += len(message.get("body", b""))
            elif message["type"] == PATHSEND:  # the body, sent by the server from the file
                sent += int(message.get("count", length - sent))
            await send(message)

        try:
            if self._authorized(scope):
                await self.app(scope, receive, counting_send)
            else:
                has_header = any(n == b"authorization" for n, _ in scope.get("headers", []))
                response = error_response(
                    401, f"{BAD_TOKEN}: that is not this mirror's token. {TOKEN_HOW}"
                    if has_header else NO_TOKEN,
                    headers={"WWW-Authenticate": 'Bearer realm="llmops-mirror"',
                             **({"X-Error-Message": BAD_TOKEN} if has_header else {})})
                await response(scope, receive, counting_send)
        finally:
            client = (scope.get("client") or ("-",))[0]
            log.info("%s %s %s %d %d B %.0f ms", client, scope["method"], scope["path"],
                     status, sent, (time.monotonic() - started) * 1000)


def create_app(home: Home, token: str | None = None) -> FastAPI:
    """The mirror as an ASGI app serving ``home``'s READY artifacts; ``token`` guards it."""
    app = FastAPI(title="LLMOps Desktop mirror", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.api_route("/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
    def hub(request: Request) -> Response:  # sync: runs on the thread pool, one catalog each
        return _answer(home, request)

    app.add_middleware(_Gate, token=token)
    app.add_middleware(BodyLimit)  # outermost: no path reads or drains a body past the limit
    return app


def _answer(home: Home, request: Request) -> Response:
    try:
        with Catalog(home) as catalog:
            return _route(HubRepos(catalog), _segments(request.scope), request)
    except MirrorError as exc:
        return _mirror_error(exc)
    except LLMOpsError as exc:  # e.g. the catalog is unusable
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(500, str(exc))
    except Exception:  # noqa: BLE001 - a bad request must never take the mirror down
        log.exception("%s %s failed", request.method, request.url.path)
        return error_response(500, "The mirror hit an internal error; its log has the details.")

