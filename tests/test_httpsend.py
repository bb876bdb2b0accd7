"""File bodies leave the mirror's server through sendfile: whole files and byte ranges,
the same bytes as the file, HEAD without a body, and a client that hangs up mid-way
leaves the server serving."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from llmops_desktop.httpsend import SendfileProtocol
from llmops_desktop.mirror.server import BlobResponse

SIZE = 3 * 1024 * 1024 + 123


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes each real os.sendfile call moved (a spy: the call itself is the real one)."""
    counts: list[int] = []
    real = os.sendfile

    def spy(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        n = real(out_fd, in_fd, offset, count)
        counts.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", spy)
    return counts


@pytest.fixture
def server(blob: Path) -> Iterator[tuple[str, int]]:
    async def app(scope, receive, send):  # noqa: ANN001 - ASGI
        await BlobResponse(blob, headers={"ETag": '"e"'})(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off",
                            ws="none", http=SendfileProtocol, loop="asyncio")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.started
    yield sock.getsockname()
    srv.should_exit = True
    thread.join(timeout=10)


def _get(addr: tuple[str, int], method: str = "GET", headers: dict[str, str] | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=30)
    conn.request(method, "/blob", headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def _sent_total(sent: list[int], want: int) -> int:
    """The bytes the spy counted, once the server thread has recorded its last call (the
    client can read the bytes before the server thread appends the count)."""
    deadline = time.monotonic() + 10
    while sum(sent) < want and time.monotonic() < deadline:
        time.sleep(0.01)
    return sum(sent)


def test_whole_files_and_ranges_go_out_through_sendfile(server, blob, sent):
    data = blob.read_bytes()
    status, head, body = _get(server)
    assert status == 200 and body == data and head["content-length"] == str(SIZE)
    assert _sent_total(sent, SIZE) == SIZE  # every byte of the body, none through Python
    sent.clear()
    status, head, body = _get(server, headers={"Range": "bytes=100-1123"})
    assert status == 206 and body == data[100:1124]
    assert head["content-range"] == f"bytes 100-1123/{SIZE}" and _sent_total(sent, 1024) == 1024
    status, _, body = _get(server, headers={"Range": f"bytes={SIZE - 10}-"})
    assert status == 206 and body == data[-10:]
    status, head, body = _get(server, "HEAD")
    assert status == 200 and body == b"" and head["content-length"] == str(SIZE)
    status, _, _ = _get(server, headers={"Range": f"bytes={SIZE + 5}-"})
    assert status == 416


def test_a_client_that_hangs_up_mid_file_leaves_the_server_serving(server, blob):
    conn = socket.create_connection(server)
    conn.sendall(b"GET /blob HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.recv(4096)
    conn.close()  # most of the body still to come
    status, _, body = _get(server, headers={"Range": "bytes=0-9"})
    assert status == 206 and body == blob.read_bytes()[:10]
