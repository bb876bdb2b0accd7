"""bitsandbytes checkpoints of the demo model: saved, reloaded by plain transformers, generating."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.jobs.events import Log, Metric, Progress
from llmops_desktop.quantize.bnb import BNB_MODES, bnb_config_kwargs, bnb_support, quantize_bnb

pytest.importorskip("bitsandbytes")


def _quantize(src: Path, out: Path, mode: str, device: str | None = "cpu") -> list:
    events = list(quantize_bnb(src, out, mode, device=device))
    assert isinstance(events[-1], Metric) and events[-1].name == "bnb_bytes"
    assert events[-1].value == sum(p.stat().st_size for p in out.iterdir())
    steps = [e for e in events if isinstance(e, Progress)]
    assert steps[-1].done == steps[-1].total
    assert any(isinstance(e, Log) and e.message.startswith("verified") for e in events)
    return events


def _generate(out: Path, device_map: str = "cpu") -> list[int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out), device_map=device_map)
    tok = AutoTokenizer.from_pretrained(str(out))
    ids = tok("Import a model", return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad():
        gen = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=5, min_new_tokens=5, pad_token_id=tok.eos_token_id)
    return gen[0, ids.shape[1]:].tolist()


def _odd_folder(demo: Path, tmp_path: Path, **changes: int) -> Path:
    """A model folder whose config.json has the given sizes (weights are not read)."""
    folder = tmp_path / "odd"
    folder.mkdir(parents=True)
    config = json.loads((demo / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def test_int8_checkpoint_is_smaller_and_reloads(demo_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8"
    _quantize(demo_model_dir, out, "bnb-int8")
    config = json.loads((out / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "bitsandbytes"
    assert config["quantization_config"]["load_in_8bit"] is True
    for name in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "README.md"):
        assert (out / name).is_file(), name
    weights = (out / "model.safetensors").stat().st_size
    assert weights < (demo_model_dir / "model.safetensors").stat().st_size * 0.75
    assert len(_generate(out)) == 5


def test_nf4_checkpoint_quantizes_the_linear_layers_and_generates(demo_model_dir: Path,
                                                                   tmp_path: Path) -> None:
    import bitsandbytes as bnb

    from llmops_desktop.quantize.bnb import load_bnb

    out = tmp_path / "nf4"
    _quantize(demo_model_dir, out, "bnb-nf4")
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["load_in_4bit"] is True and qc["bnb_4bit_quant_type"] == "nf4"
    assert qc["bnb_4bit_use_double_quant"] is True
    assert (out / "model.safetensors").stat().st_size < (
        demo_model_dir / "model.safetensors").stat().st_size
    assert len(_generate(out)) == 5

    # The torch engine's loader: a saved checkpoint needs no mode; an original takes one.
    model = load_bnb(out, device="cpu")
    kinds = {name: type(m) for name, m in model.named_modules()}
    assert sum(k is bnb.nn.Linear4bit for k in kinds.values()) == 14  # q k v o gate up down x 2
    assert kinds["lm_head"] is not bnb.nn.Linear4bit  # transformers keeps the head as it is
    with pytest.raises(InvalidInputError, match="bnb-nf4 checkpoint"):
        load_bnb(out, "bnb-int8", device="cpu")
    model = load_bnb(demo_model_dir, "bnb-fp4", device="cpu")
    assert model.config.quantization_config.bnb_4bit_quant_type == "fp4"


def test_layers_checked_are_the_ones_transformers_quantizes(demo_model_dir: Path) -> None:
    from transformers import AutoConfig

    from llmops_desktop.quantize.bnb import _layers_to_quantize

    layers = _layers_to_quantize(AutoConfig.from_pretrained(demo_model_dir))
    names = {n.rsplit(".", 1)[-1] for n, _, _ in layers}
    assert names == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert len(layers) == 14
    assert ("model.layers.0.self_attn.k_proj", 64, 32) in layers  # 2 kv heads of 16
    assert ("model.layers.0.mlp.down_proj", 128, 64) in layers


@pytest.mark.parametrize(("k", "n"), [(64, 64), (128, 32), (64, 48), (96, 64), (100, 32)])
def test_cpu_4bit_rule_is_what_bitsandbytes_packing_accepts(k: int, n: int) -> None:
    """CPUs with AVX512-BF16 repack 4-bit weights before their first forward; the rule must
    refuse exactly the shapes that repacking refuses (it is plain torch, so any CPU runs it)."""
    import torch
    from bitsandbytes import functional as F

    from llmops_desktop.quantize.bnb import _exact_cpu_4bit_reason

    q, state = F.quantize_4bit(torch.randn(n, k), blocksize=64, compress_statistics=True,
                               quant_type="nf4")
    try:
        F._convert_weight_packed_for_cpu(q, state)
        packs = True
    except (AssertionError, RuntimeError):
        packs = False
    reason = _exact_cpu_4bit_reason([("model.layers.0.mlp.up_proj", k, n)])
    assert (reason is None) == packs, reason
    if reason:
        assert f"up_proj ({k} in, {n} out)" in reason


def test_support_names_the_size_that_rules_out_4bit_on_cpu(demo_model_dir: Path,
                                                            tmp_path: Path) -> None:
    odd = _odd_folder(demo_model_dir, tmp_path, intermediate_size=100, vocab_size=32001)
    reason = bnb_support(odd, "bnb-nf4", device="cpu")
    assert reason is not None and "intermediate_size 100" in reason
    assert "vocab_size" not in reason  # lm_head is not quantized
    assert bnb_support(odd, "bnb-int8", device="cpu") is None
    for mode in BNB_MODES:
        assert bnb_support(demo_model_dir, mode, device="cpu") is None
    # The width of the key/value projections is an output size only: a multiple of 32 will do.
    kv32 = _odd_folder(demo_model_dir, tmp_path / "kv", num_key_value_heads=2, head_dim=16,
                       num_attention_heads=4)
    assert bnb_support(kv32, "bnb-nf4", device="cpu") is None
    # 96 is a fine output size but not a 4-bit block multiple as q_proj's input.
    wide = _odd_folder(demo_model_dir, tmp_path / "wide", hidden_size=96, num_attention_heads=6)
    assert "hidden_size 96 (not a multiple of 64)" in bnb_support(wide, "bnb-fp4", device="cpu")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json" in bnb_support(empty, "bnb-int8")
    assert "Unknown" in bnb_support(demo_model_dir, "bnb-int3")
    done = _odd_folder(demo_model_dir, tmp_path / "done")
    config = json.loads((done / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_8bit": True}
    (done / "config.json").write_text(json.dumps(config))
    assert "already quantized (bnb-int8)" in bnb_support(done, "bnb-nf4")


def test_unsupported_mode_is_refused_before_any_work(demo_model_dir: Path,
                                                     tmp_path: Path) -> None:
    odd = _odd_folder(demo_model_dir, tmp_path, intermediate_size=100)
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match="intermediate_size 100"):
        next(quantize_bnb(odd, out, "bnb-nf4", device="cpu"))
    assert not out.exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "x").write_text("x")
    with pytest.raises(InvalidInputError, match="not empty"):
        next(quantize_bnb(demo_model_dir, taken, "bnb-int8", device="cpu"))


def test_support_check_imports_nothing_heavy(demo_model_dir: Path) -> None:
    """The window calls bnb_support while drawing a menu: no torch, no transformers."""
    code = ("import sys\nfrom pathlib import Path\n"
            "from llmops_desktop.quantize.bnb import bnb_support, cuda_available\n"
            f"print(bnb_support(Path({str(demo_model_dir)!r}), 'bnb-nf4'), cuda_available())\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'transformers', 'bitsandbytes', 'accelerate'))\n"
            "sys.exit(1 if heavy else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("None ")


def test_config_kwargs() -> None:
    assert bnb_config_kwargs("bnb-int8") == {"load_in_8bit": True}
    assert bnb_config_kwargs("bnb-fp4", double_quant=False) == {
        "load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False,
        "bnb_4bit_compute_dtype": "float32"}
    with pytest.raises(InvalidInputError):
        bnb_config_kwargs("bnb-int4")


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["bnb-nf4", "bnb-int8"])
def test_quantize_on_cuda_and_generate(demo_model_dir: Path, tmp_path: Path, mode: str) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    out = tmp_path / mode
    _quantize(demo_model_dir, out, mode, device="cuda")
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    if mode == "bnb-nf4":
        assert qc["bnb_4bit_compute_dtype"] in ("bfloat16", "float16")
    assert len(_generate(out, device_map="cuda")) == 5
    shutil.rmtree(out)
    # The CUDA path has no size rule: an odd-sized model quantizes to 4-bit there.
    assert bnb_support(_odd_folder(demo_model_dir, tmp_path, intermediate_size=100),
                       "bnb-nf4", device="cuda") is None
