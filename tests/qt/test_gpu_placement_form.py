"""The Deployments page's GPU placement (#17 items 3, 4): each GPU's free memory or why
there is none, the estimate for the chosen placement, the rows the chosen engine uses, and
vLLM greyed out with the reason where it cannot run; a vLLM deployment's live figures come
from vLLM's own /metrics."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from llmops_desktop.gateway.pool import memory_need  # noqa: E402
from llmops_desktop.qt.formatting import human_size  # noqa: E402
from llmops_desktop.monitor.gpu import GpuDevice, GpuDiagnosis, diagnose  # noqa: E402
from llmops_desktop.serving.config import ServeOptions  # noqa: E402
from llmops_desktop.serving.engines.vllm_engine import vllm_available  # noqa: E402
from tests.mirror_fixtures import import_artifact  # noqa: E402

GIB = 2**30


def test_gpus_estimate_and_vllm_greyed_out(qtbot, window, catalog, demo_gguf, demo_model_dir):
    gguf = import_artifact(catalog, demo_gguf, "demo-gguf")
    hf = import_artifact(catalog, demo_model_dir, "demo-hf")
    page = window.deployments_page
    page.reload_artifacts()
    form = page.form
    box = form.placement
    qtbot.waitUntil(lambda: not box.gpu_label.text().startswith("Reading"), timeout=30_000)
    found = diagnose()
    if not found.available:
        assert box.gpu_label.text() == f"No CUDA GPU found: {found.message}"
    else:
        assert box.gpu_label.text().count("free of") == len(found.devices)
    ok, reason = vllm_available()
    index = form.engine_combo.findData("vllm")
    item = form.engine_combo.model().item(index)
    assert form.engine_combo.itemText(index) == "vLLM"
    assert item.isEnabled() == ok
    if not ok:
        assert item.toolTip() == f"Not available: {reason}"
        assert form.engine_combo.itemData(index, Qt.ItemDataRole.ToolTipRole) == item.toolTip()

    # the rows follow the engine: llama.cpp splits tensors, torch takes a device map
    assert form.select_artifact(gguf.id) and form.engine() == "llama.cpp"
    visible = {n: box.form.input(n).isVisibleTo(box) for n in box.form.editors}
    assert visible == {"gpus": True, "tensor_split": True, "split_mode": True,
                       "device_map": False, "max_memory": False,
                       "gpu_memory_utilization": False}
    assert form.select_artifact(hf.id) and form.engine() == "torch"
    assert box.form.input("device_map").isVisibleTo(box)
    assert not box.form.input("tensor_split").isVisibleTo(box)

    assert f"needs about {human_size(memory_need(hf, ServeOptions()))}" in \
        box.estimate_label.text()

    # the estimate is the gateway's, for what the form shows
    assert form.select_artifact(gguf.id)
    form.ctx_spin.setValue(256)
    form.gpu_layers_spin.setValue(-1)
    need = memory_need(gguf, ServeOptions(**_options(form)))
    assert f"needs about {human_size(need)}" in box.estimate_label.text()
    form.ctx_spin.setValue(8192)  # a longer context: a larger KV cache, a new estimate
    bigger = memory_need(gguf, ServeOptions(**_options(form)))
    assert human_size(bigger) != human_size(need)
    assert f"needs about {human_size(bigger)}" in box.estimate_label.text()

    # a placement the server would refuse says so before anything starts
    if not found.available:
        box.form.set_value("gpus", "0")
        assert "GPUs 0: no CUDA GPU found here, so Start would be refused" in \
            box.estimate_label.text()
    box.form.set_value("gpus", "0,0")
    assert "names a GPU twice" in box.estimate_label.text()
    assert form.serve_values()["gpus"] == "0,0"

    # two GPUs as NVML reports them: the share of each, beside its free memory
    two = GpuDiagnosis(True, "ok", "2 NVIDIA GPU(s)", devices=(
        GpuDevice(0, "A", "u0", 24 * GIB, 20 * GIB), GpuDevice(1, "B", "u1", 24 * GIB, 1024)))
    box.set_gpus((two, (False, "vLLM is not installed.")))
    assert box.gpu_label.text().splitlines() == ["GPU 0 · A: 21.5 GB free of 25.8 GB",
                                                 "GPU 1 · B: 1.0 KB free of 25.8 GB"]
    box.form.set_value("gpus", "0,1")
    box.form.set_value("tensor_split", "3,1")
    text = box.estimate_label.text()
    assert f"GPU 0: {human_size(bigger * 0.75)} of 21.5 GB free" in text
    assert f"GPU 1: {human_size(bigger * 0.25)} of 1.0 KB free" in text
    assert "more than a GPU has free" in text
    box.form.set_value("tensor_split", None)
    box.form.set_value("gpus", "0,5")
    assert box.estimate_label.text() == "There is no GPU 5 here."


def _options(form) -> dict:
    from dataclasses import fields

    known = {f.name for f in fields(ServeOptions)}
    return {k: v for k, v in form.serve_values().items() if k in known}


def test_a_vllm_deployments_live_figures_come_from_its_own_metrics(tmp_path) -> None:
    """vLLM's gauges (read from the stand-in server's /metrics, in vLLM's format)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    import requests

    from llmops_desktop.httpserve import bind_socket
    from llmops_desktop.qt.deploy_details import engine_figures, engine_text

    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    standin = Path(__file__).parents[1] / "vllm_standin.py"
    proc = subprocess.Popen([sys.executable, str(standin), "--host", "127.0.0.1", "--port",
                             str(port), "--served-model-name", "team-model"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/health", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the stand-in never answered"
            time.sleep(0.1)
        figures = engine_figures(url, None)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert figures == {"vllm:num_requests_running": 3.0, "vllm:num_requests_waiting": 1.0,
                       "vllm:kv_cache_usage_perc": 0.25}
    assert engine_text(figures) == "Engine: 3 running · 1 waiting · KV cache 25% full"
