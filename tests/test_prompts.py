"""Versioned prompts: stored, aliased, diffed, and served by name with a split."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import ConflictError, InvalidInputError, NotFoundError
from llmops_desktop.paths import Home
from llmops_desktop.prompts.store import (
    create_prompt,
    diff,
    list_prompts,
    resolve_prompt,
    set_alias,
)
from llmops_desktop.prompts.templates import fill, variables
from llmops_desktop.serving.engines.base import EngineSettings, get_engine
from llmops_desktop.serving.feedback import feedback_rows
from llmops_desktop.serving.recorder import RequestRecorder
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import make_deployment, server_thread

SYSTEM = "You help {{product}} users."
TEMPLATE = "Question: {{question}}"


def test_templates_fill_and_name_their_variables() -> None:
    assert variables(SYSTEM, TEMPLATE + " {{ product }}") == ["product", "question"]
    assert fill('{"a": 1} {{x}}', {"x": 2}) == '{"a": 1} 2'
    with pytest.raises(InvalidInputError, match="question"):
        fill(TEMPLATE, {"product": "p"})


def test_versions_are_immutable_and_aliases_move(catalog: Catalog) -> None:
    v1 = create_prompt(catalog, "bot", TEMPLATE, system_prompt=SYSTEM,
                       params={"temperature": 0.0}, alias="prod")
    with pytest.raises(ConflictError, match="bot@1"):
        create_prompt(catalog, "bot", TEMPLATE, system_prompt=SYSTEM, params={"temperature": 0})
    v2 = create_prompt(catalog, "bot", TEMPLATE + " Be brief.", system_prompt=SYSTEM,
                       params={"temperature": 0.0}, alias="candidate")
    assert (v1.ref, v2.ref) == ("bot@1", "bot@2") and v1.sha256 != v2.sha256
    assert resolve_prompt(catalog, "bot@prod")[0] == v1
    assert resolve_prompt(catalog, "bot@2")[0] == v2
    assert resolve_prompt(catalog, "bot")[0] == v1  # no split: prod
    set_alias(catalog, "bot", "prod", 2)
    assert resolve_prompt(catalog, "bot@prod")[0] == v2
    assert resolve_prompt(catalog, "bot@1")[0] == v1  # the version itself never changed
    assert "+template: Question: {{question}} Be brief." in diff(v1, v2)
    assert list_prompts(catalog)[0]["aliases"] == {"candidate": 2, "prod": 2}
    with pytest.raises(NotFoundError):
        resolve_prompt(catalog, "bot@staging")
    with pytest.raises(NotFoundError):
        set_alias(catalog, "bot", "prod", 7)
    with pytest.raises(InvalidInputError):
        create_prompt(catalog, "bad@name", TEMPLATE)
    with pytest.raises(InvalidInputError):
        create_prompt(catalog, "bot", TEMPLATE, params={"logit_bias": 1})


def test_prompt_cli(home: Home, capsys) -> None:
    from llmops_desktop.cli import main

    base = ["--home", str(home.root), "prompt"]
    assert main([*base, "create", "cli", "--template", "Hi {{name}}", "--alias", "prod"]) == 0
    assert main([*base, "create", "cli", "--template", "Hello {{name}}", "--temperature",
                 "0.2"]) == 0
    assert main([*base, "alias", "cli", "candidate", "2", "--weight", "10"]) == 0
    capsys.readouterr()
    assert main([*base, "diff", "cli@1", "2"]) == 0
    assert "+template: Hello {{name}}" in capsys.readouterr().out
    assert main([*base, "show", "cli@candidate", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["ref"] == "cli@2" and shown["params"] == {"temperature": 0.2}
    assert shown["aliases"]["candidate"] == {"version": 2, "weight": 10.0}
    assert main([*base, "show", "nope"]) == 3


# ---- served by name -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prompt_home(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path) -> Home:
    home = Home.resolve(tmp_path_factory.mktemp("prompts") / "home")
    with Catalog.open(home) as cat:
        import_artifact(cat, demo_gguf_session, "demo-gguf")
        create_prompt(cat, "support-bot", TEMPLATE, system_prompt=SYSTEM,
                      params={"temperature": 0.0, "max_tokens": 6}, alias="prod",
                      artifact_ref=cat.resolve("demo-gguf").ref)
        create_prompt(cat, "support-bot", "Q: {{question}}", system_prompt=SYSTEM,
                      params={"temperature": 0.0, "max_tokens": 6}, alias="candidate")
    return home


@pytest.fixture(scope="module")
def live(prompt_home: Home):
    with Catalog.open(prompt_home) as cat, RequestRecorder(prompt_home, interval=0.2) as rec:
        engine = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                              EngineSettings(threads=1, parallel=1))
        try:
            config = make_deployment(cat, cat.resolve("demo-gguf"), name="support")
            with server_thread(config, engine, rec) as server:
                yield server, rec
        finally:
            engine.close()


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def _prompt_series(server) -> dict[tuple[str, str], float]:
    text = requests.get(server.url + "/metrics", timeout=10).text
    return {(s.labels["prompt"], s.labels["version"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == "llmops_prompt_requests_total" and s.labels["status"] == "200"}


def test_a_prompt_is_served_by_name(live, prompt_home: Home) -> None:
    server, rec = live
    client = _client(server)
    variables_ = {"product": "LLMOps", "question": "how do I serve?"}
    resp = client.chat.completions.create(model="prompt:support-bot@prod", messages=[],
                                          extra_body={"variables": variables_})
    # The same request written out by hand: the template filled, the prompt's settings.
    by_hand = client.chat.completions.create(
        model="support", temperature=0.0, max_tokens=6,
        messages=[{"role": "system", "content": "You help LLMOps users."},
                  {"role": "user", "content": "Question: how do I serve?"}])
    assert resp.choices[0].message.content == by_hand.choices[0].message.content
    assert resp.usage.completion_tokens == by_hand.usage.completion_tokens <= 6
    assert resp.usage.prompt_tokens == by_hand.usage.prompt_tokens
    assert _prompt_series(server)[("support-bot", "1")] == 1
    assert rec.flush()
    with Catalog.open(prompt_home) as cat:
        refs = dict(cat.conn.execute("SELECT response_id, prompt_ref FROM request_log"))
    assert refs[resp.id] == "support-bot@1" and refs[by_hand.id] is None
    # A rating of the reply names the prompt version.
    ok = requests.post(server.url + "/v1/feedback", timeout=30,
                       json={"response_id": resp.id, "rating": 1})
    assert ok.status_code == 200 and ok.json()["prompt"] == "support-bot@1"
    with Catalog.open(prompt_home) as cat:
        rated = next(f for f in feedback_rows(cat) if f.reply_id == resp.id)
    assert rated.prompt_ref == "support-bot@1"
    assert rated.messages == [{"role": "user", "content": "Question: how do I serve?"}]

    # A response schema constrains the reply (a grammar on the llama.cpp engine).
    schema = {"type": "object", "properties": {"answer": {"type": "string", "maxLength": 12}},
              "required": ["answer"], "additionalProperties": False}
    with Catalog.open(prompt_home) as cat:
        create_prompt(cat, "json-bot", TEMPLATE, params={"max_tokens": 60, "temperature": 0},
                      response_schema=schema)
    shaped = client.chat.completions.create(model="prompt:json-bot", messages=[],
                                            extra_body={"variables": {"question": "x?"}})
    assert shaped.choices[0].finish_reason == "stop"
    assert set(json.loads(shaped.choices[0].message.content)) == {"answer"}

    with pytest.raises(openai.BadRequestError, match="question"):
        client.chat.completions.create(model="prompt:support-bot@prod", messages=[],
                                       extra_body={"variables": {"product": "x"}})
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="prompt:nope", messages=[])


def test_a_split_routes_its_share_to_each_version(live, prompt_home: Home) -> None:
    server, rec = live
    with Catalog.open(prompt_home) as cat:
        set_alias(cat, "support-bot", "prod", 1, weight=90)
        set_alias(cat, "support-bot", "candidate", 2, weight=10)
    before = _prompt_series(server)
    client = _client(server)
    n = 300
    for i in range(n):
        client.chat.completions.create(model="prompt:support-bot", messages=[], max_tokens=1,
                                       extra_body={"variables": {"product": "p",
                                                                 "question": str(i)}})
    after = _prompt_series(server)
    served = {v: after.get(("support-bot", v), 0) - before.get(("support-bot", v), 0)
              for v in ("1", "2")}
    assert served["1"] + served["2"] == n
    assert 0.85 <= served["1"] / n <= 0.95, served
    # The request log says the same, version by version.
    assert rec.flush()
    with Catalog.open(prompt_home) as cat:
        logged = Counter(r[0] for r in cat.conn.execute(
            "SELECT prompt_ref FROM request_log WHERE prompt_ref IS NOT NULL "
            "AND completion_tokens <= 1 AND status = 200"))
    assert logged["support-bot@1"] >= served["1"] and logged["support-bot@2"] >= served["2"]
    # One user stays on one version.
    seen = set()
    for _ in range(5):
        client.chat.completions.create(model="prompt:support-bot", messages=[], max_tokens=1,
                                       user="alice", extra_body={"variables": {
                                           "product": "p", "question": "q"}})
    with Catalog.open(prompt_home) as cat:
        assert rec.flush()
        seen = {r[0] for r in cat.conn.execute(
            "SELECT prompt_ref FROM request_log WHERE prompt_ref IS NOT NULL "
            "ORDER BY id DESC LIMIT 5")}
    assert len(seen) == 1
