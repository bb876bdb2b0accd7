"""The OpenAI-compatible server: both engines through the official client, raw HTTP for
what clients should never send, auth, disconnects, parallel clients, the bounded queue,
and the request log in the catalog and /metrics."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.paths import Home
from llmops_desktop.serving.config import ServeOptions
from llmops_desktop.serving.engines.base import (
    EngineSettings,
    PromptTokens,
    SamplingParams,
    get_engine,
)
from llmops_desktop.serving.recorder import RequestRecorder
from llmops_desktop.serving.store import RequestRecord, deployment, request_log
from llmops_desktop.serving.streaming import StopMatcher
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import GatedEngine, make_deployment, server_process, server_thread

ENGINES = ("llama.cpp", "torch")
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]


# ---- fixtures: one catalog, both engines loaded once, a server per engine ---------------------

@pytest.fixture(scope="module")
def serve_home(tmp_path_factory: pytest.TempPathFactory, demo_model_session: Path,
               demo_gguf_session: Path) -> Home:
    home = Home.resolve(tmp_path_factory.mktemp("serve") / "home")
    with Catalog.open(home) as cat:
        import_artifact(cat, demo_gguf_session, "demo-gguf")
        import_artifact(cat, demo_model_session, "demo-hf")
    return home


@pytest.fixture(scope="module")
def cat(serve_home: Home):
    with Catalog.open(serve_home) as c:
        yield c


@pytest.fixture(scope="module")
def recorder(serve_home: Home):
    with RequestRecorder(serve_home, interval=0.2) as rec:
        yield rec


@pytest.fixture(scope="module")
def engines(cat: Catalog):
    """Each engine on the demo model: llama.cpp with two contexts, torch with one slot."""
    loaded = {
        "llama.cpp": get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                                  EngineSettings(threads=1, parallel=2)),
        "torch": get_engine("torch").load(cat.resolve("demo-hf").path,
                                          EngineSettings(threads=1, device="cpu")),
    }
    yield loaded
    for engine in loaded.values():
        engine.close()


@pytest.fixture(scope="module")
def servers(cat: Catalog, engines, recorder):
    refs = {"llama.cpp": "demo-gguf", "torch": "demo-hf"}
    with server_thread(make_deployment(cat, cat.resolve("demo-gguf"), name="demo-llama"),
                       engines["llama.cpp"], recorder) as llama, \
            server_thread(make_deployment(cat, cat.resolve(refs["torch"]), name="demo-torch"),
                          engines["torch"], recorder) as torch_server:
        yield {"llama.cpp": llama, "torch": torch_server}


def _client(server, **kw) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=kw.pop("api_key", "unused"),
                         max_retries=0, timeout=60, **kw)


def _metrics(url: str, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    text = requests.get(url + "/metrics", headers=headers, timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _rows(cat: Catalog, recorder: RequestRecorder, deployment_id: int) -> list[RequestRecord]:
    assert recorder.flush()
    return request_log(cat, deployment_id=deployment_id)


# ---- the official client against each engine -------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_openai_client_completions_and_chat(servers, engine: str) -> None:
    server = servers[engine]
    client = _client(server)
    name = server.state.deployment.name
    assert [m.id for m in client.models.list().data] == [name]

    done = client.completions.create(model=name, prompt="The quick brown fox", max_tokens=12,
                                     temperature=0)
    assert done.usage.prompt_tokens > 0 and 0 < done.usage.completion_tokens <= 12
    assert done.choices[0].finish_reason in ("length", "stop") and done.choices[0].text
    streamed = list(client.completions.create(model=name, prompt="The quick brown fox",
                                              max_tokens=12, temperature=0, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == done.choices[0].text
    assert streamed[-1].choices[0].finish_reason == done.choices[0].finish_reason

    chat = client.chat.completions.create(model=name, messages=CHAT, max_tokens=10,
                                          temperature=0.8, seed=7)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content
    again = client.chat.completions.create(model=name, messages=CHAT, max_tokens=10,
                                           temperature=0.8, seed=7)
    assert again.choices[0].message.content == chat.choices[0].message.content  # same seed
    chunks = list(client.chat.completions.create(
        model=name, messages=CHAT, max_tokens=10, temperature=0.8, seed=7, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        chat.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == chat.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == chat.usage.prompt_tokens > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_strings_cut_the_text(servers, engine: str) -> None:
    server = servers[engine]
    client = _client(server)
    name = server.state.deployment.name
    full = client.completions.create(model=name, prompt="Import a model", max_tokens=20,
                                     temperature=0).choices[0].text
    stop = full[len(full) // 2:len(full) // 2 + 2]
    assert stop.strip(), f"pick a visible stop string from {full!r}"
    for stream in (False, True):
        result = client.completions.create(model=name, prompt="Import a model", max_tokens=20,
                                           temperature=0, stop=[stop], stream=stream)
        chunks = list(result) if stream else [result]
        text = "".join(c.choices[0].text for c in chunks)
        assert text == full[:full.index(stop)]
        assert chunks[-1].choices[0].finish_reason == "stop"


def test_chat_without_a_template_is_400_and_completions_still_work(
        cat: Catalog, demo_gguf_session: Path, tmp_path: Path) -> None:
    data = demo_gguf_session.read_bytes()
    assert data.count(b"tokenizer.chat_template") == 1
    plain = tmp_path / "no-template.gguf"  # the same model, its template key renamed
    plain.write_bytes(data.replace(b"tokenizer.chat_template", b"tokenizer.chat_templatX"))
    artifact = import_artifact(cat, plain, "no-template")
    engine = get_engine("llama.cpp").load(artifact.path, EngineSettings(threads=1))
    assert not engine.has_chat_template
    with server_thread(make_deployment(cat, artifact), engine) as server:
        client = _client(server)
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="no-template", messages=CHAT)
        assert err.value.status_code == 400
        assert err.value.body["code"] == "chat_template_missing"
        assert "no chat template" in err.value.body["message"]
        done = client.completions.create(model="no-template", prompt="Hello", max_tokens=4)
        assert done.usage.completion_tokens > 0
    engine.close()


# ---- what a client should never send ----------------------------------------------------------

def test_malformed_requests_get_openai_style_4xx(servers) -> None:
    server = servers["llama.cpp"]
    url, name = server.url, server.state.deployment.name
    chat_url, comp_url = url + "/v1/chat/completions", url + "/v1/completions"
    msgs = [{"role": "user", "content": "hi"}]
    long_prompt = "token " * 2000
    cases = [
        (chat_url, b"{not json", 400, "invalid_json", None),
        (chat_url, b"[1, 2]", 400, "invalid_json", None),
        (chat_url, {"messages": msgs}, 400, "missing_required_parameter", "model"),
        (chat_url, {"model": name, "messages": "hi"}, 400, "invalid_value", "messages"),
        (chat_url, {"model": name, "messages": []}, 400, "invalid_value", "messages"),
        (chat_url, {"model": name, "messages": [{"role": "robot", "content": "x"}]}, 400,
         "invalid_value", "messages.0.role"),
        (chat_url, {"model": name, "messages": msgs, "max_tokens": "ten"}, 400,
         "invalid_value", "max_tokens"),
        (chat_url, {"model": name, "messages": msgs, "temperature": "hot"}, 400,
         "invalid_value", "temperature"),
        (chat_url, {"model": name, "messages": msgs, "temperature": 9}, 400,
         "invalid_value", "temperature"),
        (chat_url, {"model": name, "messages": msgs, "stream": "yes"}, 400,
         "invalid_value", "stream"),
        (chat_url, {"model": "gpt-4o", "messages": msgs}, 404, "model_not_found", "model"),
        (chat_url, {"model": name, "messages": msgs, "max_tokens": -5}, 400,
         "invalid_value", "max_tokens"),
        (chat_url, {"model": name, "messages": msgs, "max_tokens": 10**12}, 400,
         "context_length_exceeded", "max_tokens"),
        (chat_url, {"model": name, "messages": msgs, "n": 3}, 400, "invalid_value", "n"),
        (comp_url, {"model": name, "prompt": long_prompt}, 400, "context_length_exceeded",
         "prompt"),
        (comp_url, {"model": name, "prompt": 12}, 400, "invalid_value", "prompt"),
        (comp_url, {"model": name, "prompt": [999999]}, 400, "invalid_value", "prompt"),
        (url + "/v1/nothing-here", {}, 404, "not_found", None),
    ]
    for target, body, status, code, param in cases:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = requests.post(target, data=raw, headers={"Content-Type": "application/json"},
                          timeout=30)
        assert r.status_code == status, (body, r.text)
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, r.text
        assert error["code"] == code and error["param"] == param, (body, error)
        assert error["message"]
    ok = _client(server).completions.create(model=name, prompt="still here", max_tokens=3)
    assert ok.usage.completion_tokens > 0  # the server kept serving
    assert requests.get(url + "/health", timeout=10).json()["status"] == "ok"


def test_api_key_is_required_and_compared(cat: Catalog, engines) -> None:
    key = "s3cret-key-for-tests"
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="guarded")
    with server_thread(config, engines["llama.cpp"], api_key=key) as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            r = requests.get(server.url + "/v1/models", headers=headers, timeout=10)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            _client(server, api_key="wrong").models.list()
        assert requests.get(server.url + "/health", timeout=10).status_code == 200
        done = _client(server, api_key=key).completions.create(model="guarded", prompt="Hi",
                                                                max_tokens=2)
        assert done.usage.completion_tokens > 0
        assert requests.get(server.url + "/metrics", timeout=10).status_code == 401
        metrics = _metrics(server.url, {"Authorization": f"Bearer {key}"})
        assert metrics[("llmops_requests_total", (("endpoint", "other"), ("status", "401")))] >= 3


def test_other_addresses_need_an_api_key(serve_home: Home, monkeypatch) -> None:
    from llmops_desktop.serving.run import serve

    monkeypatch.delenv("LLMOPS_API_KEY", raising=False)
    with pytest.raises(InvalidInputError, match="without an API key"):
        serve("demo-gguf", ServeOptions(host="0.0.0.0"), home=serve_home)


# ---- disconnects, parallel clients, the bounded queue ------------------------------------------

def test_client_disconnecting_mid_stream_stops_its_generation(cat: Catalog, recorder) -> None:
    engine = GatedEngine()
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="gated")
    with server_thread(config, engine, recorder) as server:
        body = {"model": "gated", "prompt": "go", "max_tokens": 100, "stream": True}
        with requests.post(server.url + "/v1/completions", json=body, stream=True,
                           timeout=30) as r:
            first = next(r.iter_lines())
            assert b"first" in first
        assert engine.cancelled.wait(10), "generation went on after the client left"
        rows = _rows(cat, recorder, config.id)
        assert [(x.status, x.completion_tokens) for x in rows] == [(499, 1)]
        assert _metrics(server.url)[("llmops_requests_total",
                                     (("endpoint", "/v1/completions"), ("status", "499")))] == 1


def test_clients_leaving_while_waiting_or_before_the_answer_cancel_their_work(
        cat: Catalog, recorder) -> None:
    engine = GatedEngine(slots=1)
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="leavers", max_queue=4)
    with server_thread(config, engine, recorder) as server:
        body = {"model": "leavers", "prompt": "go", "max_tokens": 5}
        with pytest.raises(requests.ReadTimeout):  # a non-streaming request, given up on
            requests.post(server.url + "/v1/completions", json=body, timeout=0.5)
        assert engine.cancelled.wait(10)
        engine.cancelled.clear()
        with ThreadPoolExecutor(1) as pool:
            holder = pool.submit(requests.post, server.url + "/v1/completions", json=body,
                                 timeout=30)
            while server.state.admission.running < 1:
                time.sleep(0.01)
            with pytest.raises(requests.ReadTimeout):  # queued behind it, then gone
                requests.post(server.url + "/v1/completions", json=body, timeout=0.5)
            deadline = time.monotonic() + 10
            while server.state.admission.waiting and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.state.admission.waiting == 0
            engine.gate.set()
            assert holder.result().status_code == 200
        rows = _rows(cat, recorder, config.id)
    # Both leavers are recorded as 499 (the queued one may or may not have reached the
    # engine before its client was seen gone, so its token count is 0 or 1); the holder
    # got its full answer.
    results = sorted((r.status, r.completion_tokens) for r in rows)
    assert [status for status, _ in results] == [200, 499, 499]
    assert results[0] == (200, 5) and all(tokens <= 1 for _, tokens in results[1:])


def test_real_engine_stops_when_the_client_leaves(servers, cat: Catalog, recorder) -> None:
    server = servers["torch"]
    body = {"model": "demo-torch", "prompt": "Hello", "max_tokens": 400, "stream": True}
    with requests.post(server.url + "/v1/completions", json=body, stream=True, timeout=30) as r:
        next(r.iter_lines())
    deadline = time.monotonic() + 10
    while server.state.admission.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.state.admission.running == 0
    row = _rows(cat, recorder, server.state.deployment.id)[0]
    assert row.status == 499 and row.completion_tokens < 400


@pytest.mark.parametrize("engine", ENGINES)
def test_parallel_clients_get_their_own_answers(servers, engine: str) -> None:
    server = servers[engine]
    client, name = _client(server), server.state.deployment.name
    prompts = ["The quick brown fox", "Every file has", "Numbers like 1234", "Import a model",
               "Punctuation: commas", "LLMOps Desktop keeps"]

    def ask(i: int) -> str:
        kw = {"model": name, "prompt": prompts[i], "max_tokens": 16, "temperature": 0}
        if i % 2:
            return "".join(c.choices[0].text for c in client.completions.create(**kw, stream=True))
        return client.completions.create(**kw).choices[0].text

    expected = [ask(i) for i in range(len(prompts))]
    assert len(set(expected)) > 1
    with ThreadPoolExecutor(len(prompts)) as pool:
        got = list(pool.map(ask, list(range(len(prompts))) * 2))
    assert got == expected * 2


def test_queue_full_gets_503_with_retry_after(cat: Catalog) -> None:
    engine = GatedEngine(slots=1)
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="busy", max_queue=1)
    with server_thread(config, engine) as server:
        body = {"model": "busy", "prompt": "go", "max_tokens": 3}
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(requests.post, server.url + "/v1/completions", json=body,
                                timeout=30)
            while server.state.admission.running < 1:
                time.sleep(0.01)
            second = pool.submit(requests.post, server.url + "/v1/completions", json=body,
                                 timeout=30)
            while server.state.admission.waiting < 1:
                time.sleep(0.01)
            assert _metrics(server.url)[("llmops_queue_depth", ())] == 1
            third = requests.post(server.url + "/v1/completions", json=body, timeout=30)
            assert third.status_code == 503
            assert int(third.headers["Retry-After"]) >= 1
            assert third.json()["error"]["code"] == "server_overloaded"
            engine.gate.set()
            assert first.result().status_code == 200 and second.result().status_code == 200
        assert first.result().json()["choices"][0]["text"] == "first xx"


# ---- every request measured -----------------------------------------------------------------------

def test_requests_land_in_the_catalog_and_metrics(cat: Catalog, engines, recorder) -> None:
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="measured")
    with server_thread(config, engines["llama.cpp"], recorder) as server:
        client = _client(server)
        client.completions.create(model="measured", prompt="Hello", max_tokens=5, temperature=0)
        list(client.chat.completions.create(model="measured", messages=CHAT, max_tokens=6,
                                            stream=True))
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="nope", prompt="Hello", max_tokens=5)
        rows = _rows(cat, recorder, config.id)
        metrics = _metrics(server.url)
    by_status = sorted((r.endpoint, r.status, r.stream) for r in rows)
    assert by_status == [("/v1/chat/completions", 200, True), ("/v1/completions", 200, False),
                         ("/v1/completions", 404, False)]
    for row in (r for r in rows if r.status == 200):
        assert row.artifact_id == config.artifact_id and row.deployment_id == config.id
        assert row.prompt_tokens > 0 and row.completion_tokens > 0
        assert 0 < row.ttft_ms <= row.latency_ms and row.tokens_per_s > 0
        assert row.finish_reason in ("stop", "length")
    assert metrics[("llmops_requests_total",
                    (("endpoint", "/v1/completions"), ("status", "200")))] == 1
    assert metrics[("llmops_requests_total",
                    (("endpoint", "/v1/completions"), ("status", "404")))] == 1
    assert metrics[("llmops_time_to_first_token_seconds_count",
                    (("endpoint", "/v1/chat/completions"),))] == 1
    assert metrics[("llmops_request_latency_seconds_count",
                    (("endpoint", "/v1/completions"),))] == 2
    assert metrics[("llmops_generated_tokens_total", ())] == sum(r.completion_tokens for r in rows)
    assert metrics[("llmops_queue_depth", ())] == 0


def test_recorder_writes_in_batches_and_loses_nothing_on_close(serve_home: Home,
                                                               cat: Catalog) -> None:
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="batched")
    recorder = RequestRecorder(serve_home, interval=3600, batch_size=4).start()
    rows = [RequestRecord(config.id, config.artifact_id, f"2026-01-01T00:00:0{i}Z",
                          "/v1/completions", "batched", False, 200, 10.0 + i) for i in range(6)]
    for row in rows:
        recorder.record(row)
    deadline = time.monotonic() + 10
    while len(request_log(cat, deployment_id=config.id)) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(request_log(cat, deployment_id=config.id)) == 4  # one full batch, not per row
    recorder.close()
    assert sorted(r.latency_ms for r in request_log(cat, deployment_id=config.id)) == \
        [r.latency_ms for r in rows]


# ---- engines and pieces on their own ------------------------------------------------------------

@pytest.mark.parametrize("engine", ENGINES)
def test_engine_stops_at_the_cancel_flag(engines, engine: str) -> None:
    eng = engines[engine]
    cancel = threading.Event()
    pieces = []
    for piece in eng.generate(eng.tokenize("Hello world"), SamplingParams(max_tokens=100,
                                                                       temperature=0), cancel):
        pieces.append(piece)
        if len(pieces) == 3:
            cancel.set()
    assert sum(p.tokens for p in pieces) == 3
    assert isinstance(eng.tokenize_chat(CHAT), PromptTokens)


def test_torch_engine_loads_bitsandbytes_8bit(cat: Catalog) -> None:
    engine = get_engine("torch").load(cat.resolve("demo-hf").path, EngineSettings(
        threads=1, device="cpu", quantization="bnb-int8"))
    assert engine.describe()["quantization"] == "bnb-int8"
    pieces = list(engine.generate(engine.tokenize_chat(CHAT), SamplingParams(max_tokens=4),
                                  threading.Event()))
    assert 0 < sum(p.tokens for p in pieces) <= 4
    engine.close()


def test_stop_matcher_holds_back_a_possible_stop() -> None:
    m = StopMatcher(["END", "\n\n"])
    assert m.feed("abc E") == "abc "
    assert m.feed("N") == ""
    assert m.feed("x\n") == "ENx"
    assert m.feed("\nmore") == ""
    assert m.matched and m.flush() == ""


# ---- the server process -----------------------------------------------------------------------

def test_server_process_serves_logs_and_stops_cleanly(serve_home: Home, cat: Catalog) -> None:
    key = "process-key-do-not-log"
    with server_process(serve_home.root, "--artifact", "demo-gguf", "--threads", "1",
                        "--name", "proc", env={"LLMOPS_API_KEY": key}) as server:
        info = server.info
        assert info["engine"] == "llama.cpp" and info["name"] == "proc"
        client = openai.OpenAI(base_url=info["url"] + "/v1", api_key=key, max_retries=0)
        for _ in range(3):
            assert client.completions.create(model="proc", prompt="Hi", max_tokens=3).usage
        r = requests.get(info["url"] + "/v1/models", headers={"Authorization": "Bearer no"},
                         timeout=10)
        assert r.status_code == 401
        assert deployment(cat, info["deployment_id"]).state == "running"
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0, server.output
    dep = deployment(cat, info["deployment_id"])
    assert dep.state == "stopped" and dep.stopped_at
    rows = request_log(cat, deployment_id=dep.id)
    assert [r.status for r in rows] == [200, 200, 200]  # written on the way out
    assert key not in server.output
    assert key.encode() not in serve_home.catalog_path.read_bytes()
    assert os.environ.get("LLMOPS_API_KEY") != key
