"""The Anthropic Messages API through the gateway, with the official ``anthropic`` client.

A live gateway with two demo GGUF models and keys: the key works as ``Authorization: Bearer``
(what this client sends) and as ``x-api-key`` (Anthropic's documented header); no key or a wrong one is 401, a model
outside the key's scope (the body's ``model``) 403, over a limit 429 with Retry-After, all
as Anthropic errors; answers come back plain and streamed; the usage of both is counted per
key and in the request log, under ``/v1/messages``.
"""

from __future__ import annotations

import json
import time

import pytest
import requests

from llmops_desktop.gateway.keys import list_keys
from llmops_desktop.gateway.proxy import Outcome, read_usage
from llmops_desktop.gateway.usage import gateway_log
from tests.gateway_fixtures import gateway_process, llmops, two_models

anthropic = pytest.importorskip("anthropic")

pytestmark = pytest.mark.timeout(600)


def make_key(home, name: str, *flags: str) -> str:
    return json.loads(llmops(home, "apikey", "create", name, "--json", *flags).stdout)["key"]


def client(gw, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=120)


def ask(c, model: str = "alpha", **kw):
    return c.messages.create(model=model, max_tokens=8,
                             messages=[{"role": "user", "content": "Hello"}], **kw)


def test_messages_through_the_gateway_with_keys_scope_limits_and_usage(home, catalog,
                                                                       demo_gguf) -> None:
    alpha, beta = two_models(catalog, demo_gguf)
    ann = make_key(home, "ann")
    scoped = make_key(home, "scoped", "--models", "beta*")
    slow = make_key(home, "slow", "--rpm", "1")
    with gateway_process(home, "--idle-unload", "0") as gw:
        c = client(gw, ann)
        reply = ask(c)
        assert reply.type == "message" and reply.role == "assistant"
        assert reply.content[0].type == "text" and reply.content[0].text
        assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
        # streamed, passed through as Anthropic's events
        with c.messages.stream(model="alpha", max_tokens=8,
                               messages=[{"role": "user", "content": "Hello"}]) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert streamed and streamed == final.content[0].text
        assert final.usage.output_tokens > 0
        # the key as x-api-key (Anthropic's documented header; this client sends a bearer)
        r = requests.post(gw.url + "/v1/messages", timeout=120, headers={"x-api-key": ann},
                          json={"model": "alpha", "max_tokens": 4,
                                "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 200 and r.json()["type"] == "message"
        # refusals, each an Anthropic error the client raises as its own class
        with pytest.raises(anthropic.AuthenticationError) as caught:
            ask(client(gw, ann[:-2] + ("AA" if not ann.endswith("AA") else "BB")))
        assert caught.value.body["error"]["type"] == "authentication_error"
        r = requests.post(gw.url + "/v1/messages", timeout=30,
                          json={"model": "alpha", "max_tokens": 4,
                                "messages": [{"role": "user", "content": "Hi"}]})
        assert r.status_code == 401 and r.json()["type"] == "error"
        with pytest.raises(anthropic.PermissionDeniedError, match="may not use alpha@1"):
            ask(client(gw, scoped))
        assert ask(client(gw, scoped), "beta").model == beta.ref
        with pytest.raises(anthropic.NotFoundError, match="No model 'gamma'"):
            ask(c, "gamma")
        ask(client(gw, slow))
        with pytest.raises(anthropic.RateLimitError, match="1 requests per minute") as caught:
            ask(client(gw, slow))
        assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
        deadline = time.monotonic() + 30
        while {k.name: k.requests for k in list_keys(catalog)}.get("ann") != 3:
            assert time.monotonic() < deadline, f"usage never counted: {list_keys(catalog)}"
            time.sleep(0.2)
    used = {k.name: k for k in list_keys(catalog)}
    assert used["ann"].prompt_tokens > 0 and used["ann"].completion_tokens > 0
    rows = [r for r in gateway_log(catalog) if r.endpoint == "/v1/messages"]
    ok = [r for r in rows if r.key_name == "ann" and r.status == 200]
    assert [(r.model, r.stream) for r in reversed(ok)] == [
        (alpha.ref, False), (alpha.ref, True), (alpha.ref, False)]
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in ok)
    assert {(r.key_name, r.model, r.status) for r in rows} >= {
        ("scoped", alpha.ref, 403), ("scoped", beta.ref, 200), ("slow", alpha.ref, 429),
        ("-", "", 401)}


def test_usage_is_read_from_both_apis_answers_and_stream_events() -> None:
    outcome = Outcome()
    read_usage({"type": "message_start", "message": {"usage": {"input_tokens": 7,
                                                               "output_tokens": 0}}}, outcome)
    read_usage({"type": "message_delta", "usage": {"output_tokens": 5}}, outcome)
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (7, 5)
    read_usage({"usage": {"prompt_tokens": 3, "completion_tokens": 2}}, outcome)
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (3, 2)
    read_usage({"usage": {"input_tokens": "many", "output_tokens": -1}}, outcome)
    assert (outcome.prompt_tokens, outcome.completion_tokens) == (3, 2)
