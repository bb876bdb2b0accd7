"""Tool calls (#15 item 5): named and required tool choices constrained by a grammar (the
arguments validate against the function's parameters), streamed deltas the openai client
reassembles, tool results back through the template, and the parsers of the common
template families."""

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
from llmops_desktop.serving.tool_parsing import family_of, parse_tool_calls
from llmops_desktop.serving.tools import plan_output
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import make_deployment, server_thread

COLOR = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                          "loud": {"type": "boolean"}},
         "required": ["color", "loud"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "set_color", "description": "Set a color",
                                           "parameters": COLOR}},
         {"type": "function", "function": {"name": "ping", "parameters": {
             "type": "object", "properties": {}}}}]
PARAMS = {"set_color": COLOR, "ping": {"type": "object", "properties": {},
                                       "additionalProperties": False}}
CHAT = [{"role": "user", "content": "Make it red."}]
NAMED = {"type": "function", "function": {"name": "set_color"}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path):
    home = Home.resolve(tmp_path_factory.mktemp("tools") / "home")
    with Catalog.open(home) as cat:
        artifact = import_artifact(cat, demo_gguf_session, "demo-gguf")
        engine = get_engine("llama.cpp").load(artifact.path,
                                              EngineSettings(threads=1, parallel=2))
        try:
            with server_thread(make_deployment(cat, artifact, name="demo"), engine) as live:
                yield live
        finally:
            engine.close()


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0,
                         timeout=120)


def _valid(call) -> dict:
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, PARAMS[call.function.name])
    return args


def test_named_tool_call_arguments_validate(server) -> None:
    reply = _client(server).chat.completions.create(
        model="demo", messages=CHAT, tools=TOOLS, tool_choice=NAMED, max_tokens=120,
        temperature=0.9, seed=5)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "set_color"
    assert calls[0].id.startswith("call_") and calls[0].type == "function"
    assert _valid(calls[0])["color"] in ("red", "green", "blue")


def test_a_parameters_schema_with_references(server) -> None:
    pick = {"type": "object", "$defs": {"size": {"enum": ["S", "M", "L"]}},
            "properties": {"size": {"$ref": "#/$defs/size"}}, "required": ["size"],
            "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "pick", "parameters": pick}}]
    for choice in ("required", {"type": "function", "function": {"name": "pick"}}):
        reply = _client(server).chat.completions.create(
            model="demo", messages=CHAT, tools=tools, tool_choice=choice, max_tokens=60,
            temperature=1.0, seed=9)
        call = reply.choices[0].message.tool_calls[0]
        assert call.function.name == "pick"
        jsonschema.validate(json.loads(call.function.arguments), pick)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_required_tool_choice_always_calls_an_offered_tool(server, seed: int) -> None:
    reply = _client(server).chat.completions.create(
        model="demo", messages=CHAT, tools=TOOLS, tool_choice="required", temperature=1.0,
        seed=seed)  # max_tokens: what the context leaves
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls" and calls
    for call in calls:
        _valid(call)


def test_streamed_tool_call_is_reassembled_by_the_client(server) -> None:
    client = _client(server)
    whole = client.chat.completions.create(model="demo", messages=CHAT, tools=TOOLS,
                                           tool_choice=NAMED, max_tokens=120, temperature=0)
    expected = whole.choices[0].message.tool_calls[0]
    with client.chat.completions.stream(model="demo", messages=CHAT, tools=TOOLS,
                                        tool_choice=NAMED, max_tokens=120,
                                        temperature=0) as stream:
        deltas = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    assert len(deltas) > 1  # the arguments came in pieces
    call = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert (call.function.name, call.function.arguments) == (expected.function.name,
                                                             expected.function.arguments)
    _valid(call)


def test_tool_result_goes_back_through_the_template(server) -> None:
    client = _client(server)
    first = client.chat.completions.create(model="demo", messages=CHAT, tools=TOOLS,
                                           tool_choice=NAMED, max_tokens=120, temperature=0)
    call = first.choices[0].message.tool_calls[0]
    turn = [*CHAT, {"role": "assistant", "content": None,
                    "tool_calls": [call.model_dump(exclude_none=True)]}]
    short = [*turn, {"role": "tool", "tool_call_id": call.id, "content": "done"}]
    long = [*turn, {"role": "tool", "tool_call_id": call.id,
                    "content": "done: the color is now red at level 3, as asked"}]
    a = client.chat.completions.create(model="demo", messages=short, tools=TOOLS,
                                       max_tokens=3, temperature=0)
    b = client.chat.completions.create(model="demo", messages=long, tools=TOOLS,
                                       max_tokens=3, temperature=0)
    assert a.choices[0].finish_reason in ("stop", "length")
    assert b.usage.prompt_tokens > a.usage.prompt_tokens  # the result is in the prompt

    # what the template gets: the call (arguments as an object) and the result with its id
    req = type("Req", (), {"model_extra": {"tools": TOOLS}})()
    native = plan_output(req, "chat", type("E", (), {
        "chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}{{ tools }}<tool_call>",
        "supports_grammar": True})())
    raw = [type("M", (), {"model_extra": m})() for m in (
        {}, {"tool_calls": short[1]["tool_calls"]}, {"tool_call_id": call.id})]
    checked = [{"role": "user", "content": "Make it red."},
               {"role": "assistant", "content": ""}, {"role": "tool", "content": "done"}]
    out = native.messages(checked, raw)
    assert out[1]["tool_calls"][0]["function"]["arguments"] == json.loads(
        call.function.arguments)
    assert out[2] == {"role": "tool", "content": "done", "tool_call_id": call.id,
                      "name": "set_color"}


def test_auto_and_none_leave_text_as_text(server) -> None:
    client = _client(server)
    for choice in ("auto", "none"):
        reply = client.chat.completions.create(model="demo", messages=CHAT, tools=TOOLS,
                                               tool_choice=choice, max_tokens=8, temperature=0)
        assert reply.choices[0].message.tool_calls is None
        assert reply.choices[0].finish_reason in ("stop", "length")


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "tools"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "maximum": 3}}}}}]}, "tools"),
    ({"tools": TOOLS, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
])
def test_bad_tool_requests_are_a_400_naming_the_field(server, body, param) -> None:
    r = requests.post(server.base_url + "/chat/completions", timeout=60,
                      json={"model": "demo", "messages": CHAT, "max_tokens": 2, **body})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_tools_are_for_chat_only(server) -> None:
    r = requests.post(server.base_url + "/completions", timeout=60,
                      json={"model": "demo", "prompt": "x", "max_tokens": 2, "tools": TOOLS})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tools"


# ---- the parsers, one per template family ---------------------------------------------------

NAMES = {"set_color", "ping"}


@pytest.mark.parametrize(("family", "text", "content"), [
    ("hermes", 'Sure.<tool_call>\n{"name": "set_color", "arguments": {"color": "red", '
               '"level": 1}}\n</tool_call>\n<tool_call>{"name": "ping", "arguments": {}}'
               "</tool_call>", "Sure."),
    ("llama3", '<|python_tag|>{"name": "set_color", "parameters": {"color": "red", '
               '"level": 1}}; {"name": "ping", "parameters": {}}', None),
    ("mistral", '[TOOL_CALLS][{"name": "set_color", "arguments": {"color": "red", "level": 1}},'
                ' {"name": "ping", "arguments": {}}]', None),
    ("mistral", '[TOOL_CALLS]set_color[ARGS]{"color": "red", "level": 1}[TOOL_CALLS]ping'
                "[ARGS]{}", None),
    ("generic", '```json\n{"tool_calls": [{"name": "set_color", "arguments": {"color": "red", '
                '"level": 1}}, {"name": "ping", "arguments": "{}"}]}\n```', None),
])
def test_each_family_parses(family: str, text: str, content: str | None) -> None:
    got_content, calls = parse_tool_calls(text, family, NAMES)
    assert got_content == content
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("set_color", {"color": "red", "level": 1}), ("ping", {})]
    assert len({c.id for c in calls}) == 2


def test_text_and_unknown_functions_stay_text() -> None:
    for text in ("Hello there", '{"name": "rm_rf", "arguments": {}}', "{not json",
                 '<tool_call>{"name": "ping"', '[1, 2]'):
        assert parse_tool_calls(text, "hermes", NAMES) == (text, [])


def test_family_detection() -> None:
    assert family_of("{{ '<tool_call>' }}") == "hermes"
    assert family_of("[TOOL_CALLS]") == "mistral"
    assert family_of("<|start_header_id|>{% if tools %}") == "llama3"
    assert family_of(None) == "generic"


# ---- a template that renders tools itself (Hermes/Qwen style) --------------------------------

HERMES = """{%- if tools %}<|im_start|>system
# Tools
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>
Call a tool as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'assistant' and message.tool_calls is defined %}<|im_start|>assistant
{% for tc in message.tool_calls %}<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def test_a_tools_template_gets_tools_calls_and_results(demo_gguf_session: Path) -> None:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    from llmops_desktop.serving.config import DeploymentConfig, ServeOptions

    config = DeploymentConfig(name="hermes", artifact_id=1, artifact_ref="demo@1",
                              model_name="demo", model_path=demo_gguf_session,
                              options=ServeOptions(engine="llama.cpp", name="hermes"))
    engine = get_engine("llama.cpp").load(demo_gguf_session,
                                          EngineSettings(threads=1, chat_template=HERMES))
    try:
        with server_thread(config, engine) as live:
            client = _client(live)
            bare = client.chat.completions.create(model="hermes", messages=CHAT, max_tokens=2)
            offered = client.chat.completions.create(model="hermes", messages=CHAT,
                                                     tools=TOOLS[:1], max_tokens=2)
            named = client.chat.completions.create(model="hermes", messages=CHAT,
                                                   tools=TOOLS[:1], tool_choice=NAMED,
                                                   temperature=0)
        # the tools reached the template: the prompt grew by the rendered tools' tokens
        with_tools = Jinja2ChatFormatter(HERMES, "", "")(messages=CHAT, tools=TOOLS[:1])
        without = Jinja2ChatFormatter(HERMES, "", "")(messages=CHAT)
        grown = len(engine.tokenize(with_tools.prompt)) - len(engine.tokenize(without.prompt))
    finally:
        engine.close()
    assert "<tools>" in with_tools.prompt and grown > 0
    assert offered.usage.prompt_tokens - bare.usage.prompt_tokens == grown
    call = named.choices[0].message.tool_calls[0]
    _valid(call)

    req = type("Req", (), {"model_extra": {"tools": TOOLS[:1]}})()
    plan = plan_output(req, "chat", type("E", (), {"chat_template": HERMES,
                                                    "supports_grammar": True})())
    assert plan.native and plan.family == "hermes"
    raw = [type("M", (), {"model_extra": m})() for m in (
        {}, {"tool_calls": [call.model_dump(exclude_none=True)]}, {"tool_call_id": call.id})]
    checked = [{"role": "user", "content": "Make it red."},
               {"role": "assistant", "content": ""}, {"role": "tool", "content": "It is red."}]
    prompt = Jinja2ChatFormatter(HERMES, "", "")(messages=plan.messages(checked, raw),
                                                 tools=plan.template_tools).prompt
    assert '"name": "set_color"' in prompt and "<tools>" in prompt
    assert "<tool_response>\nIt is red.\n</tool_response>" in prompt
    assert json.dumps(json.loads(call.function.arguments), ensure_ascii=False) in prompt

