"""What a hostile or careless client sends a deployment (and the mirror): bodies without a
Content-Length, bodies past the limit, floods of huge prompts, fields the server cannot
honour, numbers that are not numbers; and keys that must never sit on a command line.

Raw sockets where a client library would tidy the request up; everything on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from llmops_desktop.catalog import Catalog
from llmops_desktop.httpserve import MAX_BODY
from llmops_desktop.paths import Home
from llmops_desktop.serving.engines.base import EngineSettings, get_engine
from tests.mirror_fixtures import import_artifact, running_mirror
from tests.serving_fixtures import GatedEngine, make_deployment, server_process, server_thread

MIB = 2**20
EXTRA = 128 * MIB  # what a client tries to send past the limit
CHAT = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def hostile_home(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path) -> Home:
    home = Home.resolve(tmp_path_factory.mktemp("hostile") / "home")
    with Catalog.open(home) as cat:
        import_artifact(cat, demo_gguf_session, "demo-gguf")
    return home


@pytest.fixture(scope="module")
def cat(hostile_home: Home):
    with Catalog.open(hostile_home) as c:
        yield c


@pytest.fixture(scope="module")
def llama(cat: Catalog):
    """A real llama.cpp deployment of the demo model."""
    engine = get_engine("llama.cpp").load(cat.resolve("demo-gguf").path,
                                          EngineSettings(threads=1, parallel=1, ctx=256))
    with server_thread(make_deployment(cat, cat.resolve("demo-gguf"), name="hostile"),
                       engine) as server:
        yield server
    engine.close()


# ---- raw HTTP ---------------------------------------------------------------------------------

def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class RawExchange:
    """One request on a raw socket: headers, then whatever the test sends, while a thread
    collects everything the server answers until it closes the connection."""

    def __init__(self, url: str, head: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", _port(url)), timeout=60)
        self.sock.sendall(head.encode() + b"\r\n")
        self.received = bytearray()
        self.sent = 0
        self.send_error: OSError | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            while data := self.sock.recv(65536):
                self.received += data
        except OSError:
            pass

    def send(self, data: bytes) -> bool:
        """Send ``data``; False once the server has closed the connection."""
        try:
            self.sock.sendall(data)
        except OSError as exc:
            self.send_error = exc
            return False
        self.sent += len(data)
        return True

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body, once the server closed the connection."""
        self._reader.join(60)
        assert not self._reader.is_alive(), "the server kept the connection open"
        self.sock.close()
        head, _, body = bytes(self.received).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].startswith("HTTP/1.1 "), bytes(self.received[:200])
        headers = dict(line.split(": ", 1) for line in lines[1:])
        return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _post_head(path: str, *extra: str) -> str:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1",
                        "Content-Type: application/json", *extra, ""])


def _chunked_exchange(url: str, method_path: str, body: bytes) -> tuple[int, dict, bytes]:
    method, path = method_path.split(" ")
    ex = RawExchange(url, "\r\n".join([f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
                                       "Content-Type: application/json",
                                       "Transfer-Encoding: chunked", "Connection: close", ""]))
    # Many small chunks; a path that reads no body may answer (and close) before the end.
    chunks = [_chunk(body[i:i + 7]) for i in range(0, len(body), 7)] + [b"0\r\n\r\n"]
    all(ex.send(c) for c in chunks)
    return ex.response()


def _flood_past_the_limit(url: str, head: str) -> RawExchange:
    """Send the limit and EXTRA more in 1 MiB chunks, or until the server closes."""
    ex = RawExchange(url, head)
    piece = _chunk(b"a" * MIB)
    while ex.sent < MAX_BODY + EXTRA and ex.send(piece):
        pass
    return ex


def _metric(url: str, name: str) -> float:
    text = requests.get(url + "/metrics", timeout=10).text
    return sum(s.value for family in text_string_to_metric_families(text)
               for s in family.samples if s.name == name)


def _assert_openai_error(body: bytes, code: str) -> dict:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    assert error["message"]
    return error


# ---- bodies without a Content-Length -------------------------------------------------------------

def test_chunked_requests_are_answered_like_any_other(llama) -> None:
    chat = json.dumps({"model": "hostile", "messages": CHAT, "max_tokens": 4,
                       "temperature": 0}).encode()
    status, _, body = _chunked_exchange(llama.url, "POST /v1/chat/completions", chat)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert 0 < answer["usage"]["completion_tokens"] <= 4
    same = requests.post(llama.url + "/v1/chat/completions", data=chat, timeout=60,
                         headers={"Content-Type": "application/json"}).json()
    assert same["choices"][0]["message"] == answer["choices"][0]["message"]

    completion = json.dumps({"model": "hostile", "prompt": "Once", "max_tokens": 3}).encode()
    status, _, body = _chunked_exchange(llama.url, "POST /v1/completions", completion)
    assert status == 200 and json.loads(body)["usage"]["completion_tokens"] > 0, body
    status, _, body = _chunked_exchange(llama.url, "POST /v1/completions", b"{broken")
    assert status == 400
    _assert_openai_error(body, "invalid_json")


def test_a_chunked_body_past_the_limit_gets_413_and_the_rest_is_never_read(llama) -> None:
    ex = _flood_past_the_limit(llama.url, _post_head("/v1/chat/completions",
                                                     "Transfer-Encoding: chunked"))
    status, headers, body = ex.response()
    assert status == 413 and headers["connection"] == "close"
    error = _assert_openai_error(body, "request_too_large")
    assert "16 MiB" in error["message"]
    # The server closed the connection instead of reading (and dropping) the rest.
    assert ex.send_error is not None and ex.sent < MAX_BODY + EXTRA
    assert requests.get(llama.url + "/health", timeout=10).json()["status"] == "ok"
    assert llama.state.admission.waiting == 0 and llama.state.admission.running == 0


def test_a_declared_length_past_the_limit_is_refused_before_reading(llama) -> None:
    ex = RawExchange(llama.url, _post_head("/v1/completions", f"Content-Length: {MAX_BODY + 1}"))
    status, headers, body = ex.response()  # not a byte of the body was sent
    assert status == 413 and headers["connection"] == "close"
    _assert_openai_error(body, "request_too_large")


def test_paths_that_read_no_body_answer_and_do_not_drain_one(llama) -> None:
    ex = _flood_past_the_limit(llama.url, "\r\n".join(
        ["GET /health HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked", ""]))
    status, headers, body = ex.response()
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert headers["connection"] == "close" and ex.send_error is not None
    status, _, body = _chunked_exchange(llama.url, "POST /v1/models", b'{"x": 1}')
    assert status == 405 and json.loads(body)["error"]["message"]


def test_the_mirror_answers_chunked_requests_and_stops_reading(tmp_path: Path) -> None:
    with running_mirror(tmp_path / "mirror-home") as mirror:
        status, _, _ = _chunked_exchange(mirror.url, "POST /api/models", b'{"a": 1}')
        assert status == 405
        status, _, body = _chunked_exchange(mirror.url, "GET /api/models/nobody/nothing", b"xx")
        assert status in (401, 404), body
        ex = _flood_past_the_limit(mirror.url, "\r\n".join(
            ["GET /api/models/nobody/nothing HTTP/1.1", "Host: 127.0.0.1",
             "Transfer-Encoding: chunked", ""]))
        status, headers, _ = ex.response()
        assert status in (401, 404, 413) and headers["connection"] == "close"
        assert ex.send_error is not None and ex.sent < MAX_BODY + EXTRA
        assert mirror.proc.poll() is None, mirror.output
        assert requests.get(mirror.url + "/api/models/nobody/nothing",
                            timeout=10).status_code in (401, 404)


# ---- floods of huge prompts -----------------------------------------------------------------------

def test_huge_prompts_without_a_place_in_the_queue_are_never_tokenized(cat: Catalog) -> None:
    engine = GatedEngine(slots=1)
    config = make_deployment(cat, cat.resolve("demo-gguf"), name="flooded", max_queue=2)
    huge = "word " * (2 * MIB)  # 10 MiB of prompt: far more tokens than the context
    with server_thread(config, engine) as server:
        url = server.url + "/v1/completions"
        # Requests that fail after tokenizing give their place back.
        for _ in range(5):
            r = requests.post(url, json={"model": "flooded", "prompt": "x " * 600}, timeout=60)
            assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
        assert _metric(server.url, "llmops_prompts_tokenized_total") == 5

        body = {"model": "flooded", "prompt": "go", "max_tokens": 3}
        with requests.post(url, json={**body, "stream": True}, stream=True, timeout=60) as holder, \
                ThreadPoolExecutor(2) as pool:
            lines = holder.iter_lines()  # kept: a dropped iterator closes the connection
            assert b"first" in next(lines)  # it holds the only slot
            queued = [pool.submit(requests.post, url, json=body, timeout=60) for _ in range(2)]
            while server.state.admission.waiting < 2:
                assert not any(f.done() for f in queued), [f.result().text for f in queued]
                threading.Event().wait(0.01)
            for _ in range(6):
                r = requests.post(url, json={"model": "flooded", "prompt": huge}, timeout=60)
                assert r.status_code == 503 and r.headers["Retry-After"], r.text
                assert r.json()["error"]["code"] == "server_overloaded"
            # Only the holder and the two queued requests were tokenized.
            assert _metric(server.url, "llmops_prompts_tokenized_total") == 5 + 3
            assert _occupancy(server) == (1, 2)
            engine.gate.set()
            assert b"[DONE]" in b"".join(lines)
            assert [f.result().status_code for f in queued] == [200, 200]


def _occupancy(server) -> tuple[int, int]:
    """(running, waiting) of a server on a thread."""
    return server.state.admission.running, server.state.admission.waiting


# ---- fields the server cannot honour, numbers that are not numbers -------------------------------

@pytest.mark.parametrize(("field", "value", "code"), [
    ("logit_bias", {"50256": -100}, "unsupported_parameter"),
    ("logprobs", "yes", "invalid_value"),  # logprobs are served (#15 item 7); not a bool
    ("top_logprobs", 3, "invalid_value"),  # without "logprobs": true
    ("presence_penalty", 0.5, "unsupported_parameter"),
    ("frequency_penalty", 1, "unsupported_parameter"),
    # tools and response_format are served (#15 items 4, 5): these rows are malformed ones
    ("tools", [{"type": "function", "function": {"name": "f f"}}], "invalid_value"),
    ("tool_choice", "required", "invalid_value"),  # required, but no tools
    ("response_format", {"type": "yaml"}, "invalid_value"),
    ("n", 2, "invalid_value"),
    ("max_tokens", True, "invalid_value"),
    ("max_tokens", "5", "invalid_value"),
    ("max_tokens", 5.5, "invalid_value"),
    ("max_completion_tokens", False, "invalid_value"),
    ("seed", "7", "invalid_value"),
    ("n", True, "invalid_value"),
    ("temperature", True, "invalid_value"),
    ("temperature", "0.5", "invalid_value"),
])
def test_fields_the_server_cannot_honour_are_refused_by_name(llama, field, value, code) -> None:
    r = requests.post(llama.url + "/v1/chat/completions", timeout=60,
                      json={"model": "hostile", "messages": CHAT, "max_tokens": 2, field: value})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["param"] == field, error
    assert f"'{field}'" in error["message"]


def test_fields_sent_with_their_off_values_are_accepted(llama) -> None:
    r = requests.post(llama.url + "/v1/chat/completions", timeout=60, json={
        "model": "hostile", "messages": CHAT, "max_tokens": 2, "n": 1, "logprobs": False,
        "logit_bias": {}, "presence_penalty": 0, "frequency_penalty": 0.0, "tools": [],
        "response_format": {"type": "text"}, "temperature": 0, "seed": 3})
    assert r.status_code == 200, r.text
    r = requests.post(llama.url + "/v1/completions", timeout=60,
                      json={"model": "hostile", "prompt": [1, True], "max_tokens": 2})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt", r.text


# ---- keys never on a command line --------------------------------------------------------------

def _llmops(home: Home, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if k != "LLMOPS_API_KEY"}
    child_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, env=child_env)


def test_serve_refuses_a_key_on_the_command_line(hostile_home: Home) -> None:
    key = "argv-key-must-not-echo"
    proc = _llmops(hostile_home, "serve", "demo-gguf", "--port", "0", "--api-key", key,
                   timeout=120)  # (were it taken, the server would run until killed)
    assert proc.returncode == 5, proc.stderr
    assert "--api-key-file" in proc.stderr and "LLMOPS_API_KEY" in proc.stderr
    assert key not in proc.stdout + proc.stderr


def test_serve_takes_its_key_from_a_file(hostile_home: Home, tmp_path: Path) -> None:
    key = "file-key-do-not-log"
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    child_env = {k: v for k, v in os.environ.items() if k != "LLMOPS_API_KEY"}
    proc = subprocess.Popen([sys.executable, "-m", "llmops_desktop.cli", "--home",
                             str(hostile_home.root), "serve", "demo-gguf", "--port", "0",
                             "--threads", "1", "--api-key-file", str(key_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=child_env)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if " on http://" in line:
                break
        url = lines[-1].split(" on ", 1)[1].split(";")[0].strip()
        assert requests.get(url + "/v1/models", timeout=10).status_code == 401
        assert requests.get(url + "/v1/models", timeout=10,
                            headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert key not in "".join(lines) + out


def test_monitor_takes_keys_from_a_file_or_stdin_never_argv(hostile_home: Home,
                                                            tmp_path: Path) -> None:
    key = "monitor-key-do-not-echo"
    proc = _llmops(hostile_home, "monitor", "--once", "--key", f"1={key}")
    assert proc.returncode == 5 and "--key-file" in proc.stderr, proc.stderr
    assert key not in proc.stdout + proc.stderr
    bad = tmp_path / "bad-keys"
    bad.write_text(f"# keys\n\n{key}\n")
    proc = _llmops(hostile_home, "monitor", "--once", "--key-file", str(bad))
    assert proc.returncode == 5 and "line 3" in proc.stderr, proc.stderr
    assert key not in proc.stdout + proc.stderr

    with server_process(hostile_home.root, "--artifact", "demo-gguf", "--threads", "1",
                        "--name", "keyed", env={"LLMOPS_API_KEY": key}) as server:
        dep_id = server.info["deployment_id"]

        def status(*args: str, stdin: str | None = None) -> dict:
            proc = _llmops(hostile_home, "monitor", "--once", "--json", *args, stdin=stdin)
            assert proc.returncode == 0, proc.stderr
            assert key not in proc.stdout + proc.stderr
            return next(d for d in json.loads(proc.stdout)["deployments"] if d["id"] == dep_id)

        assert status()["status"] == "needs-key"
        good = tmp_path / "keys"
        good.write_text(f"# id=key\n{dep_id}={key}\n")
        assert status("--key-file", str(good))["status"] == "ok"
        assert status("--key-file", "-", stdin=f"{dep_id}={key}\n")["status"] == "ok"
        wrong = status("--key-file", "-", stdin=f"{dep_id}=not-the-key\n")
        assert wrong["status"] == "needs-key" and "refused" in wrong["message"]
