"""Pass one request to a deployment and its answer back, streamed as it comes.

The gateway reads the usage a deployment reports: in a plain answer's ``usage``; in an
OpenAI stream, from the last event, which the gateway asks for
(``stream_options.include_usage``) and drops again when the client did not ask for it; in
an Anthropic Messages stream, from ``message_start`` and ``message_delta``. Server-sent
events are passed on whole, each as soon as it is complete.
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


def prepare_body(payload: dict[str, Any], *, usage_event: bool = True) -> tuple[bytes, bool]:
    """The body to send on, and whether the gateway added the stream's usage event (an
    OpenAI stream's; ``usage_event=False`` for the Messages API, whose stream has usage)."""
    added = False
    if usage_event and payload.get("stream") is True:
        options = payload.get("stream_options")
        if not isinstance(options, dict) or not options.get("include_usage"):
            payload = {**payload, "stream_options": {**(options if isinstance(options, dict)
                                                        else {}), "include_usage": True}}
            added = True
    return json.dumps(payload).encode(), added


def read_usage(data: Any, outcome: Outcome) -> None:
    """Token counts from an answer or event: OpenAI's ``usage`` (prompt/completion tokens)
    or Anthropic's (input/output tokens: ``message.usage`` in ``message_start``, the output
    count in ``message_delta``); a count the object does not carry is left as it was."""
    if not isinstance(data, dict):
        return
    usage = data.get("usage")
    if not isinstance(usage, dict) and isinstance(data.get("message"), dict):
        usage = data["message"].get("usage")
    if not isinstance(usage, dict):
        return
    for attr, names in (("prompt_tokens", ("prompt_tokens", "input_tokens")),
                        ("completion_tokens", ("completion_tokens", "output_tokens"))):
        for name in names:
            value = usage.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                setattr(outcome, attr, value)
                break


def _event_data(event: bytes) -> Any:
    """The JSON of one server-sent event's ``data:`` line (after an ``event:`` line, in
    Anthropic's streams), or None."""
    at = 0 if event.startswith(b"data: {") else event.find(b"\ndata: {") + 1
    if at == 0 and not event.startswith(b"data: {"):
        return None
    line = event[at + 6:].split(b"\n", 1)[0]
    try:
        return json.loads(line)
    except ValueError:
        return None


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
                if b'"usage"' in event:
                    data = _event_data(event)
                    if isinstance(data, dict):
                        read_usage(data, outcome)
                        if drop_usage and data.get("usage") and not data.get("choices"):
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
