"""Pieces every HTTP server of the app shares (the team mirror, model serving):
binding with clear errors, a uvicorn server that says when it accepts connections,
request bodies read no further than a limit (with or without a Content-Length), and
logging as the job protocol's JSON lines."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

import uvicorn

from llmops_desktop.errors import ConflictError, InvalidInputError

MAX_BODY = 16 * 1024 * 1024  # bytes of a request body a server reads, at most


def bind_socket(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise InvalidInputError(f"Port {port} is not a TCP port; use 1-65535 (0 picks a free one).")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidInputError(f"Cannot listen on {host!r}: {exc.strerror}. Give an IP "
                                "address of this machine, e.g. 127.0.0.1 or 0.0.0.0.") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConflictError(
                f"Port {port} on {host} is in use by another program (another server of this app?). Stop "
                "it, or pick another port with --port.") from None
        raise InvalidInputError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}). Give "
                                "an address of this machine, e.g. 127.0.0.1 or 0.0.0.0.") from None
    sock.set_inheritable(False)
    return sock


def socket_url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = host.strip("[]")
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


class BodyTooLarge(Exception):
    """A request body is (or says it is) longer than the server reads."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than {_mib(limit)}; send a smaller one.")
        self.limit = limit


def _mib(n: int) -> str:
    return f"{n // 2**20} MiB" if n >= 2**20 and n % 2**20 == 0 else f"{n} bytes"


async def read_body(request: Any, limit: int = MAX_BODY) -> bytes:
    """``request``'s body (a Starlette request), Content-Length or chunked alike.

    A declared length over ``limit`` raises :class:`BodyTooLarge` before anything is read;
    a body without one is read as it comes and raises as soon as it passes ``limit``, so
    no more than ``limit`` bytes (plus one chunk) are ever held. Answer with
    ``Connection: close`` then: the server stops reading instead of draining the rest."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


class BodyLimit:
    """ASGI middleware: no request body is read past ``limit`` bytes, on any path.

    A Content-Length over the limit is answered 413 at once, before the app runs and
    before a byte of the body is read. A body without one (``Transfer-Encoding:
    chunked``) is passed on as it comes; once it passes the limit, receiving raises
    :class:`BodyTooLarge`, which an app may answer itself (else this answers 413). Any
    answer sent before the whole body was read says ``Connection: close``, so uvicorn
    closes the connection instead of reading the rest of the body only to drop it. The
    413 is JSON in OpenAI's error shape (``{"error": {"message", "type", "param",
    "code"}}``), its message also in ``X-Error-Message`` for the mirror's hub clients."""

    def __init__(self, app: Any, limit: int = MAX_BODY) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.limit:
            await self._too_large(send)
            return
        finished = declared in (b"", b"0") and b"transfer-encoding" not in headers
        size, started = 0, False

        async def limited_receive() -> dict[str, Any]:
            nonlocal finished, size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > self.limit:
                    raise BodyTooLarge(self.limit)
                finished = finished or not message.get("more_body", False)
            elif message["type"] == "http.disconnect":
                finished = True
            return message

        async def closing_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not finished:
                    kept = [(k, v) for k, v in message.get("headers", [])
                            if k.lower() != b"connection"]
                    message = {**message, "headers": [*kept, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, closing_send)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(send)

    async def _too_large(self, send: Any) -> None:
        message = str(BodyTooLarge(self.limit))
        body = json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                     "param": None, "code": "request_too_large"}}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"x-error-message", message.encode()),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


class NotifyingServer(uvicorn.Server):
    """uvicorn, telling us when the socket accepts connections."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_started()


def not_a_shutdown_cancel(record: logging.LogRecord) -> bool:
    """uvicorn logs a traceback for each response it cancels on shutdown; that is expected."""
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


class JsonLineHandler(logging.Handler):
    """Writes records as the job protocol's ``log`` events, one JSON object per line."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = {"WARNING": "warning", "ERROR": "error", "CRITICAL": "error"}.get(
                record.levelname, "info")
            line = json.dumps({"type": "log", "message": self.format(record), "level": level})
            self.acquire()
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            finally:
                self.release()
        except BrokenPipeError:
            # The window that read us has closed and left this server running: carry on
            # serving and send what we would say nowhere (the request log still goes to
            # the catalog).
            self.stream = orphan_stream(self.stream)
        except Exception:  # noqa: BLE001 - logging must not break a request
            self.handleError(record)


def orphan_stream(stream: IO[str]) -> IO[str]:
    """Point ``stream``'s file descriptor at /dev/null (its reader is gone) and return it."""
    try:
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
        return stream
    except (OSError, ValueError):
        return open(os.devnull, "w")


def log_as_json_lines(stream: IO[str]) -> None:
    """Send the app's log (and uvicorn's warnings) to ``stream`` as JSON ``log`` lines, as a
    server child process reports to its parent."""
    handler = JsonLineHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name, level in (("llmops_desktop", logging.INFO), ("uvicorn.error", logging.WARNING)):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


class _Stop(Exception):
    """Raised by our SIGTERM handler: uvicorn re-raises the signal after its shutdown."""


def run_until_stopped(server: uvicorn.Server, sock: socket.socket, log: logging.Logger,
                      on_stopped: Callable[[str | None], None]) -> None:
    """Serve on ``sock`` until Ctrl-C or SIGTERM, then ``on_stopped(error or None)``.

    When nothing handles ``log`` (the plain CLI), its lines go to stderr meanwhile."""
    console = None
    if not log.hasHandlers():
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(console)
    level = log.level
    if not log.isEnabledFor(logging.INFO):
        log.setLevel(logging.INFO)
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if in_main else None

    def _stop(signum: int, frame: object) -> None:
        raise _Stop

    if in_main:
        signal.signal(signal.SIGTERM, _stop)
    error: str | None = None
    try:
        server.run(sockets=[sock])
    except (KeyboardInterrupt, _Stop):
        pass  # uvicorn already shut down gracefully; this is its re-raised signal
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        sock.close()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
        try:
            on_stopped(error)
        finally:
            if console is not None:
                log.removeHandler(console)
            log.setLevel(level)

