"""Pieces every HTTP server of the app shares (the team mirror, model serving):
binding with clear errors, a uvicorn server that says when it accepts connections,
and logging as the job protocol's JSON lines."""

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
from typing import IO

import uvicorn

from llmops_desktop.errors import ConflictError, InvalidInputError


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

