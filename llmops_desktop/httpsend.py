"""Zero-copy file bodies for uvicorn: the ASGI ``http.response.pathsend`` extension.

uvicorn reads a file response through Python (a worker thread reads a chunk, the event
loop writes it): every byte crosses user space twice and the server spends most of a
core on it, a core the client then lacks on a small machine. :class:`SendfileProtocol`
is uvicorn's httptools protocol offering two extensions, answered with
``loop.sendfile`` (``os.sendfile`` on the asyncio loop: page cache to socket in the
kernel):

- ``http.response.pathsend`` (ASGI): ``{"type": "http.response.pathsend", "path": P}``
  sends the whole body the response's Content-Length announced, from the start of P;
- :data:`RANGE_EXTENSION`: the same message with ``"offset"`` and ``"count"``, for one
  byte range (HTTP Range requests, resumed downloads).

Either comes after ``http.response.start`` and completes the response. An app that
does not see the extensions in ``scope["extensions"]`` (a test client, another server)
streams the body itself as usual. Serve with ``loop="asyncio"``: uvloop has no native
sendfile for transports (it would fall back to reading through Python).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PATHSEND = "http.response.pathsend"
RANGE_EXTENSION = "llmops.pathsend.range"
FALLBACK_CHUNK = 1024 * 1024

log = logging.getLogger(__name__)


class SendfileProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools) with zero-copy file bodies."""

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        scope = cycle.scope
        scope["extensions"] = {**(scope.get("extensions") or {}), PATHSEND: {},
                               RANGE_EXTENSION: {}}
        send = cycle.send

        async def send_with_files(message: Any) -> None:
            if message["type"] == PATHSEND:
                await _send_file(cycle, send, message)
            else:
                await send(message)

        cycle.send = send_with_files  # run_asgi hands the app ``self.send``
        super()._start_asgi_task(cycle, app)


async def _send_file(cycle: Any, send: Any, message: Any) -> None:
    """The body from ``message["path"]``: ``count`` bytes from ``offset`` (by default, what
    the Content-Length still expects), then the end of the response."""
    if not cycle.response_started or cycle.response_complete:
        raise RuntimeError(f"'{PATHSEND}' must follow 'http.response.start' and end the response.")
    if cycle.disconnected:
        return
    if cycle.scope["method"] == "HEAD" or cycle.chunked_encoding:
        if cycle.chunked_encoding:  # no Content-Length: read it through Python
            await _send_chunks(send, message)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    offset = int(message.get("offset", 0))
    count = int(message.get("count", cycle.expected_content_length))
    if count > cycle.expected_content_length:
        raise RuntimeError("Response content longer than Content-Length")
    if cycle.flow.write_paused:
        await cycle.flow.drain()
    sent = 0
    try:
        with open(message["path"], "rb") as fh:
            if count:
                sent = await asyncio.get_running_loop().sendfile(cycle.transport, fh, offset,
                                                                 count)
    except (ConnectionError, OSError, RuntimeError) as exc:
        if not cycle.disconnected:
            log.info("sending %s stopped: %s", message["path"], exc)
        cycle.transport.close()  # the client sees a short body, as on any broken transfer
        return
    cycle.expected_content_length -= sent
    if sent < count:  # the file shrank under us: the response cannot be completed
        log.warning("%s ended after %d of %d bytes", message["path"], sent, count)
        cycle.transport.close()
        return
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_chunks(send: Any, message: Any) -> None:
    offset, count = int(message.get("offset", 0)), message.get("count")
    left = os.path.getsize(message["path"]) - offset if count is None else int(count)
    loop = asyncio.get_running_loop()
    with open(message["path"], "rb") as fh:
        fh.seek(offset)
        while left > 0:
            chunk = await loop.run_in_executor(None, fh.read, min(FALLBACK_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
