"""The shared child-process helpers in procs.py as the gateway uses them: the one reader of
a child's mixed output (the window's gateway), and the one way to start a server child
(``start_server``, which the gateway's ``start_deployment`` calls to have its deployments
carry its pid and end with it). Real child processes and a real llama.cpp server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from llmops_desktop.procs import MAX_LINE, pid_alive


def _drain(gen) -> tuple[list, int]:
    items = []
    try:
        while True:
            items.append(next(gen))
    except StopIteration as stop:
        return items, stop.value


def test_gateway_lines_reads_json_objects_and_text_bounded_and_returns_the_exit_code() -> None:
    from llmops_desktop.gateway.run import gateway_lines

    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import json, sys
        print(json.dumps({{"type": "ready", "url": "http://127.0.0.1:1"}}))
        print("INFO: a log line on stderr", file=sys.stderr, flush=True)
        print("")
        print(json.dumps({{"type": 5}}))
        print("[1, 2]")
        print("{{not json")
        print("x" * ({MAX_LINE} + 10))
        print(json.dumps({{"type": "models", "models": []}}), flush=True)
        sys.exit(3)
    """)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    items, code = _drain(gateway_lines(proc))
    assert items == [{"type": "ready", "url": "http://127.0.0.1:1"},
                     "INFO: a log line on stderr", '{"type": 5}', "[1, 2]", "{not json",
                     "x" * MAX_LINE, "x" * 10, {"type": "models", "models": []}]
    assert code == 3 and proc.stdout.closed


@pytest.mark.timeout(300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_deployment_started_for_a_gateway_names_it_and_ends_with_it(home, catalog,
                                                                       demo_gguf) -> None:
    """``start_deployment`` in a stand-in gateway process: the server carries that
    process's pid (what reap_orphans reads) and gets SIGTERM when it is SIGKILLed."""
    from llmops_desktop.gateway.children import gateway_of
    from tests.mirror_fixtures import import_artifact

    gguf = import_artifact(catalog, demo_gguf, "demo-gguf")
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from llmops_desktop.gateway.children import start_deployment
        from llmops_desktop.paths import Home
        from llmops_desktop.procs import read_events
        from llmops_desktop.serving.deploy import DeployRequest
        request = DeployRequest.from_options({gguf.id}, port=0, ctx=256, threads=1)
        server = start_deployment(request, Home.resolve({str(home.root)!r}))
        for event in read_events(server.stdout):  # serving: it prints nothing more until
            if event.type == "result":            # it stops, so no broken pipe ends it
                break
        print(server.pid, flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    child = 0
    try:
        child = int(parent.stdout.readline())
        assert gateway_of(child) == parent.pid
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 60
        while pid_alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not pid_alive(child), f"deployment {child} outlived the process that started it"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child and pid_alive(child):  # a failed test leaves no model in memory either
            os.kill(child, signal.SIGKILL)
