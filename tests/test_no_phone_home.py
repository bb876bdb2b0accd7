"""Nothing phones home: start-up, import, quantize, serve and monitor with the network cut.

Every process the test starts (and every child they start: jobs, servers) loads a guard
through ``sitecustomize`` that records and refuses any connection or name lookup other
than loopback and Unix sockets. The environment is a plain shell's: none of the
HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / *_TELEMETRY switches set, so whatever keeps
huggingface_hub and transformers quiet is the app's own doing (its ``offline`` setting,
on by default).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

GUARD = textwrap.dedent('''
    import os, socket, sys

    _LOG = os.environ["PHONE_HOME_LOG"]
    _LOOPBACK = ("127.", "::1", "localhost", "0:0:0:0:0:0:0:1")

    def _record(what):
        with open(_LOG, "a", encoding="utf-8") as fh:
            fh.write(what + "\\n")

    def _local(host):
        if host is None or host in ("", b""):
            return True
        if isinstance(host, bytes):
            host = host.decode(errors="replace")
        return str(host).startswith(_LOOPBACK)

    def _hook(event, args):
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            sock, addr = args[0], (args[1] if len(args) > 1 else None)
            if getattr(sock, "family", None) == socket.AF_UNIX or addr is None:
                return
            host = addr[0] if isinstance(addr, tuple) else addr
            if not _local(host):
                _record(f"BLOCKED {os.getpid()} {event} {addr!r} in {sys.argv[:3]}")
                raise OSError(101, "network blocked by test_no_phone_home")
        elif event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr"):
            if args and not _local(args[0]):
                _record(f"BLOCKED {os.getpid()} {event} {args[0]!r} in {sys.argv[:3]}")
                raise OSError(101, "name resolution blocked by test_no_phone_home")
        elif event == "urllib.Request":
            url = str(args[0])
            if not re.match(r"https?://(127\\.|localhost|\\[::1\\])", url):
                _record(f"BLOCKED {os.getpid()} urllib {url} in {sys.argv[:3]}")

    import re
    sys.addaudithook(_hook)
    _record(f"GUARD {os.getpid()} {sys.orig_argv[1:5]}")
''')

# Switches a user's shell would not have; the app must not need them.
QUIET_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
                  "HF_HUB_DISABLE_UPDATE_CHECK", "DO_NOT_TRACK", "HF_DATASETS_OFFLINE",
                  "HF_HUB_DISABLE_IMPLICIT_TOKEN")


@pytest.fixture
def guarded(tmp_path: Path, home):
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "phone-home.log"
    env = {k: v for k, v in os.environ.items() if k not in QUIET_SWITCHES}
    env.update(PYTHONPATH=f"{guard_dir}{os.pathsep}{env.get('PYTHONPATH', '')}",
               PHONE_HOME_LOG=str(log), LLMOPS_HOME=str(home.root), QT_QPA_PLATFORM="offscreen")

    def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                              timeout=timeout)
        assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr[-4000:]}"
        return proc

    def attempts() -> list[str]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [x for x in lines if x.startswith("BLOCKED")]

    def guarded_processes() -> list[str]:
        return [x for x in (log.read_text().splitlines() if log.exists() else [])
                if x.startswith("GUARD")]

    return run, attempts, guarded_processes, env


def _serve_and_ask(env: dict, ref: str, *extra: str, chat: bool = False) -> dict:
    proc = subprocess.Popen([sys.executable, "-m", "llmops_desktop.cli", "serve", ref, "--port",
                             "0", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        url, lines = None, []
        while url is None:
            line = proc.stderr.readline()
            if not line:
                raise AssertionError("the server did not start:\n" + "".join(lines))
            lines.append(line)
            m = re.search(r" on (http://127\.0\.0\.1:\d+);", line)
            url = m and m.group(1)
        body = ({"model": ref, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
                if chat else {"model": ref, "prompt": "Once upon", "max_tokens": 4})
        req = urllib.request.Request(url + ("/v1/chat/completions" if chat else "/v1/completions"),
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            answer = json.loads(resp.read())
        with urllib.request.urlopen(url + "/metrics", timeout=30) as resp:
            assert resp.status == 200
        return answer
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.timeout(600)
def test_no_connection_attempt_on_any_path(guarded, demo_model_dir: Path) -> None:
    run, attempts, guarded_processes, env = guarded

    # The guard is real: it catches an attempt (and lets loopback through).
    probe = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection("
                            "('192.0.2.1', 443), timeout=2)"], capture_output=True, text=True,
                           env=env)
    assert "blocked by test_no_phone_home" in probe.stderr and len(attempts()) == 1
    log = Path(env["PHONE_HOME_LOG"])
    log.unlink()

    # Import, quantize (a job child: convert, quantize, perplexity), list, show.
    run("-m", "llmops_desktop.cli", "import", str(demo_model_dir), "--name", "tiny")
    run("-m", "llmops_desktop.cli", "quantize", "tiny", "--to", "Q8_0")
    run("-m", "llmops_desktop.cli", "show", "tiny")

    # Serve: llama.cpp on the GGUF, torch (transformers) on the HF model.
    llama = _serve_and_ask(env, "tiny-Q8_0")
    assert llama["usage"]["completion_tokens"] > 0
    torch_answer = _serve_and_ask(env, "tiny", "--engine", "torch")
    assert torch_answer["usage"]["completion_tokens"] > 0

    # Monitor and doctor.
    run("-m", "llmops_desktop.cli", "monitor", "--once")
    run("-m", "llmops_desktop.cli", "doctor")

    # Start-up of the GUI: every page shown, the monitor sampling for a moment; and what
    # huggingface_hub and transformers were told in a process of the app.
    gui = run("-c", textwrap.dedent("""
        import json, time
        from llmops_desktop.qt.app import create_application
        from llmops_desktop.qt.main_window import MainWindow
        from llmops_desktop.paths import Home
        app = create_application()
        w = MainWindow(Home.resolve())
        w.show()
        for i in range(w.sidebar.count()):
            w.sidebar.setCurrentRow(i)
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                app.processEvents()
        w.close()
        app.processEvents()
        from huggingface_hub import constants
        from transformers.utils import hub
        print(json.dumps({"hf_offline": constants.HF_HUB_OFFLINE,
                          "telemetry_off": constants.HF_HUB_DISABLE_TELEMETRY,
                          "transformers_offline": hub.is_offline_mode()}))
    """), timeout=180)
    told = json.loads(gui.stdout.strip().splitlines()[-1])

    assert attempts() == [], attempts()
    started = guarded_processes()
    # The CLI processes, the quantize job's child and both servers ran under the guard.
    assert any("llmops_desktop.jobs.child" in x for x in started), started
    assert sum("'serve'" in x for x in started) >= 2, started
    # Offline is the default: the hub clients are told so, and telemetry is off.
    assert told == {"hf_offline": True, "telemetry_off": True, "transformers_offline": True}, told
