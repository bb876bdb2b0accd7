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
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.errors import InvalidInputError, NetworkError

MIN_RATE_TOKENS = 8  # a client-side tokens/s needs this many tokens after the first…
MIN_RATE_WINDOW_S = 0.2  # …arriving over at least this long
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"


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
    server_tokens_per_s: float | None = None  # the server's own decode timing, if it sent one
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {name, arguments} each
    response_id: str = ""  # the server's id of the reply (a rating links to its request row)

    @property
    def tokens_per_s(self) -> float | None:
        """Decoding speed: the server's own timing when it sends one (``timings``, as
        llama.cpp's server does), else measured here after the first token, but only over
        a window long enough to mean something (pieces that arrive together would give
        millions of tokens per second)."""
        if self.server_tokens_per_s is not None:
            return self.server_tokens_per_s
        tokens = self.completion_tokens if self.completion_tokens is not None else self.chunks
        if self.ttft_ms is None or tokens - 1 < MIN_RATE_TOKENS or self.chunks < MIN_RATE_TOKENS:
            return None
        seconds = ((self.last_token_ms or self.total_ms) - self.ttft_ms) / 1000
        return (tokens - 1) / seconds if seconds >= MIN_RATE_WINDOW_S else None


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
                timeout: float = 300.0, path: str = CHAT_PATH) -> Iterator[str]:
    """POST ``body`` to ``{url}/v1/chat/completions`` (or ``path``: ``/v1/completions``
    for plain completion) with streaming, yield content pieces.

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
            conn.request("POST", base + path, payload, headers)
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
            if not stats.response_id and isinstance(chunk.get("id"), str):
                stats.response_id = chunk["id"]
            usage = chunk.get("usage")
            if usage:
                stats.prompt_tokens = usage.get("prompt_tokens")
                stats.completion_tokens = usage.get("completion_tokens")
            timings = chunk.get("timings")
            if isinstance(timings, dict) and timings.get("predicted_per_second"):
                stats.server_tokens_per_s = float(timings["predicted_per_second"])
            for choice in chunk.get("choices") or []:
                if choice.get("finish_reason"):
                    stats.finish_reason = choice["finish_reason"]
                delta = choice.get("delta") or {}
                for call in delta.get("tool_calls") or []:  # streamed as OpenAI's deltas
                    index = int(call.get("index", len(stats.tool_calls)))
                    while len(stats.tool_calls) <= index:
                        stats.tool_calls.append({"name": "", "arguments": ""})
                    fn = call.get("function") or {}
                    stats.tool_calls[index]["name"] += fn.get("name") or ""
                    stats.tool_calls[index]["arguments"] += fn.get("arguments") or ""
                text = delta.get("content") or choice.get("text")
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
