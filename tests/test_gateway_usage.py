"""Who used what: the gateway's request log summed per key and model, bounded reads."""

from __future__ import annotations

from llmops_desktop.gateway.usage import usage_by_key


def _log(catalog, key: str, model: str, status: int, day: int) -> None:
    catalog.conn.execute(
        "INSERT INTO gateway_requests (ts, key_name, model, endpoint, status, latency_ms, "
        "prompt_tokens, completion_tokens) VALUES (?, ?, ?, '/v1/chat/completions', ?, 1, 2, 3)",
        (f"2026-01-{day:02d}T00:00:00Z", key, model, status))


def test_usage_per_key_and_model_newest_first_and_bounded(catalog) -> None:
    for day, (key, model, status) in enumerate([("alice", "a@1", 200), ("alice", "a@1", 429),
                                                 ("bob", "b@1", 200), ("alice", "b@1", 200)],
                                                start=1):
        _log(catalog, key, model, status, day)
    rows = [(u.key_name, u.model, u.requests, u.errors, u.tokens, u.last_used[:10])
            for u in usage_by_key(catalog)]
    assert rows == [("alice", "b@1", 1, 0, 5, "2026-01-04"), ("bob", "b@1", 1, 0, 5, "2026-01-03"),
                    ("alice", "a@1", 2, 1, 10, "2026-01-02")]
    assert [(u.key_name, u.model) for u in usage_by_key(catalog, last=2)] == [
        ("alice", "b@1"), ("bob", "b@1")]
    assert [u.requests for u in usage_by_key(catalog, since="2026-01-02")] == [1, 1, 1]
