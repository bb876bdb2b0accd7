"""A deployment request built from ServeOptions (serving/deploy.py): the window can set
every option ``llmops serve`` has, checks it as the server would, and starts and stops a
real llama.cpp server with it."""

from __future__ import annotations

import argparse
import subprocess
from dataclasses import fields

import pytest

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.jobs.events import Error, Result
from llmops_desktop.procs import read_events
from llmops_desktop.serving.config import ServeOptions, add_serve_arguments, options_from_args
from llmops_desktop.serving.deploy import DeployRequest, serving_log, start_server, stop_server
from llmops_desktop.serving.store import deployment, is_server_process
from tests.mirror_fixtures import import_artifact

EVERY_OPTION = dict(engine="torch", host="127.0.0.1", port=0, name="team-bot", ctx=2048,
                    threads=3, gpu_layers=-1, parallel=4, max_queue=7, batch=128,
                    device="cuda:1", quantization="bnb-nf4", lora="adapter@2",
                    chat_template="gemma", gpus="0,1", tensor_split="3,1", split_mode="row",
                    device_map="balanced", max_memory="20,20", gpu_memory_utilization=0.8)


def _child_parse(argv: list[str]) -> tuple[argparse.Namespace, ServeOptions]:
    """Parse a command line as ``python -m llmops_desktop.serving`` does."""
    assert argv[1:3] == ["-m", "llmops_desktop.serving"]
    p = argparse.ArgumentParser()
    p.add_argument("--home")
    p.add_argument("--artifact", required=True)
    add_serve_arguments(p)
    args = p.parse_args(argv[3:])
    return args, options_from_args(args)


def test_every_serve_option_reaches_the_server_command_line(home) -> None:
    assert set(EVERY_OPTION) == {f.name for f in fields(ServeOptions)}  # none left out
    request = DeployRequest.from_options(5, api_key="s3cret-key-123", **EVERY_OPTION)
    argv = request.to_argv(home)
    args, options = _child_parse(argv)
    assert options == ServeOptions(**EVERY_OPTION)
    assert args.artifact == "5" and args.home == str(home.root)
    assert "s3cret-key-123" not in " ".join(argv)  # the key goes in the environment
    assert request.environment()["LLMOPS_API_KEY"] == "s3cret-key-123"


def test_defaults_round_trip_and_a_record_restarts_with_its_settings(home) -> None:
    request = DeployRequest.from_options(1)
    assert _child_parse(request.to_argv(home))[1] == ServeOptions()


@pytest.mark.parametrize(("changes", "api_key", "expected"), [
    ({"max_queue": -1}, "", "Queue length"),
    ({"quantization": "int3"}, "", "Load quantized"),
    ({"host": "0.0.0.0"}, "", "without an API key"),
    ({}, "bad key with spaces", "API key"),
])
def test_check_refuses_what_the_server_would_refuse(home, changes, api_key, expected) -> None:
    request = DeployRequest.from_options(1, api_key=api_key, **changes)
    with pytest.raises(InvalidInputError, match=expected) as caught:
        start_server(request, home)
    assert caught.value.exit_code == 5
    assert not serving_log(home).exists()  # nothing started, nothing written


def test_start_and_stop_a_real_server_with_advanced_options(home, catalog, demo_gguf) -> None:
    gguf = import_artifact(catalog, demo_gguf, "demo-gguf")
    request = DeployRequest.from_options(gguf.id, artifact_ref=gguf.ref, port=0, threads=1,
                                         ctx=256, max_queue=3, batch=64, name="adv")
    process = start_server(request, home)
    try:
        info = None
        for event in read_events(process.stdout):
            assert not isinstance(event, Error), event
            if isinstance(event, Result):
                info = event.data
                break
        assert info is not None, f"the server exited with {process.wait()} before it was ready"
        record = deployment(catalog, info["deployment_id"])
        assert record.state == "running" and record.name == "adv"
        assert record.settings["max_queue"] == 3 and record.settings["batch"] == 64
        # a later window restarts it with the same settings
        again = DeployRequest.from_record(record)
        assert again.options.max_queue == 3 and again.options.batch == 64
        assert again.options.engine == "llama.cpp" and again.artifact_id == gguf.id
    finally:
        assert stop_server(process, grace=30) is True
    assert process.returncode == 0  # a clean stop: SIGTERM was enough
    assert deployment(catalog, info["deployment_id"]).state == "stopped"


def test_stop_server_by_pid_kills_one_that_hangs(home) -> None:
    """A server (found by its pid, say from the catalog) that ignores SIGTERM is killed."""
    code = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(600)")
    # named like a server so that is_server_process() recognises it
    proc = subprocess.Popen(["python3", "-c", code, "llmops_desktop.serving"],
                            stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    assert is_server_process(proc.pid)
    assert stop_server(proc.pid, grace=0.5) is True
    assert proc.wait() < 0 and not is_server_process(proc.pid)


def test_a_request_by_name_reaches_the_server_as_a_name(home) -> None:
    """``llmops serve NAME@VERSION`` builds the same request as the window, by name."""
    request = DeployRequest.from_options("demo-gguf@1", max_queue=2)
    args, options = _child_parse(request.to_argv(home))
    assert args.artifact == "demo-gguf@1" and options.max_queue == 2
    assert DeployRequest.from_options("12").artifact_id == 12
    with pytest.raises(InvalidInputError, match="which artifact"):
        DeployRequest.from_options(" ").check()


def test_llmops_serve_checks_the_request_before_anything_starts(home, catalog) -> None:
    """Off loopback without a key: exit code 5, a message saying what to do, no
    deployment row."""
    import os
    import sys

    env = {k: v for k, v in os.environ.items() if k != "LLMOPS_API_KEY"}
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           "serve", "nothing-here", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 5, proc.stderr
    assert "without an API key" in proc.stderr
    assert catalog.conn.execute("SELECT COUNT(*) FROM deployments").fetchone()[0] == 0
