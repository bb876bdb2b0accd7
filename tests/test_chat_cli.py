"""``llmops chat`` as a user runs it: a real process fed lines on stdin, against a live
deployment of the demo GGUF, an artifact it serves for itself, and a server it can hold
open mid-reply (to see Ctrl-C stop a reply and leave the chat going)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

import pytest

from llmops_desktop.serving.feedback import feedback_rows
from llmops_desktop.serving.store import deployments, reconcile
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import GatedEngine, make_deployment, server_process, server_thread

TIMEOUT_S = 120


def _chat(home, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "LLMOPS_API_KEY"}
    return subprocess.Popen([sys.executable, "-m", "llmops_desktop.cli", "--home",
                             str(home.root), "chat", *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


@pytest.fixture
def gguf(catalog, demo_gguf):
    return import_artifact(catalog, demo_gguf, "demo-gguf")


def test_chat_with_a_running_deployment(home, catalog, gguf) -> None:
    lines = ["Hello there", "And again?", "/rate up",  # rates the second reply
             "/system Be brief.", "Second question", "/rate down",
             "Third", "/reset", "Fourth", "/rate up", "/quit", "never read"]
    script = "\n".join(lines) + "\n"
    with server_process(home.root, "--artifact", "demo-gguf", "--threads", "1", "--ctx", "512",
                        "--name", "chatty") as server:
        proc = _chat(home, "chatty", "--max-tokens", "12", "--seed", "3")
        out, err = proc.communicate(script.encode(), timeout=TIMEOUT_S)
        out_text, err_text = out.decode(), err.decode()
        assert proc.returncode == 0, err_text
        assert server.proc.poll() is None  # a deployment it did not start keeps running
    assert "Chatting with deployment #" in err_text
    assert err_text.count("[TTFT") == 5, err_text  # one line of figures per reply
    assert "(Rated up.)" in err_text and "(Rated down.)" in err_text
    rows = feedback_rows(catalog)
    assert [(r.prompt, r.rating) for r in rows] == [("And again?", 1), ("Second question", -1),
                                                    ("Fourth", 1)]
    for r in rows:  # the rated replies are what was streamed to the terminal
        assert r.reply and r.reply in out_text
        assert r.artifact_id == gguf.id and r.deployment_id == server.info["deployment_id"]
        assert r.params["seed"] == 3 and r.params["max_tokens"] == 12
    assert [m["role"] for m in rows[0].messages] == ["user", "assistant", "user"]
    assert rows[0].system_prompt == ""
    assert rows[1].system_prompt == "Be brief." and rows[1].messages == [
        {"role": "user", "content": "Second question"}]  # /system starts over
    assert rows[2].system_prompt == "Be brief." and rows[2].messages == [
        {"role": "user", "content": "Fourth"}]  # /reset forgot "Third"


def test_chat_serves_an_artifact_for_itself_and_stops_it(home, catalog, gguf) -> None:
    proc = _chat(home, "demo-gguf", "--threads", "1", "--ctx", "256", "--max-tokens", "8")
    out, err = proc.communicate(b"Hi\n/rate\n/nonsense\n", timeout=TIMEOUT_S)  # then Ctrl-D
    err_text = err.decode()
    assert proc.returncode == 0, err_text
    assert "Starting a server for demo-gguf" in err_text and "[TTFT" in err_text
    assert out.decode().strip(), "no reply on stdout"
    assert "Say /rate up or /rate down." in err_text and "Unknown command /nonsense" in err_text
    (made,) = deployments(catalog)
    assert made.artifact_id == gguf.id and made.state == "stopped"
    assert reconcile(catalog) == []


def test_chat_with_an_unknown_name_says_what_to_do(home, catalog) -> None:
    proc = _chat(home, "no-such-model")
    _, err = proc.communicate(b"", timeout=TIMEOUT_S)
    assert proc.returncode == 3 and "llmops deployments" in err.decode()


def _reader(stream: IO[bytes]) -> Callable[[str, float], str]:
    """Collects a pipe in a thread; ``wait_for(text)`` returns all read once it appears."""
    chunks: queue.Queue[bytes] = queue.Queue()
    seen = bytearray()

    def pump() -> None:
        while data := os.read(stream.fileno(), 4096):
            chunks.put(data)

    threading.Thread(target=pump, daemon=True).start()

    def wait_for(text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while text not in seen.decode(errors="replace"):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} never came; got {seen.decode(errors='replace')!r}"
            try:
                seen.extend(chunks.get(timeout=remaining))
            except queue.Empty:
                pass
        return seen.decode(errors="replace")

    return wait_for


def test_ctrl_c_stops_the_reply_not_the_chat(home, catalog, gguf) -> None:
    engine = GatedEngine()
    with server_thread(make_deployment(catalog, gguf, name="gated"), engine) as server:
        proc = _chat(home, server.url, "--max-tokens", "5")
        try:
            out, err = _reader(proc.stdout), _reader(proc.stderr)
            assert "Chatting with gated" in err("Chatting with")
            proc.stdin.write(b"Tell me a long story\n")
            proc.stdin.flush()
            out("first ")  # streamed before the reply is over: the engine holds the rest
            assert not engine.cancelled.is_set()
            proc.send_signal(signal.SIGINT)
            assert "stopped]" in err("stopped]")
            assert engine.cancelled.wait(10), "the server went on generating"
            assert proc.poll() is None, "Ctrl-C ended the chat"

            engine.gate.set()  # the next reply runs to its end
            proc.stdin.write(b"Go on\n")
            proc.stdin.flush()
            assert "first xxxx" in out("first xxxx")
            proc.stdin.close()  # Ctrl-D
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
