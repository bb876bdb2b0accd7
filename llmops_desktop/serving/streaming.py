"""One request's generation: the engine on a worker thread, read on the event loop.

The worker iterates :meth:`Engine.generate` and hands each piece to the loop with
``call_soon_threadsafe``; the loop side applies stop strings, times the first token and
counts tokens. Cancelling (client gone, stop string matched) sets the engine's cancel
flag, which it checks before computing each token, so the slot is free within one token.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from llmops_desktop.serving.engines.base import Engine, Piece, PromptTokens, SamplingParams


class StopMatcher:
    """Cuts a text stream at the first stop string, holding back what may start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self._longest = max((len(s) for s in self.stops), default=0)
        self._held = ""
        self.matched = False

    def feed(self, text: str) -> str:
        if not self.stops or self.matched:
            return "" if self.matched else text
        buf = self._held + text
        hits = [i for i in (buf.find(s) for s in self.stops) if i != -1]
        if hits:
            self.matched = True
            self._held = ""
            return buf[:min(hits)]
        keep = 0
        for k in range(min(len(buf), self._longest - 1), 0, -1):
            tail = buf[-k:]
            if any(s.startswith(tail) for s in self.stops):
                keep = k
                break
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep] if keep else buf

    def flush(self) -> str:
        out, self._held = self._held, ""
        return out


class _End:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class Generation:
    """A running generation; iterate :meth:`deltas` for text as it comes."""

    def __init__(self, engine: Engine, prompt: PromptTokens, params: SamplingParams,
                 stops: Sequence[str]) -> None:
        self.engine, self.prompt, self.params = engine, prompt, params
        self.cancel_event = threading.Event()
        self.stop = StopMatcher(stops)
        self.completion_tokens = 0
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.finish_reason: str | None = None
        self.finished = False
        self.logprobs: list[Any] = []  # one per token, from engines that report them
        self._logprobs_taken = 0
        self._queue: asyncio.Queue[Piece | _End] = asyncio.Queue()

    def start(self, executor: Executor, on_done: Callable[[], None]) -> None:
        """Run the engine on ``executor``; ``on_done`` runs on the loop when the thread is
        really finished (that is when its engine slot is free again)."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, self._work, loop)
        future.add_done_callback(lambda _f: on_done())

    def cancel(self) -> None:
        self.cancel_event.set()

    def _work(self, loop: asyncio.AbstractEventLoop) -> None:
        put = self._queue.put_nowait
        end = _End()
        try:
            for piece in self.engine.generate(self.prompt, self.params, self.cancel_event):
                if piece.tokens:  # timed as the engine makes them, not as the loop reads
                    self.last_token_at = time.perf_counter()
                    self.first_token_at = self.first_token_at or self.last_token_at
                loop.call_soon_threadsafe(put, piece)
        except BaseException as exc:  # noqa: BLE001 - reported to the request, not the loop
            end = _End(exc)
        try:
            loop.call_soon_threadsafe(put, end)
        except RuntimeError:  # the loop is closed: the server is gone
            pass

    async def deltas(self) -> AsyncIterator[str]:
        """Text as it is generated (pieces that arrived together come as one), until the
        engine stops or a stop string matches. Raises what the engine raised."""
        queue = self._queue
        while True:
            items = [await queue.get()]
            while not queue.empty():
                items.append(queue.get_nowait())
            out: list[str] = []
            end: _End | None = None
            for item in items:
                if isinstance(item, _End):
                    end = item
                    break
                logprob = getattr(item, "logprob", None)
                if logprob is not None:
                    self.logprobs.append(logprob)
                if item.tokens:
                    self.completion_tokens += item.tokens
                    if self.first_token_at is None:
                        self.first_token_at = time.perf_counter()
                out.append(self.stop.feed(item.text))
                if self.stop.matched:
                    break
            if self.stop.matched:
                self.cancel()
                self._finish("stop")
                text = "".join(out)
                if text:
                    yield text
                return
            if end is not None:
                if end.error is not None:
                    raise end.error
                out.append(self.stop.flush())
                reason = "length" if self.completion_tokens >= self.params.max_tokens else "stop"
                self._finish(reason)
            text = "".join(out)
            if text:
                yield text
            if end is not None:
                return

    def take_logprobs(self) -> list[Any]:
        """The tokens' log-probabilities that arrived since the last call."""
        fresh = self.logprobs[self._logprobs_taken:]
        self._logprobs_taken = len(self.logprobs)
        return fresh

    def _finish(self, reason: str) -> None:
        self.finish_reason = reason
        self.finished = True


def decode_timings(t_start: float, gen: Generation) -> dict[str, Any]:
    """llama.cpp server's ``timings`` for a finished generation: the prompt (from the slot
    to the first token) and the rest of the reply. ``predicted_per_second`` is the reply's
    tokens over the engine's whole time on it (the request log's figure): pieces a fast
    engine hands over together would make the tokens after the first look instantaneous."""
    first = gen.first_token_at or time.perf_counter()
    last = max(gen.last_token_at or first, first)
    n = gen.completion_tokens
    busy = last - t_start
    return {"prompt_n": len(gen.prompt), "prompt_ms": round((first - t_start) * 1000, 3),
            "predicted_n": n, "predicted_ms": round((last - first) * 1000, 3),
            "predicted_per_second": n / busy if n and busy > 0 else None}


def with_timings(event: bytes, timings: dict[str, Any]) -> bytes:
    """A server-sent ``data: {...}`` event with ``timings`` added to its object."""
    import json

    body = json.loads(event[len(b"data: "):])
    body["timings"] = timings
    return b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n"

