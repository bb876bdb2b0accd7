"""``/metrics``: the server's Prometheus counters, in a registry of its own per app.

A per-app ``CollectorRegistry`` keeps two servers in one process (the tests) apart and
leaves prometheus_client's global registry alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class ServerMetrics:
    """Request counts by endpoint and status, TTFT and latency, tokens, queue depth."""

    def __init__(self, *, deployment: str, model: str, engine: str,
                 waiting: Callable[[], float], running: Callable[[], float]) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("llmops_requests", "HTTP requests answered, by endpoint and "
                                "status (499: the client went away first)",
                                ["endpoint", "status"], registry=r)
        self.ttft = Histogram("llmops_time_to_first_token_seconds", "From request arrival to "
                              "the first generated token (queueing included)",
                              ["endpoint"], buckets=_TTFT_BUCKETS, registry=r)
        self.latency = Histogram("llmops_request_latency_seconds", "From request arrival to "
                                 "the last byte of the answer", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.completion_tokens = Counter("llmops_generated_tokens", "Completion tokens "
                                         "generated", registry=r)
        self.prompt_tokens = Counter("llmops_prompt_tokens", "Prompt tokens processed",
                                     registry=r)
        queue_depth = Gauge("llmops_queue_depth", "Requests waiting for a free engine slot",
                            registry=r)
        queue_depth.set_function(waiting)
        in_flight = Gauge("llmops_requests_running", "Requests generating now", registry=r)
        in_flight.set_function(running)
        info = Gauge("llmops_deployment_info", "The deployment this server runs (always 1)",
                     ["deployment", "model", "engine"], registry=r)
        info.labels(deployment, model, engine).set(1)

    def observe(self, *, endpoint: str, status: int, ttft_s: float | None,
                latency_s: float | None, prompt_tokens: int, completion_tokens: int) -> None:
        self.requests.labels(endpoint, str(status)).inc()
        if ttft_s is not None:
            self.ttft.labels(endpoint).observe(ttft_s)
        if latency_s is not None:
            self.latency.labels(endpoint).observe(latency_s)
        if prompt_tokens:
            self.prompt_tokens.inc(prompt_tokens)
        if completion_tokens:
            self.completion_tokens.inc(completion_tokens)

    def watch_engine(self, stats: Callable[[], dict[str, int]] | None) -> None:
        """Expose what a batching engine reports (``Engine.stats()``), read at each scrape."""
        if stats is not None:
            self.registry.register(_EngineCollector(stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _EngineCollector(Collector):
    """The engine's own view: slots in use, its queue, the last step's batch, reused
    prompt tokens (prefix reuse)."""

    _GAUGES = (("slots", "llmops_engine_slots", "Sequences the engine can run at once"),
               ("slots_in_use", "llmops_engine_slots_in_use", "Sequences running now"),
               ("queued", "llmops_engine_queue_length",
                "Requests handed to the engine that wait for a free slot"),
               ("batch_size", "llmops_engine_batch_size",
                "Sequences in the engine's last decode step"))
    _COUNTERS = (("reused_prompt_tokens", "llmops_prompt_tokens_reused",
                  "Prompt tokens taken from a slot's cache instead of being read again"),
                 ("prefilled_prompt_tokens", "llmops_prompt_tokens_prefilled",
                  "Prompt tokens the engine read (decoded)"),
                 ("decode_steps", "llmops_engine_decode_steps",
                  "Engine decode steps (one llama_decode for every running sequence)"))

    def __init__(self, stats: Callable[[], dict[str, int]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        stats = self._stats()
        for key, name, doc in self._GAUGES:
            if key in stats:
                yield GaugeMetricFamily(name, doc, value=stats[key])
        for key, name, doc in self._COUNTERS:
            if key in stats:
                yield CounterMetricFamily(name, doc, value=stats[key])

    def describe(self) -> Iterator[Any]:
        return iter(())
