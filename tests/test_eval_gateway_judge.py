"""A gateway model as the evaluation judge (#18 item 2).

A live gateway on 127.0.0.1 serves two demo GGUF models behind per-person keys. ``llmops
eval`` names the gateway's address with ``--judge``, one of its models with
``--judge-model`` and the key with ``--judge-api-key-file``: the judged items are scored
through the gateway, its request log shows the judge's three questions under the key's
name and on that model, and neither the job row nor the run holds the key. Without a key
the gateway's 401 comes back as a message that says how to give one; a key on the command
line is refused without being echoed.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from llmops_desktop.evaluate import runs as run_store
from llmops_desktop.evaluate.suites import import_suite
from llmops_desktop.gateway.usage import gateway_log
from tests.gateway_fixtures import gateway_process, llmops, two_models
from tests.test_eval_generation import JUDGED_ROWS, _jsonl

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def make_key(home, name: str) -> str:
    return json.loads(llmops(home, "apikey", "create", name, "--json").stdout)["key"]


def test_a_gateway_model_judges_with_a_key_and_the_log_names_the_key(home, catalog, demo_gguf,
                                                                     tmp_path) -> None:
    assert "LLMOPS_JUDGE_API_KEY" not in os.environ
    alpha, beta = two_models(catalog, demo_gguf)
    suite = import_suite(catalog, _jsonl(tmp_path / "judged.jsonl", JUDGED_ROWS), name="judged")
    key = make_key(home, "judge-bot")
    key_file = tmp_path / "judge.key"
    key_file.write_text(key + "\n", encoding="utf-8")

    refused = llmops(home, "eval", alpha.ref, "--suite", suite.ref, "--judge", "x",
                     "--judge-api-key", key, ok=False)
    assert refused.returncode != 0 and "--judge-api-key-file FILE" in refused.stderr
    assert "LLMOPS_JUDGE_API_KEY" in refused.stderr and key not in refused.stderr

    with gateway_process(home, "--idle-unload", "0") as gw:
        args = ("eval", alpha.ref, "--suite", suite.ref, "--judge", gw.url, "--judge-model",
                "beta", "--max-tokens", "8", "--json")
        nokey = llmops(home, *args, ok=False)
        assert nokey.returncode != 0
        assert f"The judge at {gw.url} answered 401" in nokey.stderr, nokey.stderr
        assert "--judge-api-key-file FILE" in nokey.stderr
        done = llmops(home, *args, "--judge-api-key-file", str(key_file))
    result = json.loads(done.stdout)
    point, pair = run_store.results(catalog, result["run_ids"][0])
    assert point.details["judge"] == gw.url and point.details["judge_model"] == "beta"
    assert isinstance(point.details["judge_reply"], str) and point.details["judge_reply"]
    assert ("judge_score" in point.scores) == (point.details["score"] is not None)
    assert [o["ours_is"] for o in pair.details["orders"]] == ["A", "B"]
    deadline = time.monotonic() + 15  # the gateway writes its log a moment after answering
    while True:
        asked = [r for r in gateway_log(catalog) if r.endpoint == "/v1/chat/completions"]
        if sum(r.status == 200 for r in asked) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(r.key_name, r.model, r.status) for r in asked if r.status == 200] == \
        [("judge-bot", beta.ref, 200)] * 3  # pointwise once, pairwise in both orders
    assert ("-", "", 401) in {(r.key_name, r.model, r.status) for r in asked}
    assert not [r for r in asked if r.model == alpha.ref]  # the evaluated model ran locally
    stored = json.dumps([j.params for j in catalog.jobs()]) + json.dumps(
        [point.details, pair.details, result])
    assert key not in stored
