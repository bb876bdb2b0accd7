"""The loop's first half: ratings from the API, linked to their request, become datasets."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
import requests

from llmops_desktop.catalog import Catalog
from llmops_desktop.datasets.shapes import detect_shape, normalize_row
from llmops_desktop.datasets.store import import_dataset, read_rows
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.paths import Home
from llmops_desktop.serving.engines.base import EngineSettings, get_engine
from llmops_desktop.serving.feedback import Feedback, feedback_rows, rate
from llmops_desktop.serving.feedback_data import build_rows, feedback_to_dataset
from llmops_desktop.serving.recorder import RequestRecorder
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import make_deployment, server_thread

KEY = "sk-feedback-test-key"


@pytest.fixture(scope="module")
def loop_home(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path) -> Home:
    home = Home.resolve(tmp_path_factory.mktemp("loop") / "home")
    with Catalog.open(home) as cat:
        import_artifact(cat, demo_gguf_session, "demo-gguf")
    return home


@pytest.fixture(scope="module")
def server(loop_home: Home):
    with Catalog.open(loop_home) as cat, RequestRecorder(loop_home, interval=0.2) as rec:
        engine = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                              EngineSettings(threads=1, parallel=1))
        try:
            config = make_deployment(cat, cat.resolve("demo-gguf"), name="support")
            with server_thread(config, engine, rec, api_key=KEY) as live:
                yield live
        finally:
            engine.close()


def _post(server, body: dict, key: str | None = KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return requests.post(server.url + "/v1/feedback", json=body, headers=headers, timeout=30)


def test_feedback_through_the_api_links_to_the_request_row(server, loop_home: Home) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name a colour"}]
    resp = client.chat.completions.create(model="support", messages=messages, max_tokens=8,
                                          temperature=0)
    stream = client.chat.completions.create(model="support", messages=messages, max_tokens=8,
                                            temperature=0, stream=True)
    chunks = list(stream)
    streamed_id = chunks[0].id
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    ok = _post(server, {"response_id": resp.id, "rating": 1, "comment": "nice"})
    assert ok.status_code == 200, ok.text
    fixed = _post(server, {"response_id": streamed_id, "rating": -1, "correction": "Blue."})
    assert fixed.status_code == 200, fixed.text

    with Catalog.open(loop_home) as cat:
        rows = {f.reply_id: f for f in feedback_rows(cat)}
        logged = dict(cat.conn.execute(
            "SELECT response_id, id FROM request_log WHERE response_id IS NOT NULL").fetchall())
    good, bad = rows[resp.id], rows[streamed_id]
    assert good.request_id == logged[resp.id] == ok.json()["request_id"]
    assert bad.request_id == logged[streamed_id]
    assert good.reply == resp.choices[0].message.content and good.rating == 1
    assert bad.reply == streamed_text and bad.correction == "Blue." and bad.rating == -1
    assert good.system_prompt == "Be brief."
    assert good.messages == [{"role": "user", "content": "Name a colour"}]
    assert good.artifact_id == server.state.deployment.artifact_id and good.source == "api"
    assert good.comment == "nice"

    # Taking a rating back removes it.
    assert _post(server, {"response_id": resp.id, "rating": 0}).status_code == 200
    with Catalog.open(loop_home) as cat:
        assert resp.id not in {f.reply_id for f in feedback_rows(cat)}


def test_feedback_is_checked_and_needs_the_key(server) -> None:
    assert _post(server, {"response_id": "chatcmpl-nope", "rating": 1}).status_code == 404
    bad = _post(server, {"response_id": "x", "rating": 2})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rating"
    assert _post(server, {"rating": 1}).status_code == 400
    assert _post(server, {"response_id": "x", "rating": True}).status_code == 400
    assert _post(server, {"response_id": "x", "rating": 1}, key=None).status_code == 401


# ---- feedback becomes data --------------------------------------------------------------

def _rate(catalog: Catalog, rid: str, rating: int, reply: str, question: str, *,
          correction: str = "", prompt_ref: str = "") -> None:
    rate(catalog, Feedback(reply_id=rid, rating=rating, reply=reply, prompt=question,
                           messages=[{"role": "user", "content": question}],
                           system_prompt="Be kind.", correction=correction,
                           prompt_ref=prompt_ref))


def _rate_sample(catalog: Catalog, refs: tuple[str, str, str, str] = ("", "", "", "")
                 ) -> dict[str, int]:
    """A liked and a disliked answer to one question, a disliked one with a correction, and
    a liked one with no disliked twin (each served with the prompt in ``refs``); the
    feedback rows' ids by reply."""
    _rate(catalog, "a1", 1, "Paris.", "Capital of France?", prompt_ref=refs[0])
    _rate(catalog, "a2", -1, "Lyon.", "Capital of France?", prompt_ref=refs[1])
    _rate(catalog, "b1", -1, "Two.", "1+2?", correction="Three.", prompt_ref=refs[2])
    _rate(catalog, "c1", 1, "Alone.", "Unpaired?", prompt_ref=refs[3])  # no disliked twin
    return {f.reply_id: i for i, f in enumerate(feedback_rows(catalog), start=1)}


def _assert_sample_pairs(version, ids: dict[str, int]) -> None:
    """The two preference rows :func:`_rate_sample` makes, and the ratings they came from."""
    assert version.shape == "preference"
    rows = read_rows(version)
    system = {"role": "system", "content": "Be kind."}
    assert {"prompt": [system, {"role": "user", "content": "Capital of France?"}],
            "chosen": "Paris.", "rejected": "Lyon."} in rows
    assert {"prompt": [system, {"role": "user", "content": "1+2?"}],
            "chosen": "Three.", "rejected": "Two."} in rows
    assert len(rows) == 2
    assert sorted(version.metadata["from_feedback"]["ids"]) == sorted(
        [ids["a1"], ids["a2"], ids["b1"]])


def test_preference_rows_from_liked_disliked_pairs_and_corrections(catalog: Catalog) -> None:
    ids = _rate_sample(catalog, ("geo@1", "geo@1", "math@1", "geo@2"))

    version = feedback_to_dataset(catalog, name="prefs", kind="preference")
    _assert_sample_pairs(version, ids)

    sft = feedback_to_dataset(catalog, name="sft", kind="sft")
    replies = sorted(r["messages"][-1]["content"] for r in read_rows(sft))
    assert replies == ["Alone.", "Paris.", "Three."]
    assert sft.shape == "chat"

    only_geo = build_rows(catalog, kind="sft", prompt="geo")
    assert sorted(r["messages"][-1]["content"] for r in only_geo.rows) == ["Alone.", "Paris."]
    assert build_rows(catalog, kind="sft", prompt="geo@1").rows[0]["messages"][-1][
        "content"] == "Paris."
    assert not build_rows(catalog, kind="sft", since="2999-01-01").rows
    with pytest.raises(InvalidInputError):
        feedback_to_dataset(catalog, name="none", kind="preference", since="2999-01-01")


def test_the_preference_shape_is_recognised(catalog: Catalog, tmp_path: Path) -> None:
    shape, mapping = detect_shape(["prompt", "chosen", "rejected"])
    assert shape == "preference"
    trl_style = {"prompt": [{"role": "user", "content": "Hi"}],
                 "chosen": [{"role": "assistant", "content": "Hello!"}],
                 "rejected": [{"role": "assistant", "content": "Go away."}]}
    assert normalize_row(trl_style, shape, mapping) == {
        "prompt": [{"role": "user", "content": "Hi"}], "chosen": "Hello!",
        "rejected": "Go away."}
    # prompt and completion alone stay prompt/completion ("chosen" is an alias there).
    assert detect_shape(["prompt", "chosen"])[0] == "prompt_completion"
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Say hi", "chosen": "Hi!", "rejected": "No."},
        {"prompt": "Say bye", "chosen": "Bye!", "rejected": 3}]) + "\n")
    version = import_dataset(catalog, path, name="pairs")
    assert version.shape == "preference" and version.rows == 2


def test_cli_feedback_to_dataset(catalog: Catalog, home: Home, capsys) -> None:
    from llmops_desktop.cli import main

    _rate(catalog, "x1", 1, "Yes.", "Ok?")
    _rate(catalog, "x2", -1, "No.", "Ok?")
    assert main(["--home", str(home.root), "feedback", "to-dataset", "--name", "cli-prefs",
                 "--kind", "preference", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ref"] == "cli-prefs@1" and out["shape"] == "preference" and out["rows"] == 1
    assert main(["--home", str(home.root), "feedback", "to-dataset", "--kind", "sft"]) == 5


def test_feedback_through_the_gateway(home: Home, catalog: Catalog, demo_gguf) -> None:
    from tests.gateway_fixtures import gateway_process, two_models

    from llmops_desktop.prompts.store import create_prompt

    alpha, _ = two_models(catalog, demo_gguf)
    create_prompt(catalog, "greeter", "Greet {{name}}", params={"max_tokens": 3},
                  artifact_ref=alpha.ref, alias="prod")
    with gateway_process(home, "--idle-unload", "0") as gw:
        client = openai.OpenAI(base_url=gw.base_url, api_key="none", max_retries=0,
                               timeout=120)
        resp = client.chat.completions.create(model="alpha", max_tokens=4, temperature=0,
                                              messages=[{"role": "user", "content": "Hi"}])
        ok = requests.post(gw.url + "/v1/feedback", timeout=60,
                           json={"response_id": resp.id, "rating": -1, "correction": "Hello!"})
        assert ok.status_code == 200, ok.text
        missing = requests.post(gw.url + "/v1/feedback", timeout=60,
                                json={"response_id": "chatcmpl-none", "rating": 1})
        assert missing.status_code == 404
        # A prompt by name through the gateway: to the model its version was written for.
        greeted = client.chat.completions.create(model="prompt:greeter", messages=[],
                                                 extra_body={"variables": {"name": "Ann"}})
        assert greeted.usage.completion_tokens <= 3
        assert requests.post(gw.url + "/v1/feedback", timeout=60, json={
            "response_id": greeted.id, "rating": 1}).json()["prompt"] == "greeter@1"
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="prompt:nobody", messages=[])
    rated = {f.reply_id: f for f in feedback_rows(catalog)}[resp.id]
    row = catalog.conn.execute("SELECT id, artifact_id FROM request_log WHERE response_id = ?",
                               (resp.id,)).fetchone()
    assert (rated.request_id, rated.artifact_id) == (row[0], alpha.id)
    assert rated.reply == resp.choices[0].message.content and rated.correction == "Hello!"
    assert rated.messages == [{"role": "user", "content": "Hi"}]


def test_a_chat_session_rating_links_to_the_request_row(server, loop_home: Home) -> None:
    from llmops_desktop.serving.chat_session import ChatSession, ChatTarget, Sampling

    dep = server.state.deployment
    with Catalog.open(loop_home) as cat:
        session = ChatSession(ChatTarget(url=server.url, model="support", api_key=KEY,
                                         deployment_id=dep.id, artifact_id=dep.artifact_id,
                                         artifact_ref=dep.artifact_ref),
                              catalog=cat, sampling=Sampling(max_tokens=6, seed=1))
        events = list(session.send("Name a colour"))
        turn = session.last_reply()
        assert turn.state == "done" and turn.stats.response_id.startswith("chatcmpl-"), events
        assert server.state.recorder.flush()
        session.rate(turn.reply_id, 1)
        rated = {f.reply_id: f for f in feedback_rows(cat)}[turn.reply_id]
        row = cat.conn.execute("SELECT id FROM request_log WHERE response_id = ?",
                               (turn.stats.response_id,)).fetchone()
    assert rated.request_id == row[0] and rated.source == "chat"
