"""GPU placement per deployment (#17 item 3): ``--gpus``, llama.cpp's tensor split, the torch
engine's accelerate device map.

Here (no GPU): hostile values are refused with a message naming the field; the options
travel from the request to the server child's command line and back through its parser;
only the child's environment pins the GPUs; llama.cpp's model parameters carry the split;
the torch engine's device map arguments; refusals where there is no GPU or the index is
outside what this process may use. On a GPU machine (``-m gpu``): a deployment pinned to
GPU 0 really sees only it and answers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.serving.config import (
    DeploymentConfig,
    GpuPlacement,
    ServeOptions,
    add_serve_arguments,
    options_from_args,
)
from llmops_desktop.serving.deploy import DeployRequest, check_gpus
from llmops_desktop.serving.engines.base import EngineSettings
from tests.mirror_fixtures import import_artifact
from tests.test_gpu import _cuda_reason


@pytest.mark.parametrize(("changes", "message"), [
    ({"gpus": "a"}, "GPUs: 'a' is not GPU indexes"),
    ({"gpus": "-1"}, "GPUs: '-1' is not GPU indexes"),
    ({"gpus": "1.5"}, "GPUs: '1.5' is not GPU indexes"),
    ({"gpus": "0x1"}, "GPUs: '0x1' is not GPU indexes"),
    ({"gpus": "0,,1"}, "GPUs: '0,,1' is not GPU indexes"),
    ({"gpus": "0,0"}, "names a GPU twice"),
    ({"gpus": "9" * 400}, "out of range"),
    ({"gpus": ",".join(["0"] * 65)}, "at most 64 numbers"),
    ({"gpus": "0,1", "tensor_split": "1"}, "Tensor split: 1 number(s) for 2 GPU(s)"),
    ({"tensor_split": "3,1"}, "choose the GPUs too"),
    ({"gpus": "0,1", "tensor_split": "3,-1"}, "Tensor split: '-1' is out of range"),
    ({"gpus": "0,1", "tensor_split": "inf,1"}, "Tensor split: 'inf' is out of range"),
    ({"gpus": "0,1", "tensor_split": "0,0"}, "at least one GPU needs a share"),
    ({"gpus": "0", "max_memory": "0"}, "needs more than 0 GiB"),
    ({"gpus": "0", "max_memory": "20,20"}, "Memory per GPU (GiB): 2 number(s) for 1 GPU(s)"),
    ({"gpu_memory_utilization": 1.5}, "GPU memory share: 1.5 is outside"),
])
def test_hostile_placement_values_are_refused_naming_the_field(changes, message) -> None:
    with pytest.raises(InvalidInputError) as caught:
        ServeOptions(**changes).checked()
    assert message in str(caught.value)


def test_the_placement_travels_to_the_child_and_back_through_its_parser(tmp_path) -> None:
    from llmops_desktop.paths import Home

    options = ServeOptions(gpus="2,0", tensor_split="3,1", split_mode="row", gpu_layers=-1,
                           gpu_memory_utilization=None)
    request = DeployRequest.from_options(7, options)
    argv = request.to_argv(Home.resolve(tmp_path / "home"))
    assert argv[argv.index("--gpus") + 1] == "2,0"
    assert argv[argv.index("--tensor-split") + 1] == "3,1"
    assert argv[argv.index("--split-mode") + 1] == "row"
    parser = argparse.ArgumentParser()
    parser.add_argument("--home")
    parser.add_argument("--artifact")
    add_serve_arguments(parser)
    parsed = options_from_args(parser.parse_args(argv[3:]))
    assert parsed.placement() == GpuPlacement((2, 0), (3.0, 1.0), (), "row", None)
    share = ServeOptions(engine="vllm", gpus="0", gpu_memory_utilization=0.8)
    argv = DeployRequest.from_options(7, share).to_argv(Home.resolve(tmp_path / "home"))
    assert options_from_args(parser.parse_args(argv[3:])).gpu_memory_utilization == 0.8


def test_only_the_child_environment_pins_the_gpus(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    env = DeployRequest.from_options(1, gpus="1,3").environment()
    assert env["CUDA_VISIBLE_DEVICES"] == "1,3" and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert "CUDA_VISIBLE_DEVICES" not in DeployRequest.from_options(1).environment()


def test_gpus_this_machine_or_process_lacks_are_refused(monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    place = ServeOptions(gpus="0,2").placement()
    with pytest.raises(InvalidInputError, match="this machine has GPUs 0..1; there is no GPU 2"):
        check_gpus(place, lambda: (2, ""))
    check_gpus(place, lambda: (4, ""))
    with pytest.raises(InvalidInputError, match="no CUDA GPU found here. Driver gone."):
        check_gpus(place, lambda: (0, "Driver gone."))
    # the gateway's --gpus 2,3: its deployments may pin only among those
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(InvalidInputError, match="0 is outside the GPUs this process may use"):
        check_gpus(place, lambda: (4, ""))
    check_gpus(ServeOptions(gpus="3").placement(), lambda: (4, ""))


def test_pinning_on_a_machine_without_gpus_says_why(home, monkeypatch) -> None:
    """The real NVML check: with no driver here, a pinned deployment cannot start."""
    from llmops_desktop.monitor.gpu import diagnose

    found = diagnose()
    if found.available:
        pytest.skip(f"this machine has GPUs ({found.message})")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(InvalidInputError, match="no CUDA GPU found here") as caught:
        DeployRequest.from_options(1, gpus="0").check()
    assert found.message in str(caught.value)
    out = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                          "serve", "demo", "--gpus", "0,x"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0 and "GPUs: '0,x' is not GPU indexes" in out.stderr


def test_each_engine_takes_only_its_own_placement_options(catalog, demo_gguf,
                                                          demo_model_dir) -> None:
    gguf = import_artifact(catalog, demo_gguf, "g")
    hf = import_artifact(catalog, demo_model_dir, "h")
    with pytest.raises(InvalidInputError, match="Device map applies to the torch engine"):
        DeploymentConfig.for_artifact(gguf, ServeOptions(device_map="auto"))
    with pytest.raises(InvalidInputError, match="Tensor split applies to the llama.cpp"):
        DeploymentConfig.for_artifact(hf, ServeOptions(gpus="0,1", tensor_split="1,1"))
    with pytest.raises(InvalidInputError, match="GPU layers is 0"):
        DeploymentConfig.for_artifact(gguf, ServeOptions(gpus="0,1", tensor_split="1,1"))
    with pytest.raises(InvalidInputError, match="GPU memory share applies to the vllm"):
        DeploymentConfig.for_artifact(hf, ServeOptions(gpu_memory_utilization=0.5))
    config = DeploymentConfig.for_artifact(hf, ServeOptions(gpus="1,0", max_memory="20,10"))
    settings = config.engine_settings()
    assert (settings.gpus, settings.device_map, settings.max_memory_gib) == (
        "1,0", "auto", (20.0, 10.0))  # memory per GPU means accelerate's auto map
    config = DeploymentConfig.for_artifact(gguf, ServeOptions(
        gpus="0,1", tensor_split="3,1", split_mode="row", gpu_layers=-1))
    settings = config.engine_settings()
    assert (settings.tensor_split, settings.split_mode) == ((3.0, 1.0), "row")


def test_llama_cpp_model_parameters_carry_the_split(demo_gguf) -> None:
    import llama_cpp

    from llmops_desktop.serving.engines.llama_cpp import LlamaCppEngine, model_params

    params, keep = model_params(EngineSettings(gpu_layers=-1, tensor_split=(3.0, 1.0),
                                               split_mode="row"))
    assert [params.tensor_split[i] for i in range(3)] == [3.0, 1.0, 0.0]
    assert params.split_mode == llama_cpp.LLAMA_SPLIT_MODE_ROW and keep is not None
    assert params.n_gpu_layers == 0x7FFFFFFF
    params, keep = model_params(EngineSettings())
    assert keep is None and params.split_mode == llama_cpp.LLAMA_SPLIT_MODE_LAYER
    with pytest.raises(InvalidInputError, match="at most"):
        model_params(EngineSettings(tensor_split=(1.0,) * (llama_cpp.LLAMA_MAX_DEVICES + 1)))
    # the engine loads with a split (a CPU build places nothing on a GPU) and answers
    engine = LlamaCppEngine.load(demo_gguf, EngineSettings(ctx=128, gpu_layers=-1,
                                                           tensor_split=(1.0, 1.0)))
    try:
        import threading

        from llmops_desktop.serving.engines.base import SamplingParams

        pieces = list(engine.generate(engine.tokenize("Hello"), SamplingParams(max_tokens=3),
                                      threading.Event()))
        assert sum(p.tokens for p in pieces) == 3
    finally:
        engine.close()


def test_the_torch_device_map_places_the_chosen_gpus() -> None:
    from llmops_desktop.serving.engines.torch_engine import device_map_kwargs

    assert device_map_kwargs(EngineSettings(), 2) == {}
    assert device_map_kwargs(EngineSettings(device_map="balanced"), 2) == {
        "device_map": "balanced"}
    assert device_map_kwargs(EngineSettings(device_map="auto", max_memory_gib=(20.0, 7.5)),
                             2) == {"device_map": "auto",
                                    "max_memory": {0: "20GiB", 1: "7.5GiB"}}
    with pytest.raises(InvalidInputError, match="torch sees no CUDA GPU"):
        device_map_kwargs(EngineSettings(device_map="auto"), 0)
    with pytest.raises(InvalidInputError, match="2 numbers for the 1 GPU"):
        device_map_kwargs(EngineSettings(device_map="auto", max_memory_gib=(1.0, 1.0)), 1)


def test_shares_per_gpu_follow_the_split_or_the_memory() -> None:
    assert GpuPlacement((1, 3), (3.0, 1.0)).shares(4) == [(1, 0.75), (3, 0.25)]
    assert GpuPlacement((0, 1), (), (30.0, 10.0)).shares(2) == [(0, 0.75), (1, 0.25)]
    assert GpuPlacement().shares(2) == [(0, 0.5), (1, 0.5)]


@pytest.mark.gpu
@pytest.mark.timeout(600)
def test_a_deployment_pinned_to_gpu_0_sees_only_it_and_answers(home, catalog, demo_gguf,
                                                               demo_model_dir) -> None:
    reason = _cuda_reason()
    if reason:
        pytest.skip(reason)
    import psutil
    import requests

    from llmops_desktop.procs import read_events
    from llmops_desktop.serving.deploy import start_server, stop_server

    for path, name, changes in ((demo_gguf, "g", {"gpu_layers": -1, "tensor_split": "1"}),
                                (demo_model_dir, "h", {"device_map": "auto"})):
        artifact = import_artifact(catalog, path, name)
        request = DeployRequest.from_options(artifact.id, port=0, gpus="0", **changes)
        process = start_server(request, home)
        try:
            info = next(e for e in read_events(process.stdout) if e.type in ("result", "error"))
            assert info.type == "result", info
            environ = psutil.Process(process.pid).environ()
            assert environ["CUDA_VISIBLE_DEVICES"] == "0"
            r = requests.post(info.data["url"] + "/v1/completions", timeout=120,
                              json={"model": info.data["name"], "prompt": "Hi",
                                    "max_tokens": 3})
            assert r.status_code == 200, r.text
            assert json.loads(r.text)["usage"]["completion_tokens"] == 3
        finally:
            stop_server(process)
    from llmops_desktop.serving.engines.torch_engine import TorchEngine

    with pytest.raises(InvalidInputError, match="Device map: a bitsandbytes"):
        TorchEngine.load(demo_model_dir, EngineSettings(device_map="auto",
                                                        quantization="bnb-nf4"))
