"""A real mirror on 127.0.0.1 wrapped in an ASGI middleware that can misbehave on purpose:
count the bytes it sends, slow down, drop the connection mid-file, flip a byte, refuse.

The mirror itself is the app's own (``llmops_desktop.mirror``); only the faults live here.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Faults:
    drop_after: int | None = None  # close the connection after this many body bytes (once)
    corrupt: bool = False  # flip one byte in the middle of every file body
    status: int | None = None  # answer every file request with this status
    bytes_per_second: float | None = None  # throttle file bodies
    sent: Counter = field(default_factory=Counter)  # body bytes sent per file path
    range_starts: list = field(default_factory=list)  # (path, first byte asked)


class FaultyHub:
    def __init__(self, app, faults: Faults) -> None:
        self.app, self.faults = app, faults

    async def __call__(self, scope, receive, send):
        f = self.faults
        is_file = scope["type"] == "http" and "/resolve/" in scope["path"] and scope["method"] == "GET"
        if not is_file:
            return await self.app(scope, receive, send)
        scope = dict(scope, extensions={})  # no zero-copy send: bodies pass through us
        path = scope["path"].split("/resolve/", 1)[1].split("/", 1)[1]
        headers = dict(scope.get("headers") or [])
        rng = headers.get(b"range", b"").decode()
        f.range_starts.append((path, int(rng[6:].split("-")[0]) if rng.startswith("bytes=") else 0))
        if f.status:
            await send({"type": "http.response.start", "status": f.status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": b'{"error": "refused"}'})
            return
        sent_here = 0

        async def faulty_send(message):
            nonlocal sent_here
            if message["type"] == "http.response.body":
                body = message.get("body", b"")
                if f.drop_after is not None and sent_here + len(body) > f.drop_after:
                    keep = max(0, f.drop_after - sent_here)
                    f.drop_after = None
                    if keep:
                        f.sent[path] += keep
                        await send({"type": "http.response.body", "body": body[:keep],
                                    "more_body": True})
                    raise ConnectionResetError("fault: dropping the connection mid-file")
                if f.corrupt and body:
                    mid = len(body) // 2
                    body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1:]
                    message = dict(message, body=body)
                if f.bytes_per_second and body:
                    await asyncio.sleep(len(body) / f.bytes_per_second)
                sent_here += len(body)
                f.sent[path] += len(body)
            await send(message)

        await self.app(scope, receive, faulty_send)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn serving an ASGI app on 127.0.0.1 in a thread; stop() joins it."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_home(home_root: Path, faults: Faults, token: str | None = None) -> ServerThread:
    from llmops_desktop.mirror.server import create_app
    from llmops_desktop.paths import Home

    return ServerThread(FaultyHub(create_app(Home.resolve(home_root), token=token), faults)).start()
