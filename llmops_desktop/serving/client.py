"""A small streaming client for our OpenAI-compatible servers (the playground uses it).

Standard library only (``http.client``): the window talks to a deployment without pulling
in an HTTP stack. :func:`stream_chat` yields the reply's pieces as they arrive and measures
what the user sees: time to the first token and decoding speed, from the client's side.
Setting ``cancel`` stops reading and closes the connection, which stops the server's
generation too (it notices the client left).
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from llmops_desktop.errors import InvalidInputError, NetworkError


@dataclass
class ReplyStats:
    """What one streamed reply took, measured by the client."""

    ttft_ms: float | None = None
    last_token_ms: float | None = None
    total_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reason: str = ""
    chunks: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        """Decoding speed after the first token (the prompt's processing is in TTFT)."""
        tokens = self.completion_tokens if self.completion_tokens is not None else self.chunks
        if self.ttft_ms is None or tokens < 2:
            return None
        seconds = ((self.last_token_ms or self.total_ms) - self.ttft_ms) / 1000
        return (tokens - 1) / seconds if seconds > 0 else None


class Cancel:
    """Stops a streamed reply from another thread at once: it closes the connection, so
    the reader wakes up even while the server is between tokens."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        with self._lock:
            self._event.set()
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _attach(self, conn: http.client.HTTPConnection | None) -> None:
        with self._lock:
            self._conn = conn


def _connection(url: str, timeout: float) -> tuple[http.client.HTTPConnection, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInputError(f"Not a server address: {url!r} (expected http://HOST:PORT).")
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return cls(parts.hostname, parts.port, timeout=timeout), parts.path.rstrip("/")


def _error_message(status: int, raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode("utf-8", "replace")[:300] or f"HTTP {status}"


def stream_chat(url: str, body: dict[str, Any], *, api_key: str = "",
                cancel: Cancel | None = None, stats: ReplyStats | None = None,
                timeout: float = 300.0) -> Iterator[str]:
    """POST ``body`` to ``{url}/v1/chat/completions`` with streaming, yield content pieces.

    ``stats`` is filled in as the reply arrives (usage comes in the last chunk). Raises
    :class:`NetworkError` when the server cannot be reached or answers with an error.
    """
    stats = stats if stats is not None else ReplyStats()
    cancel = cancel or Cancel()
    conn, base = _connection(url, timeout)
    payload = json.dumps({**body, "stream": True,
                          "stream_options": {"include_usage": True}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    started = time.perf_counter()
    try:
        try:
            conn.connect()
            cancel._attach(conn)
            conn.request("POST", base + "/v1/chat/completions", payload, headers)
            resp = conn.getresponse()
        except OSError as exc:
            if cancel.is_set():
                stats.finish_reason = "cancelled"
                return
            raise NetworkError(f"Cannot reach {url}: {exc.strerror or exc}. Is the deployment "
                               "still running?") from None
        if resp.status != 200:
            raise NetworkError(f"The server answered {resp.status}: "
                               f"{_error_message(resp.status, resp.read())}")
        while True:
            try:
                raw = resp.readline()
            except (OSError, ValueError, http.client.HTTPException):
                if cancel.is_set():
                    raw = b""
                else:
                    raise NetworkError(f"The connection to {url} broke mid-reply.") from None
            if cancel.is_set():
                stats.finish_reason = "cancelled"
                break
            if not raw:
                break
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            chunk = json.loads(data)
            if "error" in chunk:
                raise NetworkError(f"The server failed mid-reply: "
                                   f"{chunk['error'].get('message', chunk['error'])}")
            usage = chunk.get("usage")
            if usage:
                stats.prompt_tokens = usage.get("prompt_tokens")
                stats.completion_tokens = usage.get("completion_tokens")
            for choice in chunk.get("choices") or []:
                if choice.get("finish_reason"):
                    stats.finish_reason = choice["finish_reason"]
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if stats.ttft_ms is None:
                        stats.ttft_ms = (time.perf_counter() - started) * 1000
                    stats.chunks += 1
                    stats.last_token_ms = (time.perf_counter() - started) * 1000
                    yield text
    finally:
        cancel._attach(None)
        stats.total_ms = (time.perf_counter() - started) * 1000
        conn.close()
