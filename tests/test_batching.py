"""Continuous batching in the llama.cpp engine, through the official client against a live
server (demo model, ``--parallel 4``): batched streams match their solo runs, a request
joins running streams, cancelling one stream leaves the others intact, a second chat turn
reuses the first turn's cache, and logprobs have OpenAI's shape and the right values."""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.serving.engines.base import EngineSettings, SamplingParams, get_engine
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import make_deployment, server_thread

PROMPTS = ["Hello", "Every file has", "Numbers like 1234", "The quick brown fox"]
LONG = 500  # tokens: the demo model runs this long after "Hello" without an end token


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path):
    home = Home.resolve(tmp_path_factory.mktemp("batching") / "home")
    with Catalog.open(home) as c:
        import_artifact(c, demo_gguf_session, "demo-gguf")
        yield c


@pytest.fixture(scope="module")
def engine(cat: Catalog):
    eng = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                       EngineSettings(threads=1, parallel=4))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def server(cat: Catalog, engine):
    with server_thread(make_deployment(cat, cat.resolve("demo-gguf"), name="batch",
                                       parallel=4), engine) as live:
        yield live


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def _metric(server, name: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    values = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == name]
    assert values, f"{name} is not in /metrics"
    return values[0]


def _idle(server) -> bool:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if server.state.admission.running == 0 and server.state.engine.stats()["slots_in_use"] == 0:
            return True
        time.sleep(0.01)
    return False


def _stream_text(client: openai.OpenAI, prompt: str, max_tokens: int) -> str:
    stream = client.completions.create(model="batch", prompt=prompt, max_tokens=max_tokens,
                                       temperature=0, stream=True)
    return "".join(c.choices[0].text for c in stream)


# ---- batching ------------------------------------------------------------------------------

def test_batched_streams_match_their_solo_runs(server) -> None:
    client = _client(server)
    solo = [_stream_text(client, p, 64) for p in PROMPTS]
    assert len(set(solo)) == len(solo)
    steps0 = _metric(server, "llmops_engine_decode_steps_total")
    tokens0 = _metric(server, "llmops_generated_tokens_total")
    with ThreadPoolExecutor(8) as pool:  # 8 requests for 4 slots: the rest wait their turn
        batched = list(pool.map(lambda p: _stream_text(client, p, 64), PROMPTS * 2))
    assert batched == solo * 2
    assert _idle(server)
    steps = _metric(server, "llmops_engine_decode_steps_total") - steps0
    tokens = _metric(server, "llmops_generated_tokens_total") - tokens0
    # one decode step computes a token for every running sequence: far fewer steps than
    # tokens (one context per request would need a step per token). Not 1/4: on a loaded
    # machine the clients' requests arrive spread out, and some streams end early
    assert steps < tokens * 0.75, (steps, tokens)


def test_a_request_joins_running_streams(server) -> None:
    client = _client(server)
    events: list[tuple[str, str]] = []  # (who, what) in the order the client saw them
    lock = threading.Lock()
    started = threading.Barrier(4)

    def run(who: str, prompt: str, max_tokens: int, wait: bool) -> str:
        stream = client.completions.create(model="batch", prompt=prompt, max_tokens=max_tokens,
                                           temperature=0, stream=True)
        text = ""
        for chunk in stream:
            if chunk.choices[0].text and not text:
                with lock:
                    events.append((who, "first"))
                if wait:
                    started.wait(30)
            text += chunk.choices[0].text
        with lock:
            events.append((who, "done"))
        return text

    with ThreadPoolExecutor(3) as pool:
        running = [pool.submit(run, f"long{i}", "Hello", LONG, True) for i in range(3)]
        started.wait(30)  # all three stream before the fourth request is sent
        assert server.state.engine.stats()["slots_in_use"] == 3
        joined = run("joiner", "Every file has", 4, False)
        texts = [f.result() for f in running]
    order = [e for e in events]
    first_of_joiner = order.index(("joiner", "first"))
    dones = [order.index((f"long{i}", "done")) for i in range(3)]
    assert first_of_joiner < min(dones), order  # it produced while the others streamed
    assert joined == _stream_text(client, "Every file has", 4)
    assert texts == [_stream_text(client, "Hello", LONG)] * 3


def test_cancelling_one_stream_leaves_the_others_intact(server) -> None:
    client = _client(server)
    solo = [_stream_text(client, p, 48) for p in PROMPTS[1:]]
    gate = threading.Barrier(4)

    def keep(prompt: str) -> str:
        stream = client.completions.create(model="batch", prompt=prompt, max_tokens=48,
                                           temperature=0, stream=True)
        text = ""
        for i, chunk in enumerate(stream):
            if i == 0:
                gate.wait(30)
            text += chunk.choices[0].text
        return text

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(keep, p) for p in PROMPTS[1:]]
        leaving = client.completions.create(model="batch", prompt="Hello", max_tokens=LONG,
                                            temperature=0, stream=True)
        next(iter(leaving))
        gate.wait(30)
        leaving.close()  # the client goes away mid-stream
        assert [f.result() for f in futures] == solo
    assert _idle(server)
    assert _metric(server, "llmops_engine_slots_in_use") == 0
    assert _stream_text(client, "Hello", 8)  # the freed slot serves again


# ---- prefix reuse ---------------------------------------------------------------------------

def test_second_chat_turn_reuses_the_first_turns_cache(server, cat: Catalog) -> None:
    client = _client(server)
    turn1 = [{"role": "system", "content": "You answer in one short line. " * 8},
             {"role": "user", "content": "Name a colour."}]
    first = client.chat.completions.create(model="batch", messages=turn1, max_tokens=12,
                                           temperature=0)
    turn2 = turn1 + [{"role": "assistant", "content": first.choices[0].message.content},
                     {"role": "user", "content": "And another one?"}]
    reused0 = _metric(server, "llmops_prompt_tokens_reused_total")
    read0 = _metric(server, "llmops_prompt_tokens_prefilled_total")
    second = client.chat.completions.create(model="batch", messages=turn2, max_tokens=12,
                                            temperature=0)
    reused = _metric(server, "llmops_prompt_tokens_reused_total") - reused0
    read = _metric(server, "llmops_prompt_tokens_prefilled_total") - read0
    assert reused >= first.usage.prompt_tokens, (reused, first.usage.prompt_tokens)
    assert reused + read == second.usage.prompt_tokens
    # the same answer as a server that reads the whole conversation afresh
    with server_thread(make_deployment(cat, cat.resolve("demo-gguf"), name="batch"),
                       get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                                    EngineSettings(threads=1))) as fresh:
        again = _client(fresh).chat.completions.create(model="batch", messages=turn2,
                                                       max_tokens=12, temperature=0)
        fresh.state.engine.close()
    assert again.choices[0].message.content == second.choices[0].message.content


# ---- logprobs -------------------------------------------------------------------------------

def _reference_logprobs(path: Path, ids: list[int]) -> list[float]:
    """log-softmax of the prompt's last logits row, computed by llama-cpp-python alone."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=512, n_threads=1, verbose=False, logits_all=True)
    try:
        llm.eval(ids)
        row = [float(x) for x in llm.scores[len(ids) - 1]]
    finally:
        llm.close()
    peak = max(row)
    logz = peak + math.log(sum(math.exp(x - peak) for x in row))
    return [x - logz for x in row]


def test_completion_logprobs_have_openais_shape_and_values(server, cat: Catalog) -> None:
    client = _client(server)
    done = client.completions.create(model="batch", prompt="Every file has", max_tokens=6,
                                     temperature=0, logprobs=3)
    lp = done.choices[0].logprobs
    n = done.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == n
    assert "".join(lp.tokens) == done.choices[0].text
    for chosen, top in zip(lp.token_logprobs, lp.top_logprobs):
        values = list(top.values())
        assert values == sorted(values, reverse=True) and len(values) <= 3
        assert chosen == pytest.approx(values[0])  # greedy picks the most likely token
        assert chosen <= 0
    ids = server.state.engine.tokenize("Every file has").ids
    ref = _reference_logprobs(cat.resolve("demo-gguf").path, ids)
    assert lp.token_logprobs[0] == pytest.approx(max(ref), abs=2e-3)
    streamed = list(client.completions.create(model="batch", prompt="Every file has",
                                              max_tokens=6, temperature=0, logprobs=3,
                                              stream=True))
    got = [v for c in streamed if c.choices[0].logprobs
           for v in c.choices[0].logprobs.token_logprobs]
    assert got == pytest.approx(lp.token_logprobs)


def test_chat_logprobs_and_top_logprobs(server) -> None:
    client = _client(server)
    chat = client.chat.completions.create(
        model="batch", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
        temperature=0, logprobs=True, top_logprobs=4)
    content = chat.choices[0].logprobs.content
    assert len(content) == chat.usage.completion_tokens
    for entry in content:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 4 and tops == sorted(tops, reverse=True)
        assert entry.logprob == pytest.approx(tops[0]) and entry.logprob <= 0
        assert bytes(entry.bytes).decode("utf-8", "replace") == entry.token
        assert math.fsum(math.exp(t) for t in tops) <= 1 + 1e-6
    plain = client.chat.completions.create(
        model="batch", messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
        temperature=0, logprobs=True)
    assert [e.logprob for e in plain.choices[0].logprobs.content] == \
        pytest.approx([e.logprob for e in content])
    assert all(e.top_logprobs == [] for e in plain.choices[0].logprobs.content)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="batch", messages=[{"role": "user", "content": "x"}],
                                       max_tokens=2, top_logprobs=2)  # without logprobs


# ---- the scheduler on its own ---------------------------------------------------------------

def test_sampler_chains_are_per_sequence(engine) -> None:
    """Seeded sampling gives the same text alone and beside other sequences, and a grammar
    constrains only its own sequence."""
    from llmops_desktop.serving.engines.llama_batch import SequenceRequest

    sched = engine._scheduler
    ids = engine.tokenize("Hello").ids

    def text(req: SequenceRequest) -> str:
        return "".join(p.text for p in sched.submit(req).pieces())

    alone = text(SequenceRequest(ids, 24, temperature=0.9, seed=11))
    reqs = [SequenceRequest(ids, 24, temperature=0.9, seed=11),
            SequenceRequest(ids, 24, temperature=0.9, seed=12),
            SequenceRequest(ids, 6, temperature=0.9, seed=13, grammar='root ::= "ab" [0-9]+'),
            SequenceRequest(ids, 24, temperature=0)]
    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(text, reqs))
    assert texts[0] == alone and texts[1] != alone
    assert texts[2].startswith("ab") and texts[2][2:].isdigit(), texts[2]
    greedy = list(engine.generate(engine.tokenize("Hello"), SamplingParams(24, temperature=0),
                                  threading.Event()))
    assert texts[3] == "".join(p.text for p in greedy)


def test_long_prompts_are_read_in_chunks_between_steps(cat: Catalog, engine) -> None:
    """With a 32-token batch a 300-token prompt takes ten steps, while another sequence
    keeps generating; both answers are the ones a 512-token batch gives."""
    from llmops_desktop.serving.engines.llama_batch import SequenceRequest

    small = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                         EngineSettings(threads=1, parallel=2, batch=32))
    try:
        long_ids = engine.tokenize(" ".join(str(i) for i in range(150))).ids[:300]
        assert len(long_ids) == 300
        short_ids = engine.tokenize("Hello").ids

        def run(eng, ids, n) -> str:
            req = eng._scheduler.submit(SequenceRequest(list(ids), n, temperature=0))
            return "".join(p.text for p in req.pieces())

        expected = [run(engine, long_ids, 16), run(engine, short_ids, 120)]
        steps0 = small.stats()["decode_steps"]
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(run, small, short_ids, 120)
            got_long = pool.submit(run, small, long_ids, 16).result()
            got_short = running.result()
        assert [got_long, got_short] == expected
        assert small.stats()["prefilled_prompt_tokens"] >= 300
        # ~10 chunks of the long prompt shared steps with the short sequence's tokens
        assert small.stats()["decode_steps"] - steps0 < 16 + 10 + 120
    finally:
        small.close()


def test_two_conversations_keep_their_caches(engine) -> None:
    """A new conversation takes the least recently used slot, not the one holding another
    conversation, so both next turns reuse their own history."""
    from llmops_desktop.serving.engines.llama_batch import SequenceRequest

    sched = engine._scheduler

    def turn(ids: list[int]) -> int:
        before = engine.stats()["reused_prompt_tokens"]
        list(sched.submit(SequenceRequest(list(ids), 4, temperature=0)).pieces())
        return engine.stats()["reused_prompt_tokens"] - before

    a1 = engine.tokenize("Alice asks about importing a model into the catalog " * 3).ids
    b1 = engine.tokenize("Bob asks about numbers like 1234 and 5678 in files " * 3).ids
    c1 = engine.tokenize("Carol writes every file twice, then once more " * 3).ids
    for ids in (a1, b1, c1):
        turn(ids)
    assert turn(a1 + engine.tokenize(" and then?").ids[1:]) >= len(a1)
    assert turn(b1 + engine.tokenize(" and then?").ids[1:]) >= len(b1)
    assert turn(c1 + engine.tokenize(" and then?").ids[1:]) >= len(c1)


def test_streams_running_together_keep_their_sequence_ids_contiguous(cat: Catalog) -> None:
    """With a KV stream per sequence, llama.cpp decodes each run of consecutive sequence
    ids as a separate ubatch, so two streams on ids 0 and 3 cost about two steps each
    time. After three conversations have left their caches in slots 0-2, two new streams
    started together must sit side by side (the least recently used rule alone put them
    on 3 and 0)."""
    from llmops_desktop.serving.engines.llama_batch import SequenceRequest, _runs

    eng = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                       EngineSettings(threads=1, parallel=4))
    try:
        sched = eng._scheduler
        for text in ("Alice asks about importing", "Bob asks about numbers",
                     "Carol writes every file"):
            list(sched.submit(SequenceRequest(eng.tokenize(text).ids, 4,
                                              temperature=0)).pieces())
        assert [bool(s.cache) for s in sched.slots] == [True, True, True, False]
        # "Hello" runs on without an end token, so the second request joins it
        reqs = [SequenceRequest(eng.tokenize("Hello").ids, 200, temperature=0),
                SequenceRequest(eng.tokenize("Erin asks about the mirror").ids, 8,
                                temperature=0)]
        for r in reqs:
            sched.submit(r)
        for r in reqs:
            list(r.pieces())
        seqs = {next(s.seq for s in sched.slots if s.cache[:len(r.ids)] == r.ids)
                for r in reqs}
        assert len(seqs) == 2 and _runs(seqs) == 1, seqs
    finally:
        eng.close()


def test_a_stream_that_fills_its_context_ends_without_failing_the_others(cat: Catalog) -> None:
    """A sequence that reaches the end of its KV stream stops there (as a length stop);
    the stream decoding beside it goes on to its own end."""
    from llmops_desktop.serving.engines.llama_batch import SequenceRequest

    eng = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                       EngineSettings(threads=1, parallel=2, ctx=64))
    try:
        sched = eng._scheduler
        ids = eng.tokenize("Hello").ids
        first = sched.submit(SequenceRequest(ids, 1000, temperature=0))
        pieces = first.pieces()
        got_first = [next(pieces) for _ in range(5)]
        second = sched.submit(SequenceRequest(ids, 1000, temperature=0))  # 5 steps behind
        got_first += list(pieces)  # the first fills its stream while the second runs
        got_second = list(second.pieces())
        room = eng.n_ctx - len(ids)  # and one more: the last sampled token needs no cell
        assert sum(p.tokens for p in got_first) == room + 1
        assert sum(p.tokens for p in got_second) == room + 1
        assert sched.stats.slots_in_use == 0
    finally:
        eng.close()

