"""Property-based fuzzing of a deployment's HTTP API (Hypothesis): a few hundred generated
requests (methods, paths, headers, bodies near and far from valid, chunked or not) against
a live llama.cpp server on 127.0.0.1. None may get a 5xx, every refusal is an OpenAI-style
error, and afterwards the server still answers, with no queue place or slot left taken.

The run is derandomized (the same requests every time) and bounded: 300 examples, a
small context, short completions at most."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.serving.engines.base import EngineSettings, get_engine
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import make_deployment, server_thread

NAME = "fuzzed"
EXAMPLES = 300


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path):
    home = Home.resolve(tmp_path_factory.mktemp("fuzz") / "home")
    with Catalog.open(home) as cat:
        artifact = import_artifact(cat, demo_gguf_session, "demo-gguf")
        engine = get_engine("llama.cpp").load(artifact.path,
                                              EngineSettings(threads=1, parallel=2, ctx=128))
        with server_thread(make_deployment(cat, artifact, name=NAME, max_queue=4),
                           engine) as live:
            yield live
        engine.close()


# ---- what a client might send --------------------------------------------------------------

scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63) | st.floats()
           | st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=8)
small_text = st.text(max_size=40)  # any code point, lone surrogates included
content_parts = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio"]) | json_values},
    optional={"text": small_text | json_values}), max_size=3)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "robot"])
     | json_values},
    optional={"content": small_text | content_parts | json_values,
              "name": st.text(max_size=10) | json_values})
fields: dict[str, st.SearchStrategy[Any]] = {
    "model": st.just(NAME) | st.just(NAME) | json_values,
    "messages": st.lists(message, max_size=3) | json_values,
    "prompt": (small_text | st.lists(st.integers(-3, 40000), max_size=8)
               | st.lists(small_text, max_size=3) | json_values),
    "max_tokens": st.integers(-2, 8) | st.integers(-2**70, 2**70) | json_values,
    "max_completion_tokens": st.integers(-2, 8) | json_values,
    "temperature": st.floats(-1, 3) | json_values,
    "top_p": st.floats(-0.5, 1.5) | json_values,
    "seed": st.integers(-2**70, 2**70) | json_values,
    "stop": st.text(max_size=4) | st.lists(st.text(max_size=4), max_size=20) | json_values,
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}) | json_values,
    "n": st.integers(-1, 3) | json_values,
    "echo": st.booleans() | json_values,
    "user": st.text(max_size=10) | json_values,
    "logit_bias": st.dictionaries(st.text(max_size=4), st.integers(-100, 100), max_size=2)
    | json_values,
    "logprobs": st.booleans() | json_values,
    "tools": json_values,
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])})
    | json_values,
    "unknown_field": json_values,
}
def _some_fields(most: int) -> st.SearchStrategy[dict[str, Any]]:
    """Up to ``most`` of the fields above, each with a value that may or may not make sense."""
    return st.lists(st.sampled_from(sorted(fields)), max_size=most, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({k: fields[k] for k in keys}))


valid_message = st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]),
                                       "content": small_text})
# Mostly a request that is valid but for a field or two, with a short completion (a valid
# one should not hold the engine long); sometimes anything at all.
near_valid_chat = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries({"model": st.just(NAME), "max_tokens": st.integers(1, 6),
                           "messages": st.lists(valid_message, min_size=1, max_size=3)}),
    _some_fields(2).map(lambda d: {k: v for k, v in d.items() if k != "max_tokens"}))
near_valid_completion = st.builds(
    lambda base, extra: {**base, **extra},
    st.fixed_dictionaries({"model": st.just(NAME), "max_tokens": st.integers(1, 6),
                           "prompt": small_text | st.lists(st.integers(0, 300), max_size=8)}),
    _some_fields(2).map(lambda d: {k: v for k, v in d.items() if k != "max_tokens"}))
bodies = (near_valid_chat | near_valid_completion | near_valid_chat | near_valid_completion
          | _some_fields(6) | json_values)

paths = st.sampled_from(["/v1/chat/completions", "/v1/chat/completions", "/v1/completions",
                         "/v1/completions", "/v1/models", f"/v1/models/{NAME}", "/health",
                         "/metrics", "/v1/embeddings", "/"]) | \
    st.text(max_size=20).map(lambda t: "/" + quote(t.encode("utf-8", "surrogatepass")))
generation_paths = st.sampled_from(["/v1/chat/completions", "/v1/completions"])
methods = st.sampled_from(["POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Valid JSON mostly; sometimes cut short, sometimes not JSON (nor UTF-8) at all."""
    encoded = json.dumps(draw(bodies)).encode("utf-8", "surrogatepass")  # lone ones too
    how = draw(st.sampled_from(["json", "json", "json", "json", "cut", "bytes"]))
    if how == "cut":
        return encoded[:draw(st.integers(0, max(0, len(encoded) - 1)))]
    if how == "bytes":
        return draw(st.binary(max_size=64))
    return encoded


FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
content_types = st.sampled_from(["application/json", "application/json", "text/plain", None])


def _check(server, method: str, path: str, body: bytes, chunked: bool,
           content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    data: Any = iter([body[:7], body[7:]]) if chunked else body  # a generator goes chunked
    r = requests.request(method, server.url + path, data=data, headers=headers, timeout=120)
    assert r.status_code < 500, (method, path, body, r.status_code, r.text[:500])
    if r.status_code >= 400 and method != "HEAD":
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["message"], r.text
    elif path in ("/v1/chat/completions", "/v1/completions") and r.status_code == 200:
        if r.headers["content-type"].startswith("text/event-stream"):
            assert r.text.rstrip().endswith("data: [DONE]"), r.text[-300:]
        else:
            assert r.json()["usage"]["completion_tokens"] >= 0


@FUZZ
@given(path=generation_paths, body=raw_bodies(), chunked=st.booleans(),
       content_type=content_types)
def test_generation_requests_never_get_a_5xx(server, path: str, body: bytes, chunked: bool,
                                             content_type: str | None) -> None:
    _check(server, "POST", path, body, chunked, content_type)


@settings(FUZZ, max_examples=EXAMPLES // 3)
@given(method=methods, path=paths, body=raw_bodies(), chunked=st.booleans(),
       content_type=content_types)
def test_any_method_on_any_path_never_gets_a_5xx(server, method: str, path: str, body: bytes,
                                                 chunked: bool, content_type: str | None
                                                 ) -> None:
    _check(server, method, path, body, chunked, content_type)


def test_the_server_is_still_serving_after_the_fuzz(server) -> None:
    health = requests.get(server.url + "/health", timeout=30).json()
    assert health["status"] == "ok" and health["running"] == 0 and health["waiting"] == 0
    r = requests.post(server.url + "/v1/completions", timeout=60,
                      json={"model": NAME, "prompt": "still here", "max_tokens": 3})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] > 0
