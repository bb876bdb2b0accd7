"""Structured output (#15 item 4): response_format json_schema / json_object on chat and
completions, constrained by a grammar so even the random-weight demo model returns JSON
that validates; schema features the grammar cannot enforce get a 400 that names them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import openai
import pytest
import requests

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.serving.engines.base import EngineSettings, get_engine
from llmops_desktop.serving.structured import check_schema, response_format_grammar
from llmops_desktop.serving.protocol import APIError
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import GatedEngine, make_deployment, server_thread

# Bounded on purpose: strings have a length limit, so the grammar's JSON always ends well
# inside max_tokens (a free string could run on, and finish_reason would say "length").
# Strings are ASCII patterns: llama.cpp's grammar reads UTF-8 leniently, and a random
# byte-level model can write an overlong byte sequence that Python then reads as several
# U+FFFD characters, which would break a maxLength (a trained model does not do that).
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z]{1,8}$"},
        "count": {"type": "integer"},
        "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9 ]{0,4}$"},
                 "maxItems": 2},
        "when": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]},
    },
    "required": ["name", "count", "ok", "color", "tags", "when"],
    "additionalProperties": False,
}
FORMAT = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA,
                                                 "strict": True}}
CHAT = [{"role": "user", "content": "Describe a thing as JSON."}]


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path):
    home = Home.resolve(tmp_path_factory.mktemp("structured") / "home")
    with Catalog.open(home) as c:
        import_artifact(c, demo_gguf_session, "demo-gguf")
        yield c


@pytest.fixture(scope="module")
def server(cat: Catalog):
    engine = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                          EngineSettings(threads=1, parallel=2))
    try:
        with server_thread(make_deployment(cat, cat.resolve("demo-gguf"), name="demo"),
                           engine) as live:
            yield live
    finally:
        engine.close()


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                         timeout=120)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_chat_json_schema_output_validates(server, temperature: float) -> None:
    client = _client(server)
    reply = client.chat.completions.create(model="demo", messages=CHAT, max_tokens=200,
                                           temperature=temperature, seed=7,
                                           response_format=FORMAT)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), SCHEMA)

    streamed = client.chat.completions.create(model="demo", messages=CHAT, max_tokens=200,
                                              temperature=temperature, seed=7,
                                              response_format=FORMAT, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    jsonschema.validate(json.loads(text), SCHEMA)
    if temperature == 0:
        assert text == choice.message.content


def test_completions_json_schema_and_json_object(server) -> None:
    client = _client(server)
    done = client.completions.create(model="demo", prompt="A thing as JSON:", max_tokens=200,
                                     temperature=0.8, seed=11,
                                     extra_body={"response_format": FORMAT})
    jsonschema.validate(json.loads(done.choices[0].text), SCHEMA)
    # Without the grammar the random-weight model does not write JSON at all.
    free = client.completions.create(model="demo", prompt="A thing as JSON:", max_tokens=40,
                                     temperature=0.8, seed=11)
    with pytest.raises(ValueError):
        json.loads(free.choices[0].text)


def test_json_object_is_an_object(server) -> None:
    r = requests.post(server.base_url + "/chat/completions", timeout=120, json={
        "model": "demo", "messages": CHAT, "max_tokens": 300, "temperature": 0,
        "response_format": {"type": "json_object"}})
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    if choice["finish_reason"] == "stop":
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    else:  # cut by max_tokens: still the start of an object
        assert choice["message"]["content"].lstrip().startswith("{")


@pytest.mark.parametrize(("schema", "keyword"), [
    ({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1}}}, "minimum"),
    ({"type": "string", "format": "email"}, "email"),
    ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "patternProperties"),
    ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
    ({"$ref": "https://example.com/schema.json"}, "https://example.com/schema.json"),
    ({"not": {"type": "string"}}, "not"),
])
def test_unsupported_schema_features_are_a_400_naming_them(server, schema, keyword) -> None:
    client = _client(server)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="demo", messages=CHAT, max_tokens=5,
            response_format={"type": "json_schema", "json_schema": {"name": "x",
                                                                    "schema": schema}})
    error = caught.value.body
    assert caught.value.status_code == 400
    assert error["code"] == "unsupported_schema" and error["param"] == "response_format"
    assert keyword in error["message"]


def test_bad_response_format_is_refused_by_name(server) -> None:
    r = requests.post(server.base_url + "/chat/completions", timeout=60, json={
        "model": "demo", "messages": CHAT, "max_tokens": 2, "response_format": {"type": "yaml"}})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "response_format"


def test_an_engine_without_grammars_refuses_instead_of_ignoring(cat: Catalog) -> None:
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="gated", engine="llama.cpp")
    with server_thread(config, GatedEngine()) as live:
        r = requests.post(live.base_url + "/chat/completions", timeout=60, json={
            "model": "gated", "messages": CHAT, "max_tokens": 2, "response_format": FORMAT})
    assert r.status_code == 400 and r.json()["error"]["param"] == "response_format", r.text


def test_schema_checks_walk_the_whole_schema() -> None:
    check_schema(SCHEMA, "response_format")
    nested = {"type": "object", "$defs": {"n": {"type": "number", "maximum": 3}},
              "properties": {"a": {"$ref": "#/$defs/n"}}}
    with pytest.raises(APIError, match="maximum.*\\$defs/n"):
        check_schema(nested, "response_format")
    assert response_format_grammar({"type": "text"}) is None
    assert "root ::=" in response_format_grammar({"type": "json_object"})
