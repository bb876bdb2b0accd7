"""Soak (#15 item 12): 8 clients for two minutes of mixed requests against a live
``llmops serve`` process of the demo GGUF (llama.cpp, ``--parallel 4``, loopback only).

Requests: completions and chat, streamed or not, ``response_format`` json_schema, a
forced tool call, embeddings, and streams the client drops after a few chunks. Every
generation is greedy and each client asks about its own prompts, whose answers were taken
from the same server alone before the soak: an answer that differs from its solo run (a
token of someone else's, a sequence mixed up in the batch) fails the test, and so does any
error status. The server's resident memory is sampled every half second; after a warm-up,
the last quarter's peak must not pass the first quarter's by more than a fixed margin.

``LLMOPS_SOAK_S`` shortens or lengthens the run (seconds; 120 by default)."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import openai
import psutil
import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import server_process

pytestmark = pytest.mark.slow

CLIENTS = 8
SOAK_S = float(os.environ.get("LLMOPS_SOAK_S", "120"))
MAX_REQUESTS = 2000  # per client: the run is bounded in count as well as in time
WARMUP_S = min(20.0, SOAK_S / 5)  # the embedding context, allocator pools, first caches
MARGIN_MB = 48  # what the last quarter's peak RSS may add to the first quarter's
TOKENS = 24

THING = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 12},
                                          "count": {"type": "integer"}},
         "required": ["name", "count"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "thing", "schema": THING,
                                                 "strict": True}}
COLOR = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]}},
         "required": ["color"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "set_color", "parameters": COLOR}}]
NAMED = {"type": "function", "function": {"name": "set_color"}}
KINDS = ["completion", "completion_stream", "chat", "chat_stream", "json_schema", "tool",
         "embeddings", "cancelled"]


def _prompt(client: int) -> str:
    return f"Client {client} asks about file number {1000 + 37 * client} and"


def _chat(client: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Client {client}: name colour {client * 7}."}]


def _ask(api: openai.OpenAI, kind: str, client: int) -> Any:
    """One request of ``kind`` for ``client``; what the solo run is compared with."""
    if kind == "completion":
        return api.completions.create(model="soak", prompt=_prompt(client), max_tokens=TOKENS,
                                      temperature=0).choices[0].text
    if kind == "completion_stream":
        return "".join(c.choices[0].text for c in api.completions.create(
            model="soak", prompt=_prompt(client), max_tokens=TOKENS, temperature=0,
            stream=True))
    if kind == "chat":
        return api.chat.completions.create(model="soak", messages=_chat(client),
                                           max_tokens=TOKENS, temperature=0
                                           ).choices[0].message.content
    if kind == "chat_stream":
        return "".join(c.choices[0].delta.content or "" for c in api.chat.completions.create(
            model="soak", messages=_chat(client), max_tokens=TOKENS, temperature=0,
            stream=True) if c.choices)
    if kind == "json_schema":
        text = api.chat.completions.create(model="soak", messages=_chat(client),
                                           max_tokens=60, temperature=0,
                                           response_format=FORMAT).choices[0].message.content
        jsonschema.validate(json.loads(text), THING)
        return text
    if kind == "tool":
        reply = api.chat.completions.create(model="soak", messages=_chat(client), tools=TOOLS,
                                            tool_choice=NAMED, max_tokens=60, temperature=0)
        call = reply.choices[0].message.tool_calls[0]
        jsonschema.validate(json.loads(call.function.arguments), COLOR)
        return call.function.arguments
    if kind == "embeddings":
        got = api.embeddings.create(model="soak", input=[_prompt(client), _chat(client)[0][
            "content"]], encoding_format="float")
        return [round(x, 4) for d in got.data for x in d.embedding]
    if kind == "cancelled":
        stream = api.completions.create(model="soak", prompt=_prompt(client), max_tokens=400,
                                        temperature=0, stream=True)
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()  # the client goes away mid-stream
        return None
    raise AssertionError(kind)


def _same(kind: str, got: Any, want: Any) -> bool:
    if kind == "embeddings":
        return len(got) == len(want) and all(abs(a - b) <= 2e-4 for a, b in zip(got, want))
    return got == want


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path) -> Home:
    home = Home.resolve(tmp_path_factory.mktemp("soak") / "home")
    with Catalog.open(home) as cat:
        import_artifact(cat, demo_gguf_session, "demo-gguf")
    return home


@pytest.mark.timeout(int(SOAK_S) + 420)
def test_eight_clients_for_two_minutes(home: Home) -> None:
    with server_process(home.root, "--artifact", "demo-gguf", "--threads", "1",
                        "--parallel", "4", "--name", "soak") as server:
        url = server.info["url"]
        assert url.startswith("http://127.0.0.1:")
        api = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                            timeout=120)
        # each client's answers, from the server with nothing else running
        solo = {(kind, c): _ask(api, kind, c) for c in range(CLIENTS) for kind in KINDS
                if kind != "cancelled"}
        # answers that tell the clients apart: one client given another's would show
        assert len({solo["completion", c] for c in range(CLIENTS)}) == CLIENTS
        assert len({solo["chat", c] for c in range(CLIENTS)}) > 1
        proc = psutil.Process(server.proc.pid)
        rss: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                rss.append((time.monotonic(), proc.memory_info().rss))
                stop.wait(0.5)

        def client(c: int) -> tuple[Counter[str], list[str]]:
            rng = random.Random(c)
            done: Counter[str] = Counter()
            problems: list[str] = []
            own = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0,
                                timeout=120)
            while time.monotonic() < end and sum(done.values()) < MAX_REQUESTS:
                kind = rng.choice(KINDS)
                try:
                    got = _ask(own, kind, c)
                except openai.APIStatusError as exc:
                    problems.append(f"client {c} {kind}: HTTP {exc.status_code} {exc.message}")
                    continue
                except Exception as exc:  # noqa: BLE001 - reported, with the kind
                    problems.append(f"client {c} {kind}: {type(exc).__name__}: {exc}")
                    continue
                done[kind] += 1
                if kind != "cancelled" and not _same(kind, got, solo[kind, c]):
                    problems.append(f"client {c} {kind}: {got!r} is not its solo answer "
                                    f"{solo[kind, c]!r}")
            return done, problems

        sampler = threading.Thread(target=sample, daemon=True)
        start = time.monotonic()
        end = start + SOAK_S
        sampler.start()
        try:
            with ThreadPoolExecutor(CLIENTS) as pool:
                results = list(pool.map(client, range(CLIENTS)))
        finally:
            stop.set()
            sampler.join(5)
        assert server.proc.poll() is None, f"the server died:\n{server.output[-3000:]}"

    done = sum((r[0] for r in results), Counter())
    problems = [p for r in results for p in r[1]]
    assert not problems, f"{len(problems)} bad answers of {sum(done.values())}:\n" + \
        "\n".join(problems[:20])
    assert set(done) == set(KINDS), done  # every kind ran under load
    steady = [(t, m) for t, m in rss if t >= start + WARMUP_S]
    assert len(steady) >= 8, len(steady)
    quarter = len(steady) // 4
    first = max(m for _, m in steady[:quarter])
    last = max(m for _, m in steady[-quarter:])
    mib = 1024 * 1024
    print(f"soak: {sum(done.values())} requests {dict(done)}; RSS first quarter "
          f"{first / mib:.1f} MiB, last quarter {last / mib:.1f} MiB")
    assert last <= first + MARGIN_MB * mib, (first / mib, last / mib)
