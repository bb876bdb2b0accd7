"""The bounded queue in front of the engine: ``slots`` run, ``max_queue`` wait, others 503.

Everything here runs on the event loop, so the check and the reservation happen with no
``await`` between them and need no lock.
"""

from __future__ import annotations

import asyncio
import math

from llmops_desktop.serving.protocol import APIError


class Admission:
    """Counts running and waiting requests; hands out engine slots in arrival order."""

    def __init__(self, slots: int, max_queue: int) -> None:
        self.slots = max(1, slots)
        self.max_queue = max(0, max_queue)
        self.running = 0
        self.waiting = 0
        self._sem = asyncio.Semaphore(self.slots)
        self._avg_latency = 1.0  # seconds; an exponential moving average

    def reserve(self) -> None:
        """Take a place in line or raise a 503 with ``Retry-After``."""
        if self.running + self.waiting >= self.slots + self.max_queue:
            retry = self.retry_after()
            raise APIError(
                503, f"The server is busy: {self.running} request(s) running and "
                     f"{self.waiting} waiting, the most it queues. Retry in {retry} s.",
                type="server_error", code="server_overloaded",
                headers={"Retry-After": str(retry)})
        self.waiting += 1

    def free(self) -> bool:
        """Whether a slot is free now (then :meth:`acquire` returns at once)."""
        return not self._sem.locked()

    async def acquire(self) -> None:
        """Wait (after :meth:`reserve`) for a free slot. Cancelling gives the place up."""
        try:
            await self._sem.acquire()
        finally:
            self.waiting -= 1
        self.running += 1

    def leave_queue(self) -> None:
        """Give up a place reserved but never waited for (the request failed before)."""
        self.waiting -= 1

    def release(self) -> None:
        self.running -= 1
        self._sem.release()

    def observe(self, latency_s: float) -> None:
        """Learn how long a request takes, for the next ``Retry-After``."""
        self._avg_latency = 0.8 * self._avg_latency + 0.2 * latency_s

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the line ahead times the usual latency."""
        ahead = (self.waiting + 1) / self.slots
        return max(1, min(60, math.ceil(ahead * self._avg_latency)))
