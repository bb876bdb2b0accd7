"""A real mirror on 127.0.0.1 wrapped in an ASGI middleware that can misbehave on purpose:
count the bytes it sends, slow down, drop the connection mid-file, flip a byte, refuse,
or lie in its listing (rename files to hostile names, and serve the bytes under them).

The mirror itself is the app's own (``llmops_desktop.mirror``); only the faults live here.
"""

from __future__ import annotations

import asyncio
import json
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
    rename: dict = field(default_factory=dict)  # real path -> the name the listing gives it


def _rename_listing(data, rename: dict) -> None:
    """Rename files in model info (``siblings``) or a tree listing (``path``), in place."""
    entries = (data.get("siblings") or []) if isinstance(data, dict) else data
    for entry in entries if isinstance(entries, list) else []:
        for key in ("rfilename", "path"):
            if isinstance(entry, dict) and entry.get(key) in rename:
                entry[key] = rename[entry[key]]


class FaultyHub:
    def __init__(self, app, faults: Faults) -> None:
        self.app, self.faults = app, faults

    async def _lie(self, scope, receive, send):
        """The mirror's listing, with ``faults.rename`` applied to its file names."""
        start: dict = {}
        body = bytearray()

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        await self.app(scope, receive, capture)
        if start.get("status") == 200:
            data = json.loads(body)
            _rename_listing(data, self.faults.rename)
            body = bytearray(json.dumps(data).encode())
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        await send({**start, "headers": [*headers, (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": bytes(body)})

    async def __call__(self, scope, receive, send):
        f = self.faults
        if f.rename and scope["type"] == "http" and scope["path"].startswith("/api/models/"):
            return await self._lie(scope, receive, send)
        is_file = scope["type"] == "http" and "/resolve/" in scope["path"] and scope["method"] == "GET"
        if not is_file:
            return await self.app(scope, receive, send)
        scope = dict(scope, extensions={})  # no zero-copy send: bodies pass through us
        head, _, tail = scope["path"].partition("/resolve/")
        rev, _, path = tail.partition("/")
        real = {listed: real for real, listed in f.rename.items()}.get(path)
        if real is not None:  # a lied-about name: serve the real file's bytes under it
            new = f"{head}/resolve/{rev}/{real}"
            scope = dict(scope, path=new, raw_path=new.encode())
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
