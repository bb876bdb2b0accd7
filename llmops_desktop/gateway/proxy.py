"""Pass one request to a deployment and its answer back, streamed as it comes.

The gateway reads the usage a deployment reports: in a plain answer's ``usage``; in a
stream, from the last event, which the gateway asks for (``stream_options.include_usage``)
and drops again when the client did not ask for it. Server-sent events are passed on
whole, each as soon as it is complete.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

try:  # openai and huggingface_hub bring httpx2 (the httpx API); plain httpx works as well
    import httpx2 as httpx
except ImportError:  # pragma: no cover
    import httpx  # type: ignore[no-redef]

PASSED_RESPONSE_HEADERS = ("content-type", "retry-after", "x-request-id")


def make_client(base_url: str, internal_key: str) -> Any:
    """An HTTP client bound to one deployment, sending the gateway's own key."""
    return httpx.AsyncClient(base_url=base_url,
                             headers={"authorization": f"Bearer {internal_key}"},
                             timeout=httpx.Timeout(10.0, read=None, write=60.0),
                             limits=httpx.Limits(max_connections=256,
                                                 max_keepalive_connections=64))


CONNECTION_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                     httpx.WriteError, httpx.ConnectTimeout)


@dataclass
class Outcome:
    """What the gateway learnt from one answer."""

    status: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float | None = None
    error: str | None = None


def prepare_body(payload: dict[str, Any]) -> tuple[bytes, bool]:
    """The body to send on, and whether the gateway added the stream's usage event."""
    added = False
    if payload.get("stream") is True:
        options = payload.get("stream_options")
        if not isinstance(options, dict) or not options.get("include_usage"):
            payload = {**payload, "stream_options": {**(options if isinstance(options, dict)
                                                        else {}), "include_usage": True}}
            added = True
    return json.dumps(payload).encode(), added


def read_usage(data: Any, outcome: Outcome) -> None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if isinstance(usage, dict):
        outcome.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        outcome.completion_tokens = int(usage.get("completion_tokens") or 0)


async def open_upstream(client: Any, path: str, body: bytes) -> Any:
    request = client.build_request("POST", path, content=body,
                                   headers={"content-type": "application/json"})
    return await client.send(request, stream=True)


def response_headers(upstream: Any) -> dict[str, str]:
    return {k: upstream.headers[k] for k in PASSED_RESPONSE_HEADERS if k in upstream.headers}


async def relay_events(upstream: Any, outcome: Outcome, started: float, drop_usage: bool,
                       on_done: Callable[[Outcome], None]) -> AsyncIterator[bytes]:
    """The upstream's server-sent events, each passed on once complete; the usage event
    read (and dropped when the gateway added it). ``on_done`` runs however it ends."""
    buffer = b""
    try:
        async for chunk in upstream.aiter_raw():
            buffer += chunk
            if b"\n\n" not in buffer:
                continue
            complete, _, buffer = buffer.rpartition(b"\n\n")
            out = []
            for event in complete.split(b"\n\n"):
                if b'"usage"' in event and event.startswith(b"data: {"):
                    try:
                        data = json.loads(event[6:])
                    except ValueError:
                        data = None
                    if isinstance(data, dict) and data.get("usage"):
                        read_usage(data, outcome)
                        if drop_usage and not data.get("choices"):
                            continue
                out.append(event + b"\n\n")
            if out:
                if outcome.ttft_ms is None:
                    outcome.ttft_ms = (time.perf_counter() - started) * 1000
                yield b"".join(out)
        if buffer:
            yield buffer
    except CONNECTION_ERRORS as exc:
        outcome.error = f"the deployment stopped answering ({type(exc).__name__})"
        outcome.status = 502
    finally:
        await upstream.aclose()
        on_done(outcome)
