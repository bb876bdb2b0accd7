"""Fine-tune: real LoRA training of the demo model on CPU, resume equality after a kill and
a cancel, merge (+ GGUF + llama.cpp), LoRA GGUF, serving the adapter, torchrun with gloo,
QLoRA, the memory estimate and bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from llmops_desktop.catalog import Catalog, JobState
from llmops_desktop.datasets.store import import_dataset
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.finetune.config import FinetuneOptions
from llmops_desktop.finetune.task import FinetuneRequest, run_dir_of
from llmops_desktop.finetune.train import latest_checkpoint
from llmops_desktop.importer import import_model, inspect_source
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Log, Metric, Progress, Result
from llmops_desktop.paths import Home

# Tiny on purpose: a few dozen steps of a 2-layer model on short rows.
OPTIONS = dict(r=8, alpha=16.0, dropout=0.1, max_steps=16, lr=5e-3, batch_size=4, max_len=48,
               eval_steps=4, save_steps=4, seed=3, threads=1)
WORDS = "model data weights local machine team share quantize serve train".split()


def llmops(home: Home, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=600)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def make_dataset(path: Path, rows: int = 48) -> Path:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            w = rng.choice(WORDS)
            fh.write(json.dumps({"messages": [
                {"role": "user", "content": f"Repeat {w}"},
                {"role": "assistant", "content": f"{w} {w} {w}"}]}) + "\n")
    return path


def run_job(catalog: Catalog, kind: str, params: dict, on_event=None):
    run = runner.start(catalog, kind, params)
    events = []
    for event in run.events():
        events.append(event)
        if on_event is not None:
            on_event(run, event)
    job = run.wait()
    return job, events


def result_of(events) -> dict:
    return next(e.data for e in events if isinstance(e, Result))


@pytest.fixture(scope="module")
def setup(tmp_path_factory, demo_model_session):
    """A home with the demo model and a chat dataset, and one uninterrupted fine-tune."""
    root = tmp_path_factory.mktemp("fthome")
    old = os.environ.get("LLMOPS_HOME")
    os.environ["LLMOPS_HOME"] = str(root)
    home = Home.resolve(root)
    catalog = Catalog.open(home)
    for ev in import_model(catalog, inspect_source(demo_model_session, name="tiny"),
                           staging=home.job_staging_dir(0)):
        pass
    base = catalog.resolve("tiny")
    version = import_dataset(catalog, make_dataset(root / "repeat.jsonl"), name="repeat",
                             validation=0.125, seed=0)
    params = FinetuneRequest(base_id=base.id, dataset_id=version.id,
                             options=FinetuneOptions(**OPTIONS)).check(catalog).to_params()
    job, events = run_job(catalog, "finetune", params)
    assert job.state is JobState.SUCCEEDED, job.error
    yield {"home": home, "catalog": catalog, "base": base, "version": version, "job": job,
           "events": events, "result": result_of(events), "params": params}
    catalog.close()
    if old is None:
        os.environ.pop("LLMOPS_HOME", None)
    else:
        os.environ["LLMOPS_HOME"] = old


def _adapter_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def _assert_same_adapter(a: Path, b: Path) -> None:
    import torch

    wa, wb = _adapter_weights(a), _adapter_weights(b)
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6, msg=k)


def test_lora_lowers_the_loss_and_the_adapter_is_a_child_of_its_base(setup) -> None:
    catalog, base, version = setup["catalog"], setup["base"], setup["version"]
    events, result = setup["events"], setup["result"]
    losses = [e.value for e in events if isinstance(e, Metric) and e.name == "loss"]
    assert len(losses) == OPTIONS["max_steps"]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.3  # it learned
    names = {e.name for e in events if isinstance(e, Metric)}
    assert {"loss", "val_loss", "lr", "tokens_per_s", "eta_s", "ram_mb"} <= names
    assert any(isinstance(e, Progress) and e.done == 16 and e.total == 16 for e in events)
    adapter = catalog.artifact(result["artifact_id"])
    assert adapter.kind == "lora" and adapter.parent_id == base.id
    assert adapter.params["dataset_sha256"] == version.sha256
    assert adapter.params["r"] == 8 and adapter.params["lr"] == 5e-3 and adapter.params["seed"] == 3
    md = adapter.metadata
    assert md["dataset"]["ref"] == "repeat@1" and md["base_model"] == base.ref
    assert md["final_val_loss"] < md["base_val_loss"]
    assert [p["step"] for p in md["curve"] if "loss" in p] == list(range(1, 17))
    assert "lora" in adapter.tags and catalog.audit_entries(artifact_id=adapter.id)[-1].action == "finetune"
    # Before/after on the held-out rows, side by side in the catalog.
    ppl_base = [e for e in catalog.evaluations(base.id) if e.dataset == "repeat@1:validation"]
    ppl_tuned = [e for e in catalog.evaluations(adapter.id) if e.dataset == "repeat@1:validation"]
    assert len(ppl_base) == 1 and len(ppl_tuned) == 1
    assert ppl_tuned[0].value < ppl_base[0].value
    # Checkpoints in the run folder; the last one is named in 'latest'.
    run_dir = run_dir_of(setup["home"], setup["job"].id)
    assert latest_checkpoint(run_dir).name == "checkpoint-0000016"
    assert not list(run_dir.glob(".*tmp"))


def test_a_killed_run_resumes_to_the_same_adapter(setup) -> None:
    catalog = setup["catalog"]
    killed: list[int] = []

    def kill_after_first_checkpoint(run, event) -> None:
        if isinstance(event, Log) and "checkpoint saved at step 4" in event.message and not killed:
            killed.append(run.process.pid)
            os.killpg(run.process.pid, signal.SIGKILL)

    job, _ = run_job(catalog, "finetune", setup["params"], kill_after_first_checkpoint)
    assert killed and job.state is JobState.INTERRUPTED
    ckpt = latest_checkpoint(run_dir_of(setup["home"], job.id))
    assert ckpt is not None and 4 <= int(ckpt.name.split("-")[1]) < 16
    job2, events2 = run_job(catalog, "finetune", FinetuneRequest.resume(catalog, job.id).to_params())
    assert job2.state is JobState.SUCCEEDED, job2.error
    resumed = result_of(events2)
    assert resumed["resumed_from_job"] == job.id and resumed["steps"] == 16
    new_job = max(j.id for j in catalog.jobs() if j.kind == "finetune")
    _assert_same_adapter(run_dir_of(setup["home"], setup["job"].id) / "adapter",
                         run_dir_of(setup["home"], new_job) / "adapter")
    assert resumed["final_loss"] == pytest.approx(setup["result"]["final_loss"], rel=1e-5)
    assert resumed["final_val_loss"] == pytest.approx(setup["result"]["final_val_loss"], rel=1e-5)
    # Identical weights are the identical artifact: the catalog keeps one.
    assert resumed["artifact_id"] == setup["result"]["artifact_id"]


def test_cancel_saves_a_checkpoint_and_resume_finishes_the_same(setup) -> None:
    catalog = setup["catalog"]
    sent: list[bool] = []

    def cancel_at_step_5(run, event) -> None:
        if isinstance(event, Progress) and event.unit == "steps" and event.done >= 5 and not sent:
            sent.append(True)
            def cancel() -> None:
                with Catalog.open(setup["home"]) as cat:
                    runner.cancel(cat, run.job_id)

            threading.Thread(target=cancel, daemon=True).start()

    job, events = run_job(catalog, "finetune", setup["params"], cancel_at_step_5)
    assert job.state is JobState.CANCELLED
    assert next(e for e in events if isinstance(e, Error)).error_type == "CancelledError"
    said = next(e.message for e in events if isinstance(e, Log) and "cancelled at" in e.message)
    ckpt = latest_checkpoint(run_dir_of(setup["home"], job.id))
    stopped_at = int(ckpt.name.split("-")[1])
    assert 5 <= stopped_at < 16 and f"step {stopped_at} " in said and "Resume" in said
    job2, events2 = run_job(catalog, "finetune", FinetuneRequest.resume(catalog, job.id).to_params())
    assert job2.state is JobState.SUCCEEDED, job2.error
    assert any(isinstance(e, Log) and f"at step {stopped_at}" in e.message for e in events2)
    _assert_same_adapter(run_dir_of(setup["home"], setup["job"].id) / "adapter",
                         run_dir_of(setup["home"], job2.id) / "adapter")


def test_merge_loads_generates_and_converts_for_llama_cpp(setup, demo_gguf_session) -> None:
    import numpy as np
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    catalog = setup["catalog"]
    adapter = catalog.artifact(setup["result"]["artifact_id"])
    job, events = run_job(catalog, "merge", {"adapter_id": adapter.id})
    assert job.state is JobState.SUCCEEDED, job.error
    merged = catalog.artifact(result_of(events)["artifact_id"])
    assert merged.kind == "hf" and merged.parent_id == adapter.id
    assert merged.metadata["merge_check"]["max_logit_difference"] < 1e-4
    tok = AutoTokenizer.from_pretrained(str(merged.path))
    model = AutoModelForCausalLM.from_pretrained(str(merged.path))
    prompt = tok.apply_chat_template([{"role": "user", "content": "Repeat model"}],
                                     add_generation_prompt=True, return_tensors="pt",
                                     return_dict=True)
    out = model.generate(**prompt, max_new_tokens=6, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]
    # Convert the merge with the quantize job, then generate with llama.cpp.
    job, events = run_job(catalog, "quantize", {"artifact_id": merged.id, "targets": ["F16"],
                                                "evaluate": False})
    assert job.state is JobState.SUCCEEDED, job.error
    gguf = catalog.artifact(result_of(events)["artifact_id"]).path
    # The adapter as a LoRA GGUF on top of the base's GGUF gives the merge's logits.
    job, events = run_job(catalog, "lora-gguf", {"adapter_id": adapter.id})
    assert job.state is JobState.SUCCEEDED, job.error
    lora = catalog.artifact(result_of(events)["artifact_id"])
    assert lora.parent_id == adapter.id and lora.metadata["lora_pairs"] == 14

    def logits(**kw) -> np.ndarray:
        llm = Llama(n_ctx=64, logits_all=True, verbose=False, seed=0, n_threads=1, **kw)
        try:
            toks = llm.tokenize("<|user|>\nRepeat model".encode(), add_bos=True)
            llm.eval(toks)
            text = llm.create_completion("<|user|>\nRepeat model", max_tokens=4,
                                         temperature=0.0)["choices"][0]["text"]
            return np.asarray(llm.scores[:len(toks)]), text
        finally:
            llm.close()

    merged_logits, merged_text = logits(model_path=str(gguf))
    lora_logits, lora_text = logits(model_path=str(demo_gguf_session), lora_path=str(lora.path))
    base_logits, _ = logits(model_path=str(demo_gguf_session))
    assert np.abs(merged_logits - lora_logits).max() < 1e-2
    assert np.abs(merged_logits - base_logits).max() > 0.1  # the adapter does something
    assert merged_text == lora_text


def test_torch_engine_serves_the_adapter_as_the_merge_would(setup) -> None:
    import threading as th

    from llmops_desktop.serving.engines.base import EngineSettings, SamplingParams
    from llmops_desktop.serving.engines.torch_engine import TorchEngine

    catalog = setup["catalog"]
    adapter = catalog.artifact(setup["result"]["artifact_id"])
    merged = next((a for a in catalog.children(adapter.id) if a.kind == "hf"), None)
    if merged is None:  # the merge test did not run first
        job, events = run_job(catalog, "merge", {"adapter_id": adapter.id})
        merged = catalog.artifact(result_of(events)["artifact_id"])
    import torch

    settings = EngineSettings(device="cpu", threads=1)
    texts, logits = [], []
    for path in (adapter.path, merged.path, setup["base"].path):
        engine = TorchEngine.load(path, settings)
        prompt = engine.tokenize("The quick brown fox")
        texts.append([p.text for p in engine.generate(
            prompt, SamplingParams(max_tokens=6, temperature=0.0), th.Event())])
        with torch.no_grad():
            logits.append(engine.model(torch.tensor([prompt.ids])).logits)
        engine.close()
    assert texts[0] == texts[1]  # the adapter served on its base answers as the merge does
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-4)
    assert (logits[0] - logits[2]).abs().max() > 0.1  # and not as the base alone


@pytest.mark.slow
def test_two_processes_through_torchrun_with_gloo(setup) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = llmops(setup["home"], "finetune", "tiny", "repeat", "--nproc", "2", "--max-steps", "4",
                 "--batch-size", "2", "--max-len", "48", "--eval-steps", "2", "--save-steps", "2",
                 "--r", "4", "--name", "tiny-ddp", "--json")
    result = json.loads(out.stdout)
    catalog = setup["catalog"]
    adapter = catalog.artifact(result["artifact_id"])
    assert adapter.metadata["world"] == 2 and adapter.params["nproc"] == 2
    log = catalog.job(adapter.job_id).log_path.read_text()
    assert "torch.distributed.run" in log and "--nproc-per-node=2" in log
    base = AutoModelForCausalLM.from_pretrained(str(setup["base"].path))
    model = PeftModel.from_pretrained(base, str(adapter.path))
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0


@pytest.mark.slow
def test_qlora_trains_or_says_why_not(setup) -> None:
    from llmops_desktop.finetune.task import qlora_unavailable

    reason = qlora_unavailable(setup["base"])
    args = ["finetune", "tiny", "repeat", "--method", "qlora", "--max-steps", "2", "--max-len",
            "48", "--batch-size", "2", "--eval-steps", "2", "--save-steps", "2", "--name",
            "tiny-qlora", "--json"]
    proc = llmops(setup["home"], *args, ok=False)
    if reason is not None:
        assert proc.returncode == 5 and f"QLoRA is not available here: {reason}" in proc.stderr
        pytest.skip(f"QLoRA disabled here, as reported: {reason}")
    assert proc.returncode == 0, proc.stderr
    adapter = setup["catalog"].artifact(json.loads(proc.stdout)["artifact_id"])
    assert adapter.params["method"] == "qlora" and adapter.kind == "lora"


def test_memory_estimate_warns_with_advice(tmp_path: Path) -> None:
    from llmops_desktop.finetune.memory import advice, estimate_memory

    big = tmp_path / "big"
    big.mkdir()
    (big / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
        "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
        "vocab_size": 128256}))
    opts = FinetuneOptions(batch_size=8, max_len=4096)
    est = estimate_memory(big, opts, device="cpu")
    assert 7e9 < est.weights / 4 < 9e9  # about 8B parameters in float32
    assert est.activations > est.adapter > 0
    assert est.trainable_parameters == 32 * 16 * (2 * 8192 + 2 * 5120 + 3 * 18432)
    est.available = 16 * 2**30
    tips = " ".join(advice(est, opts))
    assert "--method qlora" in tips and "--gradient-checkpointing" in tips
    assert "--batch-size to 4" in tips and "--max-len" in tips
    est.available = 10 * est.total
    assert advice(est, opts) == []
    qlora = estimate_memory(big, FinetuneOptions(method="qlora"), device="cpu")
    assert qlora.weights < est.weights / 3


def test_refusals_say_what_to_do(setup, demo_gguf_session) -> None:
    catalog = setup["catalog"]
    for ev in import_model(catalog, inspect_source(demo_gguf_session, name="tiny-gguf"),
                           staging=setup["home"].job_staging_dir(0)):
        pass
    proc = llmops(setup["home"], "finetune", "tiny-gguf", "repeat", ok=False)
    assert proc.returncode == 5 and "LoRA trains on a Hugging Face model folder" in proc.stderr
    proc = llmops(setup["home"], "finetune", "--resume", str(setup["job"].id), ok=False)
    assert proc.returncode == 5 and "nothing to resume" in proc.stderr
    proc = llmops(setup["home"], "finetune", "tiny", "repeat", "--max-len", "4", ok=False)
    assert proc.returncode == 5 and "--max-len must be at least 8" in proc.stderr
    with pytest.raises(InvalidInputError, match="not a LoRA adapter"):
        from llmops_desktop.finetune.merge import base_of

        base_of(catalog, setup["base"])


def test_llmops_serve_serves_the_adapter_with_either_engine(setup, demo_gguf_session) -> None:
    """`llmops serve ADAPTER` (torch, base found in the catalog) and `llmops serve BASE_GGUF
    --lora LORA_GGUF` (llama.cpp) both answer through the OpenAI API."""
    import requests

    from llmops_desktop.importer import import_model, inspect_source
    from tests.serving_fixtures import server_process

    catalog, home = setup["catalog"], setup["home"]
    adapter = catalog.artifact(setup["result"]["artifact_id"])
    lora = next((a for a in catalog.children(adapter.id)
                 if a.metadata.get("format") == "lora-gguf"), None)
    if lora is None:
        job, events = run_job(catalog, "lora-gguf", {"adapter_id": adapter.id})
        lora = catalog.artifact(result_of(events)["artifact_id"])
    base_gguf = next((a for a in catalog.artifacts() if a.kind == "gguf" and a.parent_id is None
                      and a.metadata.get("format") != "lora-gguf"), None)
    if base_gguf is None:  # no earlier test imported the base's GGUF
        for _ in import_model(catalog, inspect_source(demo_gguf_session, name="tiny-base-gguf"),
                              staging=home.job_staging_dir(0)):
            pass
        base_gguf = catalog.resolve("tiny-base-gguf")
    body = {"prompt": "Repeat model", "max_tokens": 4, "temperature": 0}
    for args, engine in (((str(adapter.id), "--device", "cpu"), "torch"),
                         ((str(base_gguf.id), "--lora", lora.ref), "llama.cpp")):
        with server_process(home.root, "--artifact", args[0], "--threads", "1",
                            *args[1:]) as server:
            assert server.info["engine"] == engine
            r = requests.post(server.info["url"] + "/v1/completions",
                              json={"model": server.info["name"], **body}, timeout=60)
            assert r.status_code == 200, r.text
            choice = r.json()["choices"][0]
            assert choice["finish_reason"] in ("stop", "length"), choice
    # Serving the LoRA GGUF on its own says how to use it.
    proc = llmops(home, "serve", lora.ref, ok=False)
    assert proc.returncode == 5 and f"--lora {lora.ref}" in proc.stderr
