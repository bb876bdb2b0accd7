"""``/v1/embeddings`` through the official client: the llama.cpp engine on the demo model
(strings and token arrays, batched, float and base64, L2-normalised, the same vectors as
llama-cpp-python's own), embedding while streams run, and a clear 400 from an engine that
cannot embed."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.serving.engines.base import EngineSettings, get_engine
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import GatedEngine, make_deployment, server_thread

TEXTS = ["Hello", "Every file has", "Numbers like 1234 and more words here"]


@pytest.fixture(scope="module")
def cat(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path):
    home = Home.resolve(tmp_path_factory.mktemp("embed") / "home")
    with Catalog.open(home) as c:
        import_artifact(c, demo_gguf_session, "demo-gguf")
        yield c


@pytest.fixture(scope="module")
def server(cat: Catalog):
    engine = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                          EngineSettings(threads=1, parallel=2))
    try:
        with server_thread(make_deployment(cat, cat.resolve("demo-gguf"), name="emb",
                                           parallel=2), engine) as live:
            yield live
    finally:
        engine.close()


def _client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=60)


def _close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b))


def test_embeddings_of_strings_and_tokens_float_and_base64(server, cat: Catalog) -> None:
    client = _client(server)
    got = client.embeddings.create(model="emb", input=TEXTS)  # the client asks for base64
    vectors = [d.embedding for d in got.data]
    assert [d.index for d in got.data] == [0, 1, 2]
    assert all(len(v) == 64 for v in vectors)  # the demo model's hidden size
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, abs_tol=1e-4) for v in vectors)
    assert not _close(vectors[0], vectors[1], 1e-3)
    ids = [server.state.engine.tokenize(t).ids for t in TEXTS]
    assert got.usage.prompt_tokens == sum(len(i) for i in ids)
    floats = client.embeddings.create(model="emb", input=TEXTS, encoding_format="float")
    assert all(_close(a.embedding, b, 1e-6) for a, b in zip(floats.data, vectors))
    one_by_one = [client.embeddings.create(model="emb", input=t).data[0].embedding
                  for t in TEXTS]
    assert all(_close(a, b) for a, b in zip(one_by_one, vectors))  # batched = alone
    as_tokens = client.embeddings.create(model="emb", input=ids)
    assert all(_close(a.embedding, b) for a, b in zip(as_tokens.data, vectors))
    single_ids = client.embeddings.create(model="emb", input=ids[1]).data[0].embedding
    assert _close(single_ids, vectors[1])
    # what llama-cpp-python computes on its own (mean pooling, normalised)
    import llama_cpp

    ref = llama_cpp.Llama(str(cat.resolve("demo-gguf").path), embedding=True, n_ctx=512,
                          n_threads=1, pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                          verbose=False)
    try:
        expected = [ref.embed(t, normalize=True) for t in TEXTS]
    finally:
        ref.close()
    assert all(_close(a, b, 2e-3) for a, b in zip(vectors, expected))


def test_bad_embedding_requests_are_400(server) -> None:
    client = _client(server)
    for kw in ({"input": []}, {"input": ""}, {"input": [[1, 2], [99999]]},
               {"input": "x", "dimensions": 8},
               {"input": " ".join(str(i) for i in range(700))}):  # > 512 tokens
        with pytest.raises(openai.BadRequestError) as err:
            client.embeddings.create(model="emb", **kw)
        assert err.value.body["param"] in ("input", "dimensions"), (kw, err.value.body)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="other", input="x")


def test_embedding_while_streams_run_leaves_them_intact(server) -> None:
    client = _client(server)

    def stream() -> str:
        return "".join(c.choices[0].text for c in client.completions.create(
            model="emb", prompt="Hello", max_tokens=200, temperature=0, stream=True))

    solo = stream()
    alone = client.embeddings.create(model="emb", input=TEXTS[2]).data[0].embedding
    with ThreadPoolExecutor(2) as pool:
        streams = [pool.submit(stream) for _ in range(2)]
        during = [client.embeddings.create(model="emb", input=TEXTS[2]).data[0].embedding
                  for _ in range(5)]
        assert [f.result() for f in streams] == [solo, solo]
    assert all(_close(v, alone) for v in during)


def test_an_engine_that_cannot_embed_says_so(cat: Catalog) -> None:
    engine = GatedEngine()
    engine.gate.set()
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="noembed")
    with server_thread(config, engine) as live:
        with pytest.raises(openai.BadRequestError) as err:
            _client(live).embeddings.create(model="noembed", input="Hello")
    body = err.value.body
    assert body["code"] == "embeddings_unsupported" and "embed" in body["message"]
