"""Deployments outside the window: a server whose reader went away keeps serving and is
found again; dead ones are marked; the streaming client and its Stop; defaults chosen from
the model and the machine; ratings of replies and their JSONL export."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from llmops_desktop.serving.client import Cancel, ReplyStats, stream_chat
from llmops_desktop.serving.defaults import Hardware, suggest_options
from llmops_desktop.serving.feedback import Feedback, export_jsonl, feedback_rows, rate
from llmops_desktop.serving.store import (
    create_deployment,
    deployment,
    reconcile,
    request_log,
    update_deployment,
)
from tests.mirror_fixtures import import_artifact

HELLO = [{"role": "user", "content": "Hello"}]


@pytest.fixture
def gguf(catalog, demo_gguf):
    return import_artifact(catalog, demo_gguf, "demo-gguf")


def _start_server(home, *args: str) -> tuple[subprocess.Popen[bytes], dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmops_desktop.serving", "--home", str(home.root), "--port", "0",
         *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdout is not None
    for raw in proc.stdout:
        event = json.loads(raw)
        if event["type"] == "result":
            return proc, event["data"]
        assert event["type"] != "error", event
    raise AssertionError(f"the server exited with {proc.wait()} before it was ready")


def test_server_outlives_its_reader_and_is_found_again(home, catalog, gguf) -> None:
    proc, info = _start_server(home, "--artifact", "demo-gguf", "--threads", "1",
                               "--ctx", "256")
    try:
        # The window that started it closes (keeping it running): nobody reads its stdout.
        proc.stdout.close()
        for _ in range(3):  # each request logs a line into the closed pipe
            stats = ReplyStats()
            text = "".join(stream_chat(info["url"], {"model": info["name"], "messages": HELLO,
                                                     "max_tokens": 8, "seed": 1}, stats=stats))
            assert text and stats.completion_tokens and stats.ttft_ms is not None
        assert proc.poll() is None, "the server died when its reader went away"

        # The next window finds it in the catalog and knows it is alive.
        alive = reconcile(catalog)
        assert [(d.id, d.pid, d.url) for d in alive] == [
            (info["deployment_id"], proc.pid, info["url"])]

        # Stop mid-reply: the client closes the connection and the server notices.
        cancel, stats, pieces = Cancel(), ReplyStats(), []
        for piece in stream_chat(info["url"], {"model": info["name"], "messages": HELLO,
                                               "max_tokens": 200, "seed": 1},
                                 cancel=cancel, stats=stats):
            pieces.append(piece)
            cancel.set()
        assert len(pieces) == 1 and stats.finish_reason == "cancelled"
        # From a terminal too: listed, then stopped by id.
        listed = json.loads(_llmops(home, "deployments", "--json").stdout)
        assert [(d["id"], d["running"]) for d in listed] == [(info["deployment_id"], True)]
        stopped = _llmops(home, "deployments", "stop", str(info["deployment_id"]))
        assert "stopped" in stopped.stdout
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        raise
    finally:
        code = proc.wait(timeout=30)
    assert code == 0
    row = deployment(catalog, info["deployment_id"])
    assert row.state == "stopped"
    statuses = sorted(r.status for r in request_log(catalog, deployment_id=row.id))
    assert statuses[:3] == [200, 200, 200] and len(statuses) == 4  # the stopped one: 200 or 499
    assert reconcile(catalog) == []


def _llmops(home, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                          *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out


def test_dead_or_recycled_server_pids_are_marked_failed(catalog, gguf) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    ids = []
    for pid in (dead.pid, os.getpid()):  # gone; alive but not a server (a recycled pid)
        dep_id = create_deployment(catalog, name="x", artifact_id=gguf.id,
                                   artifact_ref=gguf.ref, engine="llama.cpp",
                                   host="127.0.0.1", settings={}, pid=pid)
        update_deployment(catalog, dep_id, state="running", pid=pid, url="http://127.0.0.1:1")
        ids.append(dep_id)
    assert reconcile(catalog) == []
    for dep_id in ids:
        row = deployment(catalog, dep_id)
        assert row.state == "failed" and "without stopping cleanly" in row.error


def test_a_server_that_is_gone_gives_a_clear_error() -> None:
    import socket

    from llmops_desktop.errors import NetworkError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(NetworkError, match="Is the deployment still running"):
        list(stream_chat(f"http://127.0.0.1:{port}", {"model": "m", "messages": HELLO}))


# ---- defaults from the model and the machine ------------------------------------------------

def _hw(**kw) -> Hardware:
    base = dict(physical_cores=8, logical_cpus=16, ram_available=64 * 2**30, nvidia_gpus=0,
                llama_gpu_offload=False)
    return Hardware(**{**base, **kw})


def test_defaults_follow_the_model_and_the_machine(gguf) -> None:
    options, reasons = suggest_options(gguf, _hw())
    assert options.engine == "llama.cpp" and options.threads == 8
    assert options.ctx == gguf.metadata["context_length"] == 512  # the model's own
    assert options.gpu_layers == 0 and "no NVIDIA GPU" in " ".join(reasons)

    options, reasons = suggest_options(gguf, _hw(nvidia_gpus=1, llama_gpu_offload=True))
    assert options.gpu_layers == -1 and options.parallel == 4
    options, reasons = suggest_options(gguf, _hw(nvidia_gpus=1))
    assert options.gpu_layers == 0 and "cannot offload" in " ".join(reasons)

    # A 7B model with a 32k context: 4096 on a big machine, less where memory is short.
    big = replace(gguf, metadata={**gguf.metadata, "parameters": 7_000_000_000,
                                  "context_length": 32768, "num_hidden_layers": 32,
                                  "hidden_size": 4096, "num_attention_heads": 32,
                                  "num_key_value_heads": 32, "quantization": "Q4_K_M"})
    assert suggest_options(big, _hw())[0].ctx == 4096
    options, reasons = suggest_options(big, _hw(ram_available=6 * 2**30))
    assert options.ctx < 4096 and "would not fit" in " ".join(reasons)


# ---- ratings --------------------------------------------------------------------------------

def test_ratings_are_stored_replaced_taken_back_and_exported(catalog, gguf, tmp_path: Path):
    def fb(reply_id: str, rating: int, reply: str = "Hi!") -> Feedback:
        return Feedback(reply_id=reply_id, rating=rating, reply=reply, prompt="Hello",
                        messages=HELLO, system_prompt="Be brief.", artifact_id=gguf.id,
                        artifact_ref=gguf.ref, params={"temperature": 0.7}, ttft_ms=12.5,
                        tokens_per_s=80.0)

    rate(catalog, fb("a", 1))
    rate(catalog, fb("b", 1, "Go away."))
    rate(catalog, fb("b", -1, "Go away."))  # changed their mind
    rate(catalog, fb("c", 1))
    rate(catalog, fb("c", 0))  # took it back
    rows = feedback_rows(catalog)
    assert [(r.reply_id, r.rating) for r in rows] == [("a", 1), ("b", -1)]
    assert rows[0].artifact_id == gguf.id and rows[0].user

    out = tmp_path / "feedback.jsonl"
    assert export_jsonl(catalog, out) == 2
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0]["messages"] == [{"role": "system", "content": "Be brief."}, *HELLO,
                                    {"role": "assistant", "content": "Hi!"}]
    assert [x["label"] for x in lines] == [True, False]
    assert lines[1]["completion"] == "Go away." and lines[1]["artifact"] == gguf.ref

    cli_out = _llmops(catalog.home, "feedback", "export")
    assert [json.loads(x)["rating"] for x in cli_out.stdout.splitlines()] == [1, -1]

    # The artifact goes; its ratings stay, no longer pointing at it.
    catalog.remove_artifact(gguf.id)
    assert all(r.artifact_id is None for r in feedback_rows(catalog))
