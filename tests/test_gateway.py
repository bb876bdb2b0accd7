"""The gateway with real deployments of two demo GGUF models, through the openai client.

Models load on the first request for them and answer streamed and not; an idle one is
unloaded and its process is gone; a memory budget that holds one model swaps them; a
deployment killed with SIGKILL is started again by the next request; eight clients across
both models at once get their own answers; the "serve only approved" setting applies.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
import requests

from llmops_desktop.gateway.pool import memory_need
from llmops_desktop.gateway.usage import gateway_log
from llmops_desktop.procs import pid_alive
from llmops_desktop.serving.defaults import detect_hardware, suggest_options
from tests.gateway_fixtures import deployment_pid, gateway_process, two_models

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.timeout(600)


def client(gw, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0, timeout=120)


def ask(c, model: str, text: str = "Hello", **kw):
    return c.chat.completions.create(model=model, messages=[{"role": "user", "content": text}],
                                     max_tokens=8, temperature=0, seed=1, **kw)


def ask_stream(c, model: str, text: str = "Hello") -> tuple[str, list[str]]:
    chunks = list(ask(c, model, text, stream=True))
    models = {ch.model for ch in chunks}
    return "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices), models


@pytest.fixture
def models(catalog, demo_gguf):
    return two_models(catalog, demo_gguf)


def test_models_load_on_first_request_and_answer_streamed_and_not(home, catalog, models):
    alpha, beta = models
    with gateway_process(home, "--idle-unload", "0") as gw:
        listed = gw.models()
        assert {m["state"] for m in listed.values()} == {"unloaded"}
        assert {alpha.ref, beta.ref} <= set(listed)
        c = client(gw)
        reply = ask(c, "alpha")
        assert reply.choices[0].message.content and reply.model == alpha.ref
        assert reply.usage.completion_tokens > 0
        listed = gw.models()
        assert (listed[alpha.ref]["state"], listed[beta.ref]["state"]) == ("loaded", "unloaded")
        text, seen = ask_stream(c, beta.ref)
        assert text and seen == {beta.ref}
        assert {m["state"] for m in gw.models().values()} == {"loaded"}
        assert pid_alive(deployment_pid(catalog, alpha.ref))
        assert pid_alive(deployment_pid(catalog, beta.ref))
        # the stream's usage (asked for by the gateway) is counted, not passed on
        assert all(not ch.usage for ch in ask(c, "beta", stream=True))
        health = requests.get(gw.url + "/health", timeout=10).json()
        assert sorted(health["loaded"]) == sorted([alpha.ref, beta.ref])
    rows = gateway_log(catalog)
    assert [(r.model, r.stream, r.status) for r in reversed(rows)] == [
        (alpha.ref, False, 200), (beta.ref, True, 200), (beta.ref, True, 200)]
    assert all(r.completion_tokens > 0 and r.key_name == "-" for r in rows)
    assert all(not pid_alive(deployment_pid_any(catalog, ref)) for ref in (alpha.ref, beta.ref))


def deployment_pid_any(catalog, ref: str) -> int:
    row = catalog.conn.execute("SELECT pid FROM deployments WHERE name = ? ORDER BY id DESC",
                               (ref,)).fetchone()
    return int(row[0])


def test_an_idle_model_is_unloaded_and_its_process_is_gone(home, catalog, models):
    alpha, beta = models
    with gateway_process(home, "--idle-unload", "2") as gw:
        assert ask(client(gw), "alpha").choices[0].message.content
        pid = deployment_pid(catalog, alpha.ref)
        gw.wait_state(alpha.ref, "unloaded")
        assert not pid_alive(pid)
        assert catalog.conn.execute("SELECT state FROM deployments WHERE pid = ?",
                                    (pid,)).fetchone()[0] == "stopped"
        assert ask(client(gw), "alpha").choices[0].message.content  # loads again
        assert deployment_pid(catalog, alpha.ref) != pid
    unloads = [e for e in catalog.audit_entries() if e.action == "gateway_unload"]
    assert unloads and "idle" in unloads[-1].details["reason"]


def test_a_memory_budget_for_one_model_swaps_them(home, catalog, models):
    alpha, beta = models
    options, _ = suggest_options(alpha, detect_hardware())
    need = memory_need(alpha, options)
    budget_gb = need * 1.5 / 2**30
    with gateway_process(home, "--idle-unload", "0", "--memory-budget", f"{budget_gb:.6f}") as gw:
        c = client(gw)
        assert ask(c, "alpha").choices[0].message.content
        first = deployment_pid(catalog, alpha.ref)
        text, _ = ask_stream(c, "beta")
        assert text
        listed = gw.models()
        assert (listed[alpha.ref]["state"], listed[beta.ref]["state"]) == ("unloaded", "loaded")
        assert not pid_alive(first)
        assert ask(c, "alpha").choices[0].message.content
        listed = gw.models()
        assert (listed[alpha.ref]["state"], listed[beta.ref]["state"]) == ("loaded", "unloaded")
    reasons = [e.details["reason"] for e in catalog.audit_entries()
               if e.action == "gateway_unload"]
    assert reasons.count("memory budget") == 2


def test_a_budget_no_model_fits_gives_a_clear_503(home, catalog, models):
    with gateway_process(home, "--memory-budget", "0.001") as gw:
        with pytest.raises(openai.APIStatusError) as caught:
            ask(client(gw), "alpha")
        assert caught.value.status_code == 503
        assert "memory budget" in caught.value.message
        assert gw.models()["alpha@1"]["state"] == "unloaded"


def test_a_killed_deployment_is_started_again_by_the_next_request(home, catalog, models):
    alpha, _ = models
    with gateway_process(home, "--idle-unload", "0") as gw:
        c = client(gw)
        before = ask(c, "alpha").choices[0].message.content
        pid = deployment_pid(catalog, alpha.ref)
        os.kill(pid, signal.SIGKILL)
        assert ask(c, "alpha").choices[0].message.content == before
        assert deployment_pid(catalog, alpha.ref) != pid
        assert gw.proc.poll() is None
        assert requests.get(gw.url + "/health", timeout=10).status_code == 200
    died = [e for e in catalog.audit_entries() if e.action == "gateway_deployment_died"]
    assert died and died[0].details["model"] == alpha.ref
    assert died[0].details["exit_code"] == -signal.SIGKILL


def test_eight_clients_across_two_models_at_once_get_their_own_answers(home, catalog, models):
    alpha, beta = models
    prompts = [(("alpha", "beta")[i % 2], f"Tell me about the number {i}") for i in range(8)]
    with gateway_process(home, "--idle-unload", "0") as gw:
        c = client(gw)
        alone = [ask(c, m, p).choices[0].message.content for m, p in prompts]
        together: list[tuple[str, str] | None] = [None] * 8
        go = threading.Barrier(8)

        def one(i: int) -> None:
            model, prompt = prompts[i]
            go.wait()
            if i % 4 == 0:
                text, seen = ask_stream(client(gw), model, prompt)
                together[i] = (text, seen.pop())
            else:
                reply = ask(client(gw), model, prompt)
                together[i] = (reply.choices[0].message.content, reply.model)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    refs = {"alpha": alpha.ref, "beta": beta.ref}
    assert together == [(alone[i], refs[m]) for i, (m, _) in enumerate(prompts)]
    assert len(set(alone)) > 1  # the answers differ, so each got its own


def test_only_approved_models_are_served_when_settings_say_so(home, catalog, models):
    from llmops_desktop.settings import load_settings, save_settings
    from llmops_desktop.share.governance import set_status

    alpha, beta = models
    set_status(catalog, alpha.id, "approved", "reviewed")
    settings = load_settings(home.settings_path)
    save_settings(home.settings_path, settings.updated(serve_only_approved=True))
    with gateway_process(home) as gw:
        assert set(gw.models()) == {alpha.ref}
        with pytest.raises(openai.NotFoundError):
            ask(client(gw), "beta")
        assert ask(client(gw), "alpha").choices[0].message.content
