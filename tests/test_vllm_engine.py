"""The vLLM engine (#17 item 4): vLLM's own OpenAI server as a deployment's process.

Here: the command line (tensor parallel over the chosen GPUs, every model name a client may
send, the key only in the environment), the refusal with the reason where vLLM or CUDA is
missing (the CLI, and the request the window and the gateway build), and vLLM only for
Hugging Face folders. On a GPU machine with vLLM (``-m gpu``): a real deployment through
``llmops serve``'s child, answering through the gateway's path and stopped with its GPU
workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.serving.config import DeploymentConfig, ServeOptions
from llmops_desktop.serving.engines.vllm_engine import (
    VLLM_MODULE,
    vllm_available,
    vllm_command,
    vllm_environment,
)
from tests.mirror_fixtures import import_artifact


def _config(**changes) -> DeploymentConfig:
    options = ServeOptions(engine="vllm", name="team-model", host="127.0.0.1", **changes)
    return DeploymentConfig(name="team-model", artifact_id=4, artifact_ref="demo@2",
                            model_name="demo", model_path=Path("/models/demo"),
                            options=options)


def test_the_command_is_tensor_parallel_over_the_chosen_gpus(monkeypatch) -> None:
    config = _config(gpus="1,3", ctx=2048, gpu_memory_utilization=0.85)
    argv = vllm_command(config, 8123)
    assert argv == [sys.executable, "-m", VLLM_MODULE, "--model", "/models/demo",
                    "--served-model-name", "team-model", "4", "demo", "demo@2",
                    "--host", "127.0.0.1", "--port", "8123", "--tensor-parallel-size", "2",
                    "--gpu-memory-utilization", "0.85", "--max-model-len", "2048"]
    monkeypatch.setenv("LLMOPS_API_KEY", "the-key-of-the-server")
    env = vllm_environment(config, "the-key-of-the-server")
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["VLLM_API_KEY"] == "the-key-of-the-server" and "LLMOPS_API_KEY" not in env
    assert not any("the-key" in a for a in argv)
    # one GPU (or none chosen): no tensor parallelism; no key: none in the environment
    assert vllm_command(_config(gpus="2"), 1)[-1] == "1"
    assert vllm_command(_config(), 1)[-2:] == ["--tensor-parallel-size", "1"]
    assert "VLLM_API_KEY" not in vllm_environment(_config(), None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert "CUDA_VISIBLE_DEVICES" not in vllm_environment(_config(), None)
    chat = vllm_command(_config(chat_template="chatml"), 1)
    assert "{%" in chat[chat.index("--chat-template") + 1]  # the template's text itself


def _no_vllm_reason() -> str | None:
    ok, reason = vllm_available()
    return None if ok else reason


def test_without_vllm_or_cuda_it_is_refused_with_the_reason(home, catalog, demo_model_dir,
                                                           demo_gguf) -> None:
    reason = _no_vllm_reason()
    if reason is None:
        pytest.skip("vLLM can run here: nothing to refuse")
    assert "vLLM is not installed" in reason or "NVIDIA GPU" in reason
    hf = import_artifact(catalog, demo_model_dir, "hf")
    with pytest.raises(InvalidInputError, match="The vllm engine cannot run here") as caught:
        DeploymentConfig.for_artifact(hf, ServeOptions(engine="vllm"))
    assert reason in str(caught.value) and "--engine torch" in str(caught.value)
    out = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                          "serve", "hf", "--engine", "vllm", "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0, out.stdout
    assert "The vllm engine cannot run here" in out.stderr and reason[:40] in out.stderr
    # no deployment row was left behind, nothing listens
    assert catalog.conn.execute("SELECT COUNT(*) FROM deployments").fetchone()[0] == 0


def test_vllm_serves_hugging_face_folders_only(catalog, demo_gguf) -> None:
    gguf = import_artifact(catalog, demo_gguf, "g")
    with pytest.raises(InvalidInputError, match="vllm engine serves hf artifacts"):
        DeploymentConfig.for_artifact(gguf, ServeOptions(engine="vllm"))


STANDIN = Path(__file__).with_name("vllm_standin.py")


def _standin(record: Path, *extra: str):
    """vLLM's command line for the config, run by the stand-in (see tests/vllm_standin.py)."""
    def command(config, port: int) -> list[str]:
        return [sys.executable, str(STANDIN), *vllm_command(config, port)[3:],
                "--record", str(record), *extra]
    return command


@pytest.fixture
def hf_config(catalog, demo_model_dir):
    from dataclasses import replace

    hf = import_artifact(catalog, demo_model_dir, "hf")
    config = DeploymentConfig.for_artifact(hf, ServeOptions(engine="torch", port=0))
    return replace(config, options=replace(config.options, engine="vllm", gpus="1,3",
                                           ctx=2048))


def test_the_deployment_is_ready_once_the_server_answers_and_stops_with_it(
        catalog, hf_config, tmp_path) -> None:
    from llmops_desktop.procs import pid_alive
    from llmops_desktop.serving.engines.vllm_engine import supervise
    from llmops_desktop.serving.store import deployment

    record, stop, seen = tmp_path / "started.json", threading.Event(), {}

    def ready(info) -> None:
        seen.update(info, row=deployment(catalog, info["deployment_id"]))
        stop.set()

    supervise(catalog, hf_config, "a-server-key-0123456789", ready,
              _standin(record, "--slow", "1"), stop=stop)
    started = json.loads(record.read_text())
    assert started["env"] == {"CUDA_VISIBLE_DEVICES": "1,3",
                              "VLLM_API_KEY": "a-server-key-0123456789", "LLMOPS_API_KEY": None}
    assert started["pgid"] == started["pid"]  # its own group: its workers stop with it
    assert seen["engine"] == "vllm" and seen["tensor_parallel"] == 2
    assert seen["n_ctx"] == 2048  # read from its /v1/models, with the key
    assert seen["url"].startswith("http://127.0.0.1:") and seen["pid"] == os.getpid()
    assert (seen["row"].state, seen["row"].url, seen["row"].engine) == (
        "running", seen["url"], "vllm")
    assert not pid_alive(started["pid"])
    assert deployment(catalog, seen["deployment_id"]).state == "stopped"


def test_a_server_that_exits_before_answering_fails_the_deployment(catalog, hf_config,
                                                                    tmp_path) -> None:
    from llmops_desktop.serving.engines.vllm_engine import supervise

    with pytest.raises(InvalidInputError, match=r"vLLM exited \(code 3\) before it answered"):
        supervise(catalog, hf_config, None, None, _standin(tmp_path / "r.json", "--exit-first",
                                                           "3"))
    row = catalog.conn.execute("SELECT state, error FROM deployments").fetchone()
    assert row[0] == "failed" and "code 3" in row[1]


def test_a_stop_while_loading_stops_the_server(catalog, hf_config, tmp_path) -> None:
    from llmops_desktop.procs import pid_alive
    from llmops_desktop.serving.engines.vllm_engine import supervise

    record, stop = tmp_path / "started.json", threading.Event()

    def stop_once_started() -> None:
        deadline = time.monotonic() + 60
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()

    threading.Thread(target=stop_once_started, daemon=True).start()
    supervise(catalog, hf_config, None, lambda info: pytest.fail("ready while loading"),
              _standin(record, "--slow", "600"), stop=stop)
    assert not pid_alive(json.loads(record.read_text())["pid"])
    assert catalog.conn.execute("SELECT state FROM deployments").fetchone()[0] == "stopped"


@pytest.mark.gpu
@pytest.mark.timeout(1200)
def test_a_vllm_deployment_answers_and_stops_with_its_workers(home, catalog,
                                                               demo_model_dir) -> None:
    reason = _no_vllm_reason()
    if reason:
        pytest.skip(reason)
    import psutil
    import requests

    from llmops_desktop.procs import read_events
    from llmops_desktop.serving.deploy import DeployRequest, start_server, stop_server
    from llmops_desktop.serving.store import deployment

    artifact = import_artifact(catalog, demo_model_dir, "tiny")
    request = DeployRequest.from_options(artifact.id, engine="vllm", port=0, gpus="0",
                                         ctx=256, gpu_memory_utilization=0.3,
                                         api_key="vllm-test-key-0123456789")
    process = start_server(request, home)
    try:
        event = next(e for e in read_events(process.stdout) if e.type in ("result", "error"))
        assert event.type == "result", event
        info = event.data
        engine = psutil.Process(info["engine_pid"])
        assert engine.environ()["CUDA_VISIBLE_DEVICES"] == "0"
        assert "vllm-test-key" not in " ".join(engine.cmdline())
        url = info["url"]
        assert requests.get(url + "/v1/models", timeout=30).status_code == 401
        r = requests.post(url + "/v1/completions", timeout=300,
                          headers={"Authorization": "Bearer vllm-test-key-0123456789"},
                          json={"model": "tiny", "prompt": "Hi", "max_tokens": 3})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] == 3
        assert deployment(catalog, info["deployment_id"]).state == "running"
    finally:
        stop_server(process, grace=60)
    assert not psutil.pid_exists(info["engine_pid"]) or \
        psutil.Process(info["engine_pid"]).status() == psutil.STATUS_ZOMBIE
    assert deployment(catalog, info["deployment_id"]).state == "stopped"
