"""Keys per person at the gateway: made once, kept as salted hashes, scoped and limited.

A live gateway with two demo GGUF models: no key or a wrong one is 401, a model outside
the key's scope 403, over a limit 429 with Retry-After, a revoked key is refused at once;
usage is counted per key; the request log and /metrics name the key, never its text; and
no file under the home holds a key.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
import requests

from llmops_desktop.gateway.keys import list_keys
from llmops_desktop.gateway.limits import RateLimits
from llmops_desktop.gateway.usage import gateway_log
from tests.gateway_fixtures import gateway_process, llmops, two_models

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.timeout(600)


def make_key(home, name: str, *flags: str) -> str:
    out = json.loads(llmops(home, "apikey", "create", name, "--json", *flags).stdout)
    assert out["name"] == name
    return out["key"]


def files_holding(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` whose bytes contain ``needle`` (the SQLite WAL included)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def secret_of(key: str) -> str:
    """The secret part of ``llmops-<key id>-<secret>`` (the secret itself may hold '-')."""
    prefix, key_id, secret = key.split("-", 2)
    assert prefix == "llmops" and len(key_id) == 8 and len(secret) >= 40
    return secret


def ask(gw, key: str, model: str = "alpha", **kw):
    c = openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=120)
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}],
                                     max_tokens=6, temperature=0, **kw)


def test_a_key_is_printed_once_and_kept_only_as_a_salted_hash(home, catalog) -> None:
    proc = llmops(home, "apikey", "create", "ann", "--models", "alpha*,beta@2", "--rpm", "10")
    key = proc.stdout.strip()
    assert key.startswith("llmops-") and "shown only now" in proc.stderr
    other = make_key(home, "bob")
    secret = secret_of(key)
    for needle in (key, secret, other, secret_of(other),
                   hashlib.sha256(key.encode()).hexdigest()):
        assert files_holding(home.root, needle) == []
    listed = json.loads(llmops(home, "apikey", "list", "--json").stdout)
    assert [(k["name"], k["models"], k["rpm"], k["requests"]) for k in listed] == [
        ("ann", "alpha*,beta@2", 10, 0), ("bob", "*", None, 0)]
    assert all("key" not in k for k in listed) and key not in llmops(home, "apikey").stdout
    salts = catalog.conn.execute("SELECT salt, key_hash FROM api_keys").fetchall()
    assert len({s for s, _ in salts}) == 2 and all(len(h) == 32 for _, h in salts)
    again = llmops(home, "apikey", "create", "ann", ok=False)
    assert again.returncode == 4 and "already a key named 'ann'" in again.stderr
    past = llmops(home, "apikey", "create", "cy", "--expires", "2001-01-01", ok=False)
    assert past.returncode == 5 and "in the past" in past.stderr


def test_the_gateway_checks_keys_scopes_limits_and_counts_use(home, catalog, demo_gguf):
    alpha, beta = two_models(catalog, demo_gguf)
    ann = make_key(home, "ann")
    scoped = make_key(home, "scoped", "--models", "beta*")
    slow = make_key(home, "slow", "--rpm", "2")
    thrifty = make_key(home, "thrifty", "--tpm", "5")
    keys = (ann, scoped, slow, thrifty)
    with gateway_process(home, "--idle-unload", "0") as gw:
        assert gw.info["keys_required"]
        assert requests.get(gw.url + "/health", timeout=10).status_code == 200
        r = requests.post(gw.base_url + "/chat/completions", timeout=30,
                          json={"model": "alpha", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        with pytest.raises(openai.AuthenticationError):
            ask(gw, ann[:-2] + ("AA" if not ann.endswith("AA") else "BB"))
        with pytest.raises(requests.HTTPError, match="401"):
            gw.models("llmops-00000000-" + "x" * 43)
        assert ask(gw, ann).choices[0].message.content
        # scope: the listing and the requests
        assert set(gw.models(scoped)) == {beta.ref}
        with pytest.raises(openai.PermissionDeniedError, match="may not use alpha@1"):
            ask(gw, scoped, "alpha")
        assert ask(gw, scoped, "beta").model == beta.ref
        # limits: the third request in a minute, the request after 5 tokens
        ask(gw, slow)
        ask(gw, slow, stream=True).close()
        with pytest.raises(openai.RateLimitError, match="2 requests per minute") as caught:
            ask(gw, slow)
        assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
        ask(gw, thrifty)
        with pytest.raises(openai.RateLimitError, match="5 tokens per minute") as caught:
            ask(gw, thrifty)
        assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
        # revoking takes effect on the next request
        llmops(home, "apikey", "revoke", "ann")
        with pytest.raises(openai.AuthenticationError, match="revoked"):
            ask(gw, ann)
        # an expired key
        catalog.conn.execute("UPDATE api_keys SET expires_at = '2001-01-01T00:00:00Z' "
                             "WHERE name = 'thrifty'")
        with pytest.raises(openai.AuthenticationError, match="expired"):
            ask(gw, thrifty)
        metrics = requests.get(gw.url + "/metrics", timeout=10,
                               headers={"Authorization": f"Bearer {scoped}"}).text
        assert 'key="slow",model="alpha@1",status="429"' in metrics
        assert 'key="scoped",model="beta@1"' in metrics
        assert not any(k in metrics for k in keys)
        deadline = time.monotonic() + 30
        while {k.name: k.requests for k in list_keys(catalog)}.get("slow") != 2:
            assert time.monotonic() < deadline, ("usage never reached the catalog: "
                                                 f"{list_keys(catalog)}\n" + "\n".join(gw.lines))
            time.sleep(0.2)
    used = {k.name: k for k in list_keys(catalog)}
    assert (used["ann"].requests, used["scoped"].requests, used["slow"].requests) == (1, 1, 2)
    assert used["slow"].completion_tokens > 0 and used["slow"].last_used_at
    assert used["ann"].revoked_at
    rows = gateway_log(catalog)
    assert {(r.key_name, r.model, r.status) for r in rows} >= {
        ("ann", alpha.ref, 200), ("scoped", alpha.ref, 403), ("scoped", beta.ref, 200),
        ("slow", alpha.ref, 200), ("slow", alpha.ref, 429), ("thrifty", alpha.ref, 429),
        ("-", "", 401)}
    for key in keys:
        assert files_holding(home.root, key) == []
        assert files_holding(home.root, secret_of(key)) == []


def test_off_loopback_the_gateway_needs_a_key(home, catalog) -> None:
    proc = llmops(home, "gateway", "--host", "0.0.0.0", "--port", "0", ok=False)
    assert proc.returncode == 5 and "without an API key" in proc.stderr
    make_key(home, "gone")
    llmops(home, "apikey", "revoke", "gone")
    proc = llmops(home, "gateway", "--host", "0.0.0.0", "--port", "0", ok=False)
    assert proc.returncode == 5 and "llmops apikey create" in proc.stderr


def test_limits_say_when_the_window_has_room_again() -> None:
    now = [1000.0]
    limits = RateLimits(clock=lambda: now[0])
    assert limits.check("a", 2, None) is None
    now[0] += 10
    assert limits.check("a", 2, None) is None
    assert limits.check("a", 2, None) == ("2 requests per minute", 50)
    now[0] += 50
    assert limits.check("a", 2, None) is None  # the first left the window
    assert limits.check("b", None, 100) is None
    limits.add_tokens("b", 70)
    now[0] += 30
    limits.add_tokens("b", 40)
    assert limits.check("b", None, 100) == ("100 tokens per minute", 30)
    now[0] += 30
    assert limits.check("b", None, 100) is None
