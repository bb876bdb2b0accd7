"""The Anthropic Messages API (#15 item 8) with the official ``anthropic`` client against a
live server on the demo GGUF: text, system and multi-turn as the chat path reads them,
streaming events, usage, stop_sequences, tool use and tool results, the API key as
x-api-key, and the request log and /metrics."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import jsonschema
import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.serving.engines.base import EngineSettings, get_engine
from llmops_desktop.serving.recorder import RequestRecorder
from llmops_desktop.serving.store import request_log
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import make_deployment, server_thread

SYSTEM = "Be brief."
# temperature as a body field: the client's keyword for it changed between releases
GREEDY = {"temperature": 0}
TURNS = [{"role": "user", "content": "Hello there"},
         {"role": "assistant", "content": "Hi. What do you need?"},
         {"role": "user", "content": [{"type": "text", "text": "Tell me about the "},
                                      {"type": "text", "text": "model."}]}]
OPENAI_TURNS = [{"role": "system", "content": SYSTEM}, TURNS[0], TURNS[1],
                {"role": "user", "content": "Tell me about the model."}]
LIGHT = {"type": "object", "properties": {"color": {"enum": ["red", "green"]},
                                          "on": {"type": "boolean"}},
         "required": ["color", "on"], "additionalProperties": False}
TOOLS = [{"name": "light", "description": "Set the light", "input_schema": LIGHT}]


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path):
    home = Home.resolve(tmp_path_factory.mktemp("anthropic") / "home")
    with Catalog.open(home) as c:
        import_artifact(c, demo_gguf_session, "demo-gguf")
        yield c


@pytest.fixture(scope="module")
def engine(cat: Catalog):
    loaded = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                          EngineSettings(threads=1, parallel=2))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def server(cat: Catalog, engine):
    with RequestRecorder(cat.home, interval=0.2) as recorder:
        config = make_deployment(cat, cat.resolve("demo-gguf"), name="demo")
        with server_thread(config, engine, recorder) as live:
            live.recorder = recorder
            yield live


def _client(server, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key=key, max_retries=0, timeout=120)


def _text(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def test_messages_match_the_chat_path(server) -> None:
    reply = _client(server).messages.create(model="demo", max_tokens=10, system=SYSTEM,
                                            messages=TURNS, extra_body=GREEDY)
    chat = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0).chat \
        .completions.create(model="demo", messages=OPENAI_TURNS, max_tokens=10, temperature=0)
    assert reply.type == "message" and reply.role == "assistant" and reply.id.startswith("msg_")
    assert _text(reply) == chat.choices[0].message.content  # same prompt, same greedy reply
    assert reply.usage.input_tokens == chat.usage.prompt_tokens
    assert reply.usage.output_tokens == chat.usage.completion_tokens
    assert reply.stop_reason == {"length": "max_tokens", "stop": "end_turn"}[
        chat.choices[0].finish_reason]


def test_streamed_events_reassemble_to_the_same_message(server) -> None:
    client = _client(server)
    whole = client.messages.create(model="demo", max_tokens=12, system=SYSTEM, messages=TURNS,
                                   extra_body=GREEDY)
    with client.messages.stream(model="demo", max_tokens=12, system=SYSTEM, messages=TURNS,
                                extra_body=GREEDY) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert _text(final) == _text(whole) and final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    for kind in ("content_block_start", "content_block_delta", "content_block_stop",
                 "message_delta"):
        assert kind in kinds


def test_stop_sequences_cut_the_text_and_are_reported(server) -> None:
    client = _client(server)
    ask = dict(model="demo", max_tokens=16, system=SYSTEM, messages=TURNS, extra_body=GREEDY)
    free = _text(client.messages.create(**ask))
    stop = next(free[i:i + 2] for i in range(1, len(free) - 1)
                if free[i:i + 2].isascii() and free[i:i + 2].isalpha())
    expected = free[:free.index(stop)]
    cut = client.messages.create(**ask, stop_sequences=["NEVER-THERE", stop])
    assert _text(cut) == expected
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    with client.messages.stream(**ask, stop_sequences=[stop]) as stream:
        final = stream.get_final_message()
    assert _text(final) == expected and final.stop_reason == "stop_sequence"
    assert final.stop_sequence == stop


def test_tool_use_and_tool_result(server) -> None:
    client = _client(server)
    for stream in (False, True):
        kwargs = dict(model="demo", max_tokens=200, extra_body=GREEDY,
                      tools=TOOLS,
                      tool_choice={"type": "tool", "name": "light"},
                      messages=[{"role": "user", "content": "Lights on, red."}])
        if stream:
            with client.messages.stream(**kwargs) as s:
                reply = s.get_final_message()
        else:
            reply = client.messages.create(**kwargs)
        assert reply.stop_reason == "tool_use"
        uses = [b for b in reply.content if b.type == "tool_use"]
        assert len(uses) == 1 and uses[0].name == "light" and uses[0].id.startswith("toolu_")
        jsonschema.validate(uses[0].input, LIGHT)
    back = client.messages.create(model="demo", max_tokens=4, extra_body=GREEDY, tools=TOOLS,
                                  messages=[
                                      {"role": "user", "content": "Lights on, red."},
                                      {"role": "assistant", "content": [
                                          {"type": "tool_use", "id": uses[0].id,
                                           "name": "light", "input": uses[0].input}]},
                                      {"role": "user", "content": [
                                          {"type": "tool_result", "tool_use_id": uses[0].id,
                                           "content": "The light is red now."}]}])
    assert back.stop_reason in ("end_turn", "max_tokens") and back.usage.input_tokens > 0


def test_bad_requests_are_anthropic_errors(server) -> None:
    client = _client(server)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=4, messages=TURNS)
    r = requests.post(server.url + "/v1/messages", timeout=30,
                      json={"model": "demo", "messages": TURNS})
    assert r.status_code == 400
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in r.json()["error"]["message"]
    with pytest.raises(anthropic.BadRequestError, match="image"):
        client.messages.create(model="demo", max_tokens=4, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "AA=="}}]}])


def test_requests_land_in_the_log_and_metrics(server, cat: Catalog) -> None:
    _client(server).messages.create(model="demo", max_tokens=3, messages=TURNS)
    assert server.recorder.flush()
    rows = [r for r in request_log(cat, deployment_id=server.state.deployment.id)
            if r.endpoint == "/v1/messages" and r.status == 200]
    assert rows and rows[-1].response_id.startswith("msg_") and rows[-1].prompt_tokens > 0
    text = requests.get(server.url + "/metrics", timeout=10).text
    counts = {tuple(sorted(s.labels.items())): s.value for f in
              text_string_to_metric_families(text) for s in f.samples
              if s.name == "llmops_requests_total"}
    assert counts[(("endpoint", "/v1/messages"), ("status", "200"))] >= 1


def test_api_key_as_x_api_key(cat: Catalog, engine) -> None:
    key = "an-anthropic-style-key"
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="guarded")
    with server_thread(config, engine, api_key=key) as live:
        with pytest.raises(anthropic.AuthenticationError):
            _client(live, "wrong").messages.create(model="guarded", max_tokens=2,
                                                   messages=TURNS)
        r = requests.post(live.url + "/v1/messages", timeout=30, json={
            "model": "guarded", "max_tokens": 2, "messages": TURNS})
        assert r.status_code == 401
        done = _client(live, key).messages.create(model="guarded", max_tokens=2,
                                                  messages=TURNS)
        assert done.usage.output_tokens > 0
        bearer = requests.post(live.url + "/v1/messages", timeout=30, headers={
            "Authorization": f"Bearer {key}"}, json={
            "model": "guarded", "max_tokens": 2, "messages": TURNS})
        assert bearer.status_code == 200, bearer.text
        assert json.loads(bearer.text)["type"] == "message"
