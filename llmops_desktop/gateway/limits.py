"""Requests and tokens per minute, per key: a sliding window of the last 60 seconds.

A request is counted when it is let through; its tokens when its answer is done (the
gateway cannot know them before). Over either limit, :meth:`RateLimits.check` says how
many seconds until the window has room again, for the 429's ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


class RateLimits:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._requests: dict[str, deque[float]] = {}
        self._tokens: dict[str, deque[tuple[float, int]]] = {}

    def _trim(self, name: str, now: float) -> None:
        start = now - WINDOW_S
        requests = self._requests.setdefault(name, deque())
        while requests and requests[0] <= start:
            requests.popleft()
        tokens = self._tokens.setdefault(name, deque())
        while tokens and tokens[0][0] <= start:
            tokens.popleft()

    def check(self, name: str, rpm: int | None, tpm: int | None) -> tuple[str, int] | None:
        """None when a request of key ``name`` may go now; else (which limit, seconds to
        wait). A request that may go is counted."""
        now = self._clock()
        self._trim(name, now)
        requests, tokens = self._requests[name], self._tokens[name]
        if rpm is not None and len(requests) >= rpm:
            wait = requests[len(requests) - rpm] + WINDOW_S - now
            return f"{rpm} requests per minute", max(1, math.ceil(wait))
        if tpm is not None and sum(n for _, n in tokens) >= tpm:
            used, wait = sum(n for _, n in tokens), 0.0
            for t, n in tokens:  # wait until enough of them have left the window
                used -= n
                wait = t + WINDOW_S - now
                if used < tpm:
                    break
            return f"{tpm} tokens per minute", max(1, math.ceil(wait))
        requests.append(now)
        return None

    def add_tokens(self, name: str, count: int) -> None:
        if count > 0:
            self._tokens.setdefault(name, deque()).append((self._clock(), count))
