"""The gateway's deployments end with it, and start with the model's saved settings.

A gateway killed with SIGKILL leaves no deployment holding a model in memory (its children
run with PR_SET_PDEATHSIG); a model's saved serve settings are those its deployment starts
with when a request loads it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest
import requests

from llmops_desktop.procs import pid_alive
from llmops_desktop.serving.model_settings import model_settings, save_model_settings
from tests.gateway_fixtures import deployment_pid, gateway_process, two_models

pytestmark = [pytest.mark.timeout(300),
              pytest.mark.skipif(not sys.platform.startswith("linux"),
                                 reason="PR_SET_PDEATHSIG is Linux's")]


def chat(gw, model: str) -> dict:
    r = requests.post(gw.base_url + "/chat/completions", timeout=120, json={
        "model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
    assert r.status_code == 200, r.text
    return r.json()


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_killed_gateway_leaves_no_deployment_behind(home, catalog, demo_gguf):
    alpha, _beta = two_models(catalog, demo_gguf)
    with gateway_process(home, "--idle-unload", "0") as gw:
        chat(gw, alpha.ref)
        child = deployment_pid(catalog, alpha.ref)
        assert pid_alive(child)
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(timeout=10)
        try:
            assert wait_gone(child), f"deployment {child} outlived its gateway"
        finally:
            if pid_alive(child):  # a failed test leaves no model in memory either
                os.kill(child, signal.SIGKILL)


def test_the_gateway_starts_a_model_with_its_saved_settings(home, catalog, demo_gguf):
    alpha, beta = two_models(catalog, demo_gguf)
    kept = save_model_settings(catalog, alpha.id, {"ctx": 384, "chat_template": "chatml",
                                                   "threads": 1, "host": "0.0.0.0",
                                                   "port": 9, "name": "renamed"})
    assert kept == {"ctx": 384, "chat_template": "chatml", "threads": 1}  # not where/what
    assert model_settings(catalog, alpha.id) == kept
    with gateway_process(home, "--idle-unload", "0") as gw:
        assert chat(gw, alpha.ref)["model"] == alpha.ref
        assert chat(gw, beta.ref)["model"] == beta.ref
    rows = dict(catalog.conn.execute("SELECT name, settings FROM deployments").fetchall())
    alpha_settings, beta_settings = json.loads(rows[alpha.ref]), json.loads(rows[beta.ref])
    assert (alpha_settings["ctx"], alpha_settings["chat_template"]) == (384, "chatml")
    assert alpha_settings["threads"] == 1 and alpha_settings["host"] == "127.0.0.1"
    assert beta_settings.get("ctx") != 384 and not beta_settings.get("chat_template")


def test_saved_settings_the_server_would_refuse_are_refused(catalog, demo_gguf):
    from llmops_desktop.errors import InvalidInputError

    alpha, _ = two_models(catalog, demo_gguf)
    with pytest.raises(InvalidInputError):
        save_model_settings(catalog, alpha.id, {"ctx": 4})
    assert model_settings(catalog, alpha.id) is None
    catalog.conn.execute("INSERT INTO model_serve_settings VALUES (?, ?, '2026-01-01')",
                         (alpha.id, '{"ctx": "lots", "x": [1]}'))  # not written by us
    assert model_settings(catalog, alpha.id) is None


def _serve(home, artifact_id: int):
    """A deployment started as the window or 'llmops serve' starts one, once it serves."""
    from llmops_desktop.procs import read_events
    from llmops_desktop.serving.deploy import DeployRequest, start_server

    process = start_server(DeployRequest.from_options(artifact_id, port=0, ctx=256, threads=1),
                           home)
    for event in read_events(process.stdout):
        if event.type == "result":
            return process
    raise AssertionError(f"the deployment did not start (exit code {process.wait()})")


def test_a_gateway_stops_what_a_gone_gateway_left_and_nothing_else(home, catalog, demo_gguf,
                                                                   monkeypatch):
    import subprocess

    from llmops_desktop.gateway.children import GATEWAY_PID_ENV

    alpha, beta = two_models(catalog, demo_gguf)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    monkeypatch.setenv(GATEWAY_PID_ENV, str(gone.pid))  # as a gateway's deployment carries
    orphan = _serve(home, alpha.id)
    monkeypatch.delenv(GATEWAY_PID_ENV)
    own = _serve(home, beta.id)  # the window's, say: not the gateway's to stop
    try:
        with gateway_process(home, "--idle-unload", "0"):
            assert wait_gone(orphan.pid), "the orphaned deployment still runs"
            assert own.poll() is None
        audit = [e.details for e in catalog.audit_entries() if e.action ==
                 "gateway_orphan_stopped"]
        assert [(d["model"], d["gateway_pid"]) for d in audit] == [(alpha.ref, gone.pid)]
    finally:
        for process in (orphan, own):
            if process.poll() is None:
                process.kill()
            process.wait()
