"""Preference training: ``--method dpo`` on the demo model, through TRL's loss in our loop."""

from __future__ import annotations

import json
import os
import random
import threading
from pathlib import Path

import pytest

from llmops_desktop.catalog import Catalog, JobState
from llmops_desktop.datasets.store import import_dataset
from llmops_desktop.errors import InvalidInputError, NotFoundError
from llmops_desktop.finetune.config import FinetuneOptions
from llmops_desktop.finetune.task import FinetuneRequest, run_dir_of
from llmops_desktop.finetune.train import METRICS_FILE, latest_checkpoint
from llmops_desktop.importer import import_model, inspect_source
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Metric, Progress
from llmops_desktop.paths import Home
from tests.test_finetune import _assert_same_adapter, make_dataset, result_of, run_job

OPTIONS = dict(method="dpo", r=8, alpha=16.0, max_steps=12, lr=5e-3, batch_size=4, max_len=64,
               eval_steps=4, save_steps=4, seed=5, threads=1, beta=0.1, validation=0.125)
WORDS = "model data weights local machine team share quantize serve train".split()


def make_pairs(path: Path, rows: int = 32) -> Path:
    """The chosen reply repeats the word; the rejected one says another."""
    rng = random.Random(1)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            w, other = rng.sample(WORDS, 2)
            fh.write(json.dumps({"prompt": [{"role": "user", "content": f"Repeat {w}"}],
                                 "chosen": f"{w} {w} {w}", "rejected": f"{other} chart"}) + "\n")
    return path


@pytest.fixture(scope="module")
def dpo_setup(tmp_path_factory, demo_model_session):
    root = tmp_path_factory.mktemp("dpohome")
    old = os.environ.get("LLMOPS_HOME")
    os.environ["LLMOPS_HOME"] = str(root)
    home = Home.resolve(root)
    catalog = Catalog.open(home)
    for _ in import_model(catalog, inspect_source(demo_model_session, name="tiny"),
                          staging=home.job_staging_dir(0)):
        pass
    base = catalog.resolve("tiny")
    version = import_dataset(catalog, make_pairs(root / "pairs.jsonl"), name="pairs")
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


def test_dpo_raises_the_reward_margin_and_records_its_metrics(dpo_setup) -> None:
    events, result, catalog = dpo_setup["events"], dpo_setup["result"], dpo_setup["catalog"]
    margins = [e.value for e in events if isinstance(e, Metric) and e.name == "reward_margin"]
    assert len(margins) == OPTIONS["max_steps"]
    assert margins[0] == pytest.approx(0.0, abs=1e-4)  # the adapter starts as the base
    assert sum(margins[-3:]) / 3 > sum(margins[:3]) / 3 + 0.2
    losses = [e.value for e in events if isinstance(e, Metric) and e.name == "loss"]
    assert losses[0] == pytest.approx(0.6931, abs=1e-3) and losses[-1] < 0.6
    run_dir = run_dir_of(dpo_setup["home"], dpo_setup["job"].id)
    points = [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]
    step_points = [p for p in points if "loss" in p]
    assert [p["step"] for p in step_points] == list(range(1, 13))
    for key in ("reward_margin", "reward_accuracy", "logps_chosen", "logps_rejected",
                "reward_chosen", "reward_rejected"):
        assert all(key in p for p in step_points), key
    assert all(p["logps_chosen"] < 0 and p["logps_rejected"] < 0 for p in step_points)
    assert "val_reward_margin" in points[-1] and points[-1]["val_reward_margin"] > 0
    adapter = catalog.artifact(result["artifact_id"])
    assert adapter.kind == "lora" and adapter.parent_id == dpo_setup["base"].id
    assert "dpo" in adapter.tags and adapter.params["method"] == "dpo"
    assert adapter.metadata["final_reward_margin"] == pytest.approx(margins[-1])
    assert any("reward_margin" in p for p in adapter.metadata["curve"])
    # DPO's loss is no language-model loss: no perplexity is claimed for the adapter.
    assert not catalog.evaluations(adapter.id)


def test_dpo_cancel_and_resume_give_the_same_adapter(dpo_setup) -> None:
    catalog = dpo_setup["catalog"]
    sent: list[bool] = []

    def cancel_at_step_5(run, event) -> None:
        if isinstance(event, Progress) and event.unit == "steps" and event.done >= 5 and not sent:
            sent.append(True)

            def cancel() -> None:
                with Catalog.open(dpo_setup["home"]) as cat:
                    runner.cancel(cat, run.job_id)

            threading.Thread(target=cancel, daemon=True).start()

    job, events = run_job(catalog, "finetune", dpo_setup["params"], cancel_at_step_5)
    assert job.state is JobState.CANCELLED
    assert next(e for e in events if isinstance(e, Error)).error_type == "CancelledError"
    stopped_at = int(latest_checkpoint(run_dir_of(dpo_setup["home"], job.id)).name.split("-")[1])
    assert 5 <= stopped_at < 12
    job2, events2 = run_job(catalog, "finetune",
                            FinetuneRequest.resume(catalog, job.id).to_params())
    assert job2.state is JobState.SUCCEEDED, job2.error
    _assert_same_adapter(run_dir_of(dpo_setup["home"], dpo_setup["job"].id) / "adapter",
                         run_dir_of(dpo_setup["home"], job2.id) / "adapter")
    assert result_of(events2)["final_reward_margin"] == pytest.approx(
        dpo_setup["result"]["final_reward_margin"], rel=1e-4)


def test_dpo_needs_preference_data(dpo_setup, tmp_path: Path) -> None:
    catalog = dpo_setup["catalog"]
    chat = import_dataset(catalog, make_dataset(tmp_path / "chat.jsonl", rows=8), name="chat")
    with pytest.raises(InvalidInputError, match="preference"):
        FinetuneRequest(base_id=dpo_setup["base"].id, dataset_id=chat.id,
                        options=FinetuneOptions(**OPTIONS)).check(catalog)
    with pytest.raises(InvalidInputError, match="--four-bit"):
        FinetuneOptions(method="lora", four_bit=True).check()


def test_a_finetune_naming_suites_attaches_the_comparison(dpo_setup, tmp_path: Path) -> None:
    from llmops_desktop.evaluate.runs import runs_of
    from llmops_desktop.evaluate.suites import import_suite
    from tests.test_eval import MC_ROWS, _write_jsonl

    catalog, base = dpo_setup["catalog"], dpo_setup["base"]
    suite = import_suite(catalog, _write_jsonl(tmp_path / "arc.jsonl", MC_ROWS), name="arc-mini")
    with pytest.raises(NotFoundError):
        FinetuneRequest(base_id=base.id, dataset_id=dpo_setup["version"].id,
                        options=FinetuneOptions(**{**OPTIONS, "suites": "nope"})).check(catalog)
    options = FinetuneOptions(**{**OPTIONS, "max_steps": 2, "seed": 9, "suites": "arc-mini"})
    params = FinetuneRequest(base_id=base.id, dataset_id=dpo_setup["version"].id,
                             options=options).check(catalog).to_params()
    job, events = run_job(catalog, "finetune", params)
    assert job.state is JobState.SUCCEEDED, job.error
    adapter = catalog.artifact(result_of(events)["artifact_id"])
    rows = [e for e in catalog.evaluations(adapter.id) if e.dataset == suite.ref]
    assert {e.metric for e in rows} >= {"acc", "acc_norm"}
    acc = next(e for e in rows if e.metric == "acc")
    assert acc.params["base"] == base.ref and acc.params["base_value"] is not None
    assert acc.params["difference"] == pytest.approx(acc.value - acc.params["base_value"])
    assert {r.artifact_id for r in runs_of(catalog)} >= {base.id, adapter.id}
    saved = json.loads((run_dir_of(dpo_setup["home"], job.id) / "eval-arc-mini.json")
                       .read_text())
    assert [row["artifact"] for row in saved["matrix"]] == [base.ref, adapter.ref]
