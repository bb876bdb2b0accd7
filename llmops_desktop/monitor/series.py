"""Series names, their labels and units, and the in-memory ring buffers that hold them.

A series is one number over time, named by dotted parts: ``sys.cpu``, ``sys.core.3``,
``gpu.0.util``, ``job.12.rss``, ``dep.5.lat_p95``. The last part says what it measures
(:data:`METRICS` gives its label and unit); the parts before say of what. The sampler
writes every sample into a :class:`SeriesStore` (one numpy ring per series); the charts
read windows out of it on their own timer, so neither ever waits for the other.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Metric:
    label: str
    unit: str
    persist: bool = True  # downsampled into the catalog's history


METRICS: dict[str, Metric] = {
    # system
    "cpu": Metric("CPU", "%"),
    "core": Metric("CPU core", "%", persist=False),
    "ram_pct": Metric("RAM", "%"),
    "ram_used": Metric("RAM used", "B"),
    "swap_pct": Metric("Swap", "%"),
    "disk_read": Metric("Disk read", "B/s"),
    "disk_write": Metric("Disk write", "B/s"),
    "net_rx": Metric("Network in", "B/s"),
    "net_tx": Metric("Network out", "B/s"),
    # a GPU
    "util": Metric("GPU utilisation", "%"),
    "mem_pct": Metric("GPU memory", "%"),
    "mem_used": Metric("GPU memory used", "B"),
    "temp": Metric("Temperature", "°C"),
    "power": Metric("Power draw", "W"),
    "power_limit": Metric("Power limit", "W", persist=False),
    "sm_clock": Metric("SM clock", "MHz"),
    "our_mem": Metric("Our processes' GPU memory", "B"),
    # a job's or a server's process
    "proc_cpu": Metric("Process CPU", "%"),
    "rss": Metric("Process memory (RSS)", "B"),
    # a deployment
    "req_rate": Metric("Requests", "req/s"),
    "ttft_p50": Metric("TTFT p50", "ms"),
    "ttft_p95": Metric("TTFT p95", "ms"),
    "lat_p50": Metric("Latency p50", "ms"),
    "lat_p95": Metric("Latency p95", "ms"),
    "tok_s": Metric("Tokens/s", "tok/s"),
    "errors": Metric("Errors", "err/s"),
    "error_rate": Metric("Error rate", "%"),
    "server_error_rate": Metric("Server error rate", "%"),
    "queue": Metric("Queue depth", "requests"),
    "running": Metric("Generating", "requests"),
}


def series_key(*parts: object) -> str:
    return ".".join(str(p) for p in parts)


def metric_of(key: str) -> Metric:
    parts = key.split(".")
    name = parts[-2] if parts[-1].isdigit() and len(parts) > 1 else parts[-1]  # sys.core.3
    return METRICS.get(name, Metric(key, ""))


def describe(key: str, subject: str = "") -> str:
    """A label for a series: its metric's label, with the subject when there is one."""
    metric = metric_of(key)
    if key.startswith("sys.core."):
        return f"CPU core {key.rsplit('.', 1)[-1]}"
    return f"{subject} {metric.label}".strip() if subject else metric.label


class RingBuffer:
    """The newest ``capacity`` (time, value) points of one series, in numpy arrays."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(2, int(capacity))
        self._t = np.full(self.capacity, np.nan)
        self._v = np.full(self.capacity, np.nan)
        self._n = 0  # points ever written

    def __len__(self) -> int:
        return min(self._n, self.capacity)

    def append(self, t: float, value: float) -> None:
        i = self._n % self.capacity
        self._t[i] = t
        self._v[i] = value
        self._n += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of every point held, oldest first."""
        if self._n <= self.capacity:
            return self._t[:self._n].copy(), self._v[:self._n].copy()
        i = self._n % self.capacity
        return (np.concatenate((self._t[i:], self._t[:i])),
                np.concatenate((self._v[i:], self._v[:i])))

    def window(self, t0: float, t1: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        t, v = self.arrays()
        lo, hi = np.searchsorted(t, t0, "left"), np.searchsorted(t, t1, "right")
        return t[lo:hi], v[lo:hi]

    def last(self) -> tuple[float, float] | None:
        if self._n == 0:
            return None
        i = (self._n - 1) % self.capacity
        return float(self._t[i]), float(self._v[i])

    def first_time(self) -> float | None:
        if self._n == 0:
            return None
        return float(self._t[0 if self._n <= self.capacity else self._n % self.capacity])


class SeriesStore:
    """Every series' ring, shared by the sampler thread (writer) and readers (copies out).

    ``version`` grows with each sample, so a reader can tell whether anything is new.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rings: dict[str, RingBuffer] = {}
        self._lock = threading.Lock()
        self.version = 0

    def add(self, t: float, values: dict[str, float]) -> None:
        with self._lock:
            for key, value in values.items():
                ring = self._rings.get(key)
                if ring is None:
                    ring = self._rings[key] = RingBuffer(self.capacity)
                ring.append(t, value)
            self.version += 1

    def keys(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted(k for k in self._rings if k.startswith(prefix))

    def window(self, key: str, t0: float, t1: float = math.inf) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            ring = self._rings.get(key)
            if ring is None:
                return np.empty(0), np.empty(0)
            return ring.window(t0, t1)

    def windows(self, keys: Iterable[str], t0: float, t1: float = math.inf
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        with self._lock:
            return {k: self._rings[k].window(t0, t1) for k in keys if k in self._rings}

    def last(self, key: str) -> float | None:
        with self._lock:
            ring = self._rings.get(key)
            point = ring.last() if ring is not None else None
        return None if point is None else point[1]

    def first_time(self, key: str) -> float | None:
        with self._lock:
            ring = self._rings.get(key)
            return ring.first_time() if ring is not None else None

    def resize(self, capacity: int) -> None:
        """A new capacity for rings made from now on (a rate change); old points stay."""
        with self._lock:
            self.capacity = capacity
