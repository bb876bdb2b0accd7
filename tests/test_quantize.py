"""Quantize: HF -> F16 -> Q8_0 / Q4_K_M through llama.cpp, lineage, perplexity, bad input."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops_desktop.catalog import Catalog, JobState
from llmops_desktop.importer import import_model, inspect_source
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Progress, Result
from llmops_desktop.paths import Home


def llmops(home: Home, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def _import(catalog: Catalog, path, name: str, mode: str = "copy"):
    for ev in import_model(catalog, inspect_source(path, name=name), mode=mode,
                           staging=catalog.home.job_staging_dir(0)):
        if isinstance(ev, Result):
            return catalog.artifact(ev.data["artifact_id"])
    raise AssertionError("no result")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, demo_model_session):
    """One run for the whole module: the demo model -> F16 (kept) -> Q8_0 and Q4_K_M."""
    home = Home.resolve(tmp_path_factory.mktemp("qhome"))
    with Catalog.open(home) as catalog:
        _import(catalog, demo_model_session, "tiny")
    out = json.loads(llmops(home, "quantize", "tiny", "--to", "Q8_0", "--to", "q4_k_m",
                            "--keep-f16", "--json").stdout)
    return home, out


def test_variants_are_children_with_lineage_and_versions(quantized) -> None:
    home, out = quantized
    with Catalog.open(home) as catalog:
        hf = catalog.resolve("tiny")
        by_type = {a["params"]["target"]: catalog.artifact(a["id"]) for a in out["artifacts"]}
        assert set(by_type) == {"F16", "Q8_0", "Q4_K_M"}
        assert by_type["F16"].parent_id == hf.id and by_type["Q8_0"].parent_id == hf.id
        assert by_type["Q4_K_M"].parent_id == by_type["F16"].id  # made from the kept F16
        for t, a in by_type.items():
            assert a.kind == "gguf" and a.metadata["quantization"] == t
            assert a.params["llama_cpp_python"] and a.params["converter"] == "0.1.1"
            assert catalog.audit_entries(artifact_id=a.id)[-1].action == "quantize"
        assert by_type["Q4_K_M"].params["method"] == "llama_model_quantize"
        assert by_type["Q4_K_M"].size_bytes < by_type["Q8_0"].size_bytes < by_type["F16"].size_bytes


def test_each_variant_generates_with_llama_cpp_and_tokenizes_like_the_model(quantized) -> None:
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    home, out = quantized
    with Catalog.open(home) as catalog:
        tok = AutoTokenizer.from_pretrained(catalog.resolve("tiny").path)
    sample = "The quick brown fox, 1234 café 🙂\n  indented"
    expected = tok(sample, add_special_tokens=False)["input_ids"]
    for a in out["artifacts"]:
        llm = Llama(a["path"], n_ctx=128, verbose=False, seed=1)
        assert llm.tokenize(sample.encode(), add_bos=False) == expected, a["ref"]
        gen = llm("The model", max_tokens=6, temperature=0)
        assert gen["usage"]["completion_tokens"] >= 1


def test_perplexity_is_measured_and_stored_on_the_right_artifacts(quantized) -> None:
    home, out = quantized
    shown = json.loads(llmops(home, "show", "tiny", "--json").stdout)
    parent_ppl = [e for e in shown["evaluations"] if e["metric"] == "perplexity"]
    assert len(parent_ppl) == 1 and parent_ppl[0]["params"]["via"] == "F16 GGUF conversion"
    assert math.isfinite(parent_ppl[0]["value"]) and parent_ppl[0]["value"] > 0
    variants = {v["type"]: v for v in shown["variants"]}
    for t in ("F16", "Q8_0", "Q4_K_M"):
        v = variants[t]
        assert math.isfinite(v["perplexity"]) and v["perplexity"] > 0
        assert v["perplexity_change"] is not None and v["bits_per_weight"] > 0
    for a in out["artifacts"]:
        evals = a["evaluations"]
        assert [e["metric"] for e in evals] == ["perplexity", "kl_divergence", "top1_agreement"]
        assert evals[0]["dataset"] == "heldout-en.txt" and evals[0]["params"]["tokens"] > 100
        assert evals[0]["dataset_sha256"] == parent_ppl[0]["dataset_sha256"]


def test_a_quantized_gguf_is_not_silently_upcast(quantized, tmp_path) -> None:
    home, out = quantized
    q4 = next(a for a in out["artifacts"] if a["params"]["target"] == "Q4_K_M")
    refused = llmops(home, "quantize", str(q4["id"]), "--to", "Q8_0", ok=False)
    assert refused.returncode == 5 and "cannot bring back the precision" in refused.stderr
    assert "--force" in refused.stderr
    forced = json.loads(llmops(home, "quantize", str(q4["id"]), "--to", "Q8_0", "--force",
                               "--json").stdout)
    made = forced["artifacts"][0]
    assert made["parent_id"] == q4["id"] and made["params"]["from_quantization"] == "Q4_K_M"


def test_bad_requests_are_refused_with_reasons(home, demo_model_dir, tmp_path) -> None:
    with Catalog.open(home) as catalog:
        _import(catalog, demo_model_dir, "tiny")
    bad = llmops(home, "quantize", "tiny", "--to", "IQ2_XS", ok=False)
    assert bad.returncode == 5 and "importance matrix" in bad.stderr
    bad = llmops(home, "quantize", "tiny", "--to", "Q9_Z", ok=False)
    assert bad.returncode == 5 and "Unknown target" in bad.stderr


def test_unsupported_architecture_is_named(home, demo_model_dir) -> None:
    cfg = demo_model_dir / "config.json"
    cfg.write_text(cfg.read_text().replace("LlamaForCausalLM", "FooBarForCausalLM"))
    with Catalog.open(home) as catalog:
        _import(catalog, demo_model_dir, "odd")
    bad = llmops(home, "quantize", "odd", "--to", "Q4_K_M", ok=False)
    assert bad.returncode == 5
    assert "FooBarForCausalLM" in bad.stderr and "--print-supported-models" in bad.stderr
    with Catalog.open(home) as catalog:
        assert catalog.counts()["artifacts"] == 1


@pytest.mark.parametrize("damage", ["truncate", "header"])
def test_a_damaged_gguf_parent_is_refused(home, demo_gguf, damage) -> None:
    with Catalog.open(home) as catalog:
        a = _import(catalog, demo_gguf, "g")
    data = a.path.read_bytes()
    if damage == "truncate":
        a.path.write_bytes(data[: len(data) // 2])
    else:
        a.path.write_bytes(b"XXXX" + data[4:])
    bad = llmops(home, "quantize", "g", "--to", "Q4_K_M", ok=False)
    assert bad.returncode == 5 and ("damaged" in bad.stderr or "not a GGUF" in bad.stderr)
    with Catalog.open(home) as catalog:
        assert catalog.counts()["artifacts"] == 1


def test_cancel_halfway_keeps_nothing(catalog, demo_model_dir) -> None:
    _import(catalog, demo_model_dir, "tiny")
    run = runner.start(catalog, "quantize", {"artifact_id": 1, "targets": ["Q4_K_M"]})
    assert run.process.stdout is not None
    from llmops_desktop.jobs.events import parse_event

    for raw in run.process.stdout:  # wait until the converter (a grandchild) is at work
        event = parse_event(raw)
        if isinstance(event, Progress) and event.unit == "tensors":
            break
    job = runner.cancel(catalog, run.job_id)
    assert job.state is JobState.CANCELLED
    assert run.process.wait(timeout=30) is not None
    assert catalog.counts()["artifacts"] == 1
    assert not catalog.home.job_staging_dir(run.job_id).exists()
    deadline = time.monotonic() + 10  # the converter (a grandchild) is gone too
    while time.monotonic() < deadline:
        ps = subprocess.run(["pgrep", "-f", "convert_hf_to_gguf"], capture_output=True, text=True)
        if not ps.stdout.strip():
            break
        time.sleep(0.1)
    assert not ps.stdout.strip()


def test_full_disk_is_refused_before_writing(small_disk, demo_model_dir) -> None:
    home = Home.resolve(small_disk("4m"))
    with Catalog.open(home) as catalog:
        _import(catalog, demo_model_dir, "tiny", mode="reference")
    bad = llmops(home, "quantize", "tiny", "--to", "Q4_K_M", ok=False)
    assert bad.returncode == 6 and "disk space" in bad.stderr
    with Catalog.open(home) as catalog:
        assert catalog.counts()["artifacts"] == 1
    assert not any(home.staging_dir.iterdir())


def test_bitsandbytes_checkpoint_as_a_child_artifact(home, demo_model_dir) -> None:
    with Catalog.open(home) as catalog:
        base = _import(catalog, demo_model_dir, "tiny")
    out = json.loads(llmops(home, "quantize", "tiny", "--to", "bnb-int8", "--json").stdout)
    made = out["artifacts"][0]
    assert made["parent_id"] == base.id and made["kind"] == "hf"
    assert made["metadata"]["quantization"] == "bnb-int8"
    assert made["metadata"]["parameters"] == base.metadata["parameters"]
    config = json.loads((Path(made["path"]) / "config.json").read_text())
    assert config["quantization_config"]["load_in_8bit"] is True
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(made["path"], device_map="cpu")
    tok = AutoTokenizer.from_pretrained(made["path"])
    ids = tok("The model", return_tensors="pt")["input_ids"]
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] > ids.shape[1]
