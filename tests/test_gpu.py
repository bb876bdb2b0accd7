"""What only a CUDA GPU can show: serving on the GPU (plain and bitsandbytes 4-bit) and
fine-tuning there (LoRA and QLoRA). Skipped, with the reason, where torch sees no GPU;
run on a GPU machine with ``pytest -m gpu``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu


def _cuda_reason() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU here"
    return None


@pytest.fixture(scope="module")
def gpu_home(tmp_path_factory, demo_model_session: Path):
    reason = _cuda_reason()
    if reason:
        pytest.skip(reason)
    from llmops_desktop.catalog import Catalog
    from llmops_desktop.paths import Home
    from tests.mirror_fixtures import import_artifact

    home = Home.resolve(tmp_path_factory.mktemp("gpu") / "home")
    with Catalog.open(home) as cat:
        import_artifact(cat, demo_model_session, "tiny")
    return home


@pytest.mark.parametrize("extra", [(), ("--quantization", "bnb-nf4")], ids=["fp", "nf4"])
def test_torch_engine_serves_on_the_gpu(gpu_home, extra) -> None:
    import requests

    from tests.serving_fixtures import server_process

    with server_process(gpu_home.root, "--artifact", "tiny", "--engine", "torch",
                        "--device", "cuda", *extra) as server:
        url = server.info["url"]
        health = requests.get(url + "/health", timeout=10).json()
        assert str(health.get("device", "")).startswith("cuda"), health
        r = requests.post(url + "/v1/completions", timeout=60, json={
            "model": server.info["name"], "prompt": "Hello", "max_tokens": 8,
            "temperature": 0})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] > 0


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_finetune_on_the_gpu(gpu_home, tmp_path: Path, method: str) -> None:
    rows = [{"messages": [{"role": "user", "content": f"Repeat {w}"},
                          {"role": "assistant", "content": w}]}
            for w in "model data weights local machine team share quantize".split() * 4]
    data = tmp_path / "repeat.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def llmops(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home",
                               str(gpu_home.root), *args], capture_output=True, text=True,
                              timeout=600)

    name = f"repeat-{method}"
    imported = llmops("dataset", "import", str(data), "--name", name, "--validation", "0.125")
    assert imported.returncode == 0, imported.stderr
    out = llmops("finetune", "tiny", name, "--method", method, "--max-steps", "6",
                 "--batch-size", "4", "--max-len", "48", "--eval-steps", "3", "--save-steps", "3",
                 "--device", "cuda", "--name", f"tiny-{method}", "--json")
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    shown = json.loads(llmops("show", str(result["artifact_id"]), "--json").stdout)
    assert shown["kind"] == "lora"
    assert "cuda" in json.dumps(shown).lower()  # trained on the GPU, as the record says
