"""A deployment's figures from its ``GET /metrics`` (our server's Prometheus text).

The server exposes cumulative counters and histograms (``serving/metrics.py``): requests
by endpoint and status, time to first token, latency, generated tokens, and the queue
depth and running requests as gauges. Rates and percentiles here cover a recent window
(10 s by default): the difference between the newest scrape and the one taken a window
ago, so a percentile is that of the requests that finished in the window, as Prometheus'
``histogram_quantile(rate(...[10s]))`` would say. A counter that went down (the server
restarted) starts the window afresh.

Errors are counted twice: every failed request (``error_rate_pct``: 4xx and 5xx), and the
server's own failures (``server_error_rate_pct``: 5xx only). A 4xx is the client's doing
(a bad request, an unknown model, a missing key) and says nothing about the server's
health, so the error-rate alert watches the second.

A server started with an API key refuses ``/metrics`` without it: the reading then says
"needs-key" rather than guessing.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

TTFT = "llmops_time_to_first_token_seconds"
LATENCY = "llmops_request_latency_seconds"
CLIENT_GONE = 499

# never through a proxy: our servers are local, or on a network the user chose
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Snapshot:
    """What one /metrics answer said, summed over endpoints."""

    t: float
    requests: float = 0.0
    errors: float = 0.0
    server_errors: float = 0.0  # 5xx: the server failed, not the client
    tokens: float = 0.0
    queue: float = math.nan
    running: float = math.nan
    name: str = ""
    ttft: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    latency: dict[float, float] = field(default_factory=dict)


def parse_metrics(text: str, t: float) -> Snapshot:
    snap = Snapshot(t)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "llmops_requests_total":
                snap.requests += s.value
                status = s.labels.get("status", "")
                if status.isdigit() and int(status) >= 400 and int(status) != CLIENT_GONE:
                    snap.errors += s.value
                    if int(status) >= 500:
                        snap.server_errors += s.value
            elif s.name == "llmops_generated_tokens_total":
                snap.tokens += s.value
            elif s.name == "llmops_queue_depth":
                snap.queue = s.value
            elif s.name == "llmops_requests_running":
                snap.running = s.value
            elif s.name == "llmops_deployment_info":
                snap.name = s.labels.get("deployment", "")
            elif s.name in (TTFT + "_bucket", LATENCY + "_bucket"):
                target = snap.ttft if s.name.startswith(TTFT) else snap.latency
                le = float(s.labels["le"])
                target[le] = target.get(le, 0.0) + s.value
    return snap


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """The q-quantile of a cumulative histogram ``{upper bound: count}``, interpolated
    linearly inside its bucket (as Prometheus does); NaN without observations."""
    bounds = sorted(buckets)
    if not bounds:
        return math.nan
    total = buckets[bounds[-1]]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):  # beyond the last finite bucket: say its bound
                finite = [b for b in bounds if not math.isinf(b)]
                return finite[-1] if finite else math.nan
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return bounds[-1]


def _delta(new: dict[float, float], old: dict[float, float]) -> dict[float, float]:
    return {le: max(0.0, v - old.get(le, 0.0)) for le, v in new.items()}


@dataclass(frozen=True)
class DeploymentReading:
    id: int
    name: str
    url: str
    status: str  # "ok", "needs-key", "unreachable", "error"
    message: str = ""
    req_rate: float = math.nan
    ttft_p50_ms: float = math.nan
    ttft_p95_ms: float = math.nan
    lat_p50_ms: float = math.nan
    lat_p95_ms: float = math.nan
    tok_s: float = math.nan
    errors_per_s: float = math.nan
    error_rate_pct: float = math.nan
    server_error_rate_pct: float = math.nan  # 5xx only: what the error-rate alert watches
    queue: float = math.nan
    running: float = math.nan
    requests_total: float = math.nan
    window_s: float = math.nan

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


class DeploymentScraper:
    """Scrapes deployments and turns consecutive answers into windowed figures."""

    def __init__(self, window_s: float = 10.0, timeout_s: float = 1.0) -> None:
        self.window_s = window_s
        self.timeout_s = timeout_s
        self._history: dict[int, deque[Snapshot]] = {}

    def forget(self, keep: set[int]) -> None:
        for dep_id in set(self._history) - keep:
            del self._history[dep_id]

    def fetch(self, url: str, api_key: str | None) -> str:
        request = urllib.request.Request(url.rstrip("/") + "/metrics")
        if api_key:
            request.add_header("Authorization", f"Bearer {api_key}")
        with _opener.open(request, timeout=self.timeout_s) as response:
            return response.read().decode("utf-8", "replace")

    def scrape(self, dep_id: int, name: str, url: str, api_key: str | None = None,
               now: float | None = None) -> DeploymentReading:
        now = time.monotonic() if now is None else now
        if not url:
            return DeploymentReading(dep_id, name, url, "unreachable",
                                     "The deployment has no address yet.")
        try:
            text = self.fetch(url, api_key)
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                message = ("This server needs its API key to show its figures; enter the key "
                           "for this deployment." if not api_key else
                           "The API key given for this deployment was refused.")
                return DeploymentReading(dep_id, name, url, "needs-key", message)
            return DeploymentReading(dep_id, name, url, "error",
                                     f"GET {url}/metrics answered HTTP {exc.code}.")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return DeploymentReading(dep_id, name, url, "unreachable",
                                     f"{url} does not answer ({reason}).")
        try:
            snap = parse_metrics(text, now)
        except ValueError as exc:
            return DeploymentReading(dep_id, name, url, "error",
                                     f"{url}/metrics is not Prometheus text: {exc}")
        return self._reading(dep_id, name or snap.name, url, snap)

    def _reading(self, dep_id: int, name: str, url: str, snap: Snapshot) -> DeploymentReading:
        history = self._history.setdefault(dep_id, deque())
        if history and (snap.requests < history[-1].requests or
                        snap.tokens < history[-1].tokens):
            history.clear()  # counters went down: a new server process
        history.append(snap)
        # the base: the newest snapshot at least a window old (or the oldest we have)
        while len(history) > 2 and history[1].t <= snap.t - self.window_s:
            history.popleft()
        base = history[0]
        common = dict(name=name or snap.name, queue=snap.queue, running=snap.running,
                      requests_total=snap.requests)
        if base is snap:
            return DeploymentReading(dep_id, url=url, status="ok", **common)
        dt = snap.t - base.t
        n = snap.requests - base.requests
        errors = snap.errors - base.errors
        ttft = _delta(snap.ttft, base.ttft)
        latency = _delta(snap.latency, base.latency)
        return DeploymentReading(
            dep_id, url=url, status="ok", window_s=dt,
            req_rate=n / dt, tok_s=(snap.tokens - base.tokens) / dt, errors_per_s=errors / dt,
            error_rate_pct=100.0 * errors / n if n > 0 else math.nan,
            server_error_rate_pct=(100.0 * (snap.server_errors - base.server_errors) / n
                                   if n > 0 else math.nan),
            ttft_p50_ms=histogram_quantile(0.5, ttft) * 1000,
            ttft_p95_ms=histogram_quantile(0.95, ttft) * 1000,
            lat_p50_ms=histogram_quantile(0.5, latency) * 1000,
            lat_p95_ms=histogram_quantile(0.95, latency) * 1000, **common)
