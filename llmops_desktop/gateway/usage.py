"""What the gateway counts: a request log row per request, usage per key, Prometheus series.

Every row and every series carries the key's name (``-`` when the gateway runs without
keys on loopback) and the model, never the key. Rows and key counters are written to the
catalog in batches (:meth:`UsageBook.flush`, about twice a second and at shutdown), so
the proxy path never waits for SQLite.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import astuple, dataclass, fields
from typing import Any

from llmops_desktop.catalog import Catalog, utcnow

ANONYMOUS = "-"


@dataclass(frozen=True)
class GatewayRecord:
    ts: str
    key_name: str
    model: str
    endpoint: str
    stream: bool
    status: int
    error: str | None
    ttft_ms: float | None
    latency_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0


_COLUMNS = tuple(f.name for f in fields(GatewayRecord))


class GatewayMetrics:
    """The gateway's ``/metrics``, in its own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("llmops_gateway_requests", "Requests answered, by key name, "
                                "model and HTTP status", ("key", "model", "status"),
                                registry=self.registry)
        self.tokens = Counter("llmops_gateway_tokens", "Tokens by key name, model and kind "
                              "(prompt, completion)", ("key", "model", "kind"),
                              registry=self.registry)
        self.ttft = Histogram("llmops_gateway_time_to_first_token_seconds", "From arrival at "
                              "the gateway to the first byte of the answer", ("model",),
                              registry=self.registry)
        self.loaded = Gauge("llmops_gateway_models_loaded", "Models whose deployment is "
                            "running", registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import generate_latest
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class UsageBook:
    def __init__(self, catalog: Catalog, metrics: GatewayMetrics) -> None:
        self.catalog, self.metrics = catalog, metrics
        self._rows: list[GatewayRecord] = []
        self._keys: dict[str, list[Any]] = defaultdict(lambda: [0, 0, 0, ""])
        self.written = 0

    def record(self, *, key_name: str | None, model: str, endpoint: str, stream: bool,
               status: int, latency_ms: float, ttft_ms: float | None = None,
               prompt_tokens: int = 0, completion_tokens: int = 0,
               error: str | None = None, counted: bool = True) -> None:
        """One request's row and series; ``counted``: it reached a model (the key's
        request count and tokens grow; refusals by the gateway only get their row)."""
        key = key_name or ANONYMOUS
        now = utcnow()
        self._rows.append(GatewayRecord(now, key, model, endpoint, stream, status, error,
                                        ttft_ms, latency_ms, prompt_tokens, completion_tokens))
        self.metrics.requests.labels(key, model, str(status)).inc()
        if prompt_tokens:
            self.metrics.tokens.labels(key, model, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.metrics.tokens.labels(key, model, "completion").inc(completion_tokens)
        if ttft_ms is not None:
            self.metrics.ttft.labels(model).observe(ttft_ms / 1000)
        if key_name and counted:
            counts = self._keys[key_name]
            counts[0] += 1
            counts[1] += prompt_tokens
            counts[2] += completion_tokens
            counts[3] = now

    def flush(self) -> int:
        rows, self._rows = self._rows, []
        keys, self._keys = self._keys, defaultdict(lambda: [0, 0, 0, ""])
        if not rows and not keys:
            return 0
        try:
            self._write(rows, keys)
        except Exception:  # the catalog busy or failing: keep them for the next flush
            self._rows[:0] = rows
            for name, counts in keys.items():
                mine = self._keys[name]
                for i in range(3):
                    mine[i] += counts[i]
                mine[3] = mine[3] or counts[3]
            raise
        self.written += len(rows)
        return len(rows)

    def _write(self, rows: list[GatewayRecord], keys: dict[str, list[Any]]) -> None:
        marks = ",".join("?" * len(_COLUMNS))
        with self.catalog.transaction() as conn:
            conn.executemany(f"INSERT INTO gateway_requests ({','.join(_COLUMNS)}) "
                             f"VALUES ({marks})",
                             [tuple(int(v) if isinstance(v, bool) else v for v in astuple(r))
                              for r in rows])
            conn.executemany("UPDATE api_keys SET requests = requests + ?, prompt_tokens = "
                             "prompt_tokens + ?, completion_tokens = completion_tokens + ?, "
                             "last_used_at = ? WHERE name = ?",
                             [(*counts, name) for name, counts in keys.items()])


def gateway_log(catalog: Catalog, *, key_name: str | None = None,
                limit: int = 1000) -> list[GatewayRecord]:
    """The newest gateway requests first."""
    where, params = ("WHERE key_name = ?", (key_name,)) if key_name else ("", ())
    rows = catalog.conn.execute(f"SELECT {','.join(_COLUMNS)} FROM gateway_requests {where} "
                                "ORDER BY id DESC LIMIT ?", (*params, limit)).fetchall()
    return [GatewayRecord(**{**dict(zip(_COLUMNS, r)), "stream": bool(r[4])}) for r in rows]


@dataclass(frozen=True)
class KeyModelUsage:
    """Who used what: one key's requests to one model (from the request log)."""

    key_name: str
    model: str
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    last_used: str

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def usage_by_key(catalog: Catalog, *, since: str | None = None, last: int | None = None,
                 limit: int = 500) -> list[KeyModelUsage]:
    """Requests, errors and tokens per key and model, the most recently used first: over
    the whole log, or since ``since`` (an ISO time), or over its ``last`` rows (a bounded
    read, however long the log has grown)."""
    where, params = ["1"], []
    if since:
        where.append("ts >= ?")
        params.append(since)
    if last is not None:
        where.append("id > (SELECT COALESCE(MAX(id), 0) FROM gateway_requests) - ?")
        params.append(last)
    rows = catalog.conn.execute(
        "SELECT key_name, model, COUNT(*), SUM(status >= 400), SUM(prompt_tokens), "
        f"SUM(completion_tokens), MAX(ts) FROM gateway_requests WHERE {' AND '.join(where)} "
        "GROUP BY key_name, model ORDER BY MAX(ts) DESC LIMIT ?", (*params, limit)).fetchall()
    return [KeyModelUsage(k or ANONYMOUS, m or "", n, e or 0, p or 0, c or 0, ts or "")
            for k, m, n, e, p, c, ts in rows]
