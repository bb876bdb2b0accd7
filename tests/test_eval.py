"""Evaluation (#18): suites as versioned data, lm-eval's figures, generation metrics from the
maintained libraries, a live judge, comparisons and the approval gate — all on the demo
model, through real jobs."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.evaluate import runs as run_store
from llmops_desktop.evaluate.errors import SuiteBadRowsError
from llmops_desktop.evaluate.suites import import_suite, iter_items, resolve_suite
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Log, Result
from llmops_desktop.paths import Home
from tests.mirror_fixtures import import_artifact

pytestmark = pytest.mark.slow

MC_ROWS = [{"question": f"What is {a} plus {b}?",
            "choices": {"text": [str(a + b), str(a + b + 1), "the model", "a long answer on weights"],
                        "label": ["A", "B", "C", "D"]},
            "answerKey": "ABCD"[i % 4], "id": f"q{i}"}
           for i, (a, b) in enumerate([(1, 2), (3, 4), (5, 6), (7, 8), (2, 2), (9, 1), (4, 4),
                                       (6, 1), (8, 3), (2, 9), (5, 5), (1, 1)])]


def _write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_eval(catalog: Catalog, **params) -> tuple[dict | None, list]:
    run = runner.start(catalog, "eval", params)
    events = list(run.events())
    run.wait()
    err = next((e for e in events if isinstance(e, Error)), None)
    assert err is None, err
    return next(e.data for e in events if isinstance(e, Result)), events


@pytest.fixture(scope="module")
def ev(tmp_path_factory, demo_model_session, demo_gguf_session):
    """A home with the demo model (HF and GGUF) and an ARC-layout suite, run once on each."""
    root = tmp_path_factory.mktemp("evalhome")
    old = os.environ.get("LLMOPS_HOME")
    os.environ["LLMOPS_HOME"] = str(root)
    home = Home.resolve(root)
    cat = Catalog.open(home)
    hf = import_artifact(cat, demo_model_session, "demo-hf")
    gguf = import_artifact(cat, demo_gguf_session, "demo-gguf")
    src = _write_jsonl(root / "arc.jsonl", MC_ROWS)
    suite = import_suite(cat, src, name="arc-mini", thresholds=["acc>=0.0"])
    result, events = run_eval(cat, artifacts=[hf.ref, gguf.ref], suite="arc-mini", batch_size=8)
    yield {"catalog": cat, "hf": hf, "gguf": gguf, "suite": suite, "result": result,
           "events": events, "root": root}
    cat.close()
    if old is None:
        os.environ.pop("LLMOPS_HOME", None)
    else:
        os.environ["LLMOPS_HOME"] = old


# ---- suites ----------------------------------------------------------------------------------

def test_benchmark_layouts_are_recognised_in_every_format(catalog, tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    mmlu = [{"question": "2+2?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1}]
    hellaswag = [{"ind": 4, "activity_label": "Baking", "ctx_a": "She mixes flour.",
                  "ctx_b": "then she", "ctx": "x", "endings": ["bakes [title] it.", "runs",
                                                               "sleeps", "sings"], "label": "0"}]
    truthful = [{"question": "Is the sky green?", "mc1_targets": {
        "choices": ["No", "Yes"], "labels": [1, 0]}}]
    gsm8k = [{"question": "Tom has 3 apples and buys 4. How many?",
              "answer": "3 + 4 = 7\n#### 7"}]
    _write_jsonl(tmp_path / "mmlu.jsonl", mmlu)
    (tmp_path / "arc.json").write_text(json.dumps(MC_ROWS[:3]), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(hellaswag), tmp_path / "hs.parquet")
    _write_jsonl(tmp_path / "tqa.jsonl", truthful)
    with open(tmp_path / "gsm.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, ["question", "answer"])
        w.writeheader()
        w.writerows(gsm8k)
    got = {name: import_suite(catalog, tmp_path / f, name=name)
           for name, f in (("mmlu", "mmlu.jsonl"), ("arc", "arc.json"), ("hs", "hs.parquet"),
                           ("tqa", "tqa.jsonl"), ("gsm", "gsm.csv"))}
    assert {n: s.layout for n, s in got.items()} == {
        "mmlu": "mmlu", "arc": "arc", "hs": "hellaswag", "tqa": "truthfulqa_mc", "gsm": "gsm8k"}
    item = next(iter_items(got["mmlu"]))
    assert item["context"] == "2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    assert item["choices"] == ["A", "B", "C", "D"] and item["answer"] == 1
    item = next(iter_items(got["hs"]))  # lm-eval's hellaswag preprocessing
    assert item["context"] == "Baking: She mixes flour. Then she"
    assert item["choices"][0] == "bakes. it." and item["answer"] == 0
    assert next(iter_items(got["tqa"]))["answer"] == 0
    gsm = next(iter_items(got["gsm"]))
    assert gsm["kind"] == "gen" and gsm["references"] == ["7"] and "numeric" in gsm["metrics"]
    assert [it["answer"] for it in iter_items(got["arc"])] == [0, 1, 2]


def test_suites_are_hashed_versions_and_bad_rows_are_named_by_line(catalog, tmp_path) -> None:
    src = _write_jsonl(tmp_path / "s.jsonl", MC_ROWS[:4])
    v1 = import_suite(catalog, src, name="s")
    assert v1.ref == "s@1" and v1.items == 4 and v1.kinds == {"mc": 4}
    from llmops_desktop.errors import ConflictError

    with pytest.raises(ConflictError):
        import_suite(catalog, src, name="s")
    v2 = import_suite(catalog, src, name="s", thresholds=["acc>=0.5"])  # thresholds are versioned
    assert v2.ref == "s@2" and v2.sha256 != v1.sha256 and resolve_suite(catalog, "s").id == v2.id
    bad = MC_ROWS[:2] + [{"question": "q", "choices": {"text": ["a", "b"], "label": ["A", "B"]},
                          "answerKey": "E"}, {"question": "q", "choices": "nope",
                                              "answerKey": "A"}]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in bad) + "{broken\n", encoding="utf-8")
    with pytest.raises(SuiteBadRowsError) as info:
        import_suite(catalog, path, name="bad")
    assert [b["line"] for b in info.value.bad_rows] == [3, 4, 5]
    assert "line 3" in str(info.value) and resolve_suite.__name__  # nothing imported:
    with pytest.raises(LookupError):
        resolve_suite(catalog, "bad")
    kept = import_suite(catalog, path, name="bad", keep_good_rows=True)
    assert kept.items == 2 and len(kept.metadata["bad_rows"]) == 3


# ---- multiple choice against lm-evaluation-harness ------------------------------------------

def _lm_eval_samples(model_dir: Path, items_path: Path, workdir: Path) -> list[dict]:
    """lm-eval 0.4.x's HF backend on the same items (a local task YAML, offline)."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    import lm_eval
    from lm_eval.tasks import TaskManager

    (workdir / "llmops_mc.yaml").write_text(
        "task: llmops_mc\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {items_path}\ntest_split: test\noutput_type: multiple_choice\n"
        'doc_to_text: "{{context}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n  - metric: acc_norm\n")
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={model_dir}",
                                  tasks=["llmops_mc"], batch_size=1, device="cpu",
                                  task_manager=TaskManager(include_path=str(workdir)),
                                  log_samples=True)
    return sorted(res["samples"]["llmops_mc"], key=lambda s: s["doc_id"])


def test_multiple_choice_figures_equal_lm_evaluation_harness(ev, demo_model_session, tmp_path):
    cat, suite = ev["catalog"], ev["suite"]
    run = run_store.latest_run(cat, ev["hf"].id, suite.id)
    ours = run_store.results(cat, run.id)
    samples = _lm_eval_samples(demo_model_session, suite.items_path, tmp_path)
    assert len(samples) == len(ours) == len(MC_ROWS)
    for mine, theirs in zip(ours, samples):
        assert mine.scores["acc"] == theirs["acc"] and mine.scores["acc_norm"] == theirs["acc_norm"]
        assert mine.details["loglikelihoods"] == pytest.approx(
            [r[0][0] for r in theirs["resps"]], abs=1e-4)
    acc = sum(s["acc"] for s in samples) / len(samples)
    assert run.summary["metrics"]["acc"]["mean"] == pytest.approx(acc)
    s = run.summary["metrics"]["acc_norm"]
    assert s["ci_low"] <= s["mean"] <= s["ci_high"] and s["n"] == len(MC_ROWS)


def test_gguf_scores_the_same_items_through_llama_cpp(ev) -> None:
    cat, suite = ev["catalog"], ev["suite"]
    torch_rows = run_store.results(cat, run_store.latest_run(cat, ev["hf"].id, suite.id).id)
    gguf_run = run_store.latest_run(cat, ev["gguf"].id, suite.id)
    assert gguf_run.summary["engine"] == "llama.cpp"
    for a, b in zip(torch_rows, run_store.results(cat, gguf_run.id)):
        # f16 weights against f32: the same figures to within f16's rounding
        assert b.details["loglikelihoods"] == pytest.approx(a.details["loglikelihoods"], rel=5e-3)
        assert b.prompt == a.prompt and b.seconds > 0


def test_few_shot_examples_are_seeded_and_prefix_the_context(ev) -> None:
    from llmops_desktop.evaluate.scoring import fewshot_examples, mc_context

    items = list(iter_items(ev["suite"]))
    pool = list(enumerate(items))
    a = fewshot_examples(items[0], 0, pool, 3, seed=7)
    assert a == fewshot_examples(items[0], 0, pool, 3, seed=7) and items[0] not in a
    assert a != fewshot_examples(items[0], 0, pool, 3, seed=8)
    ctx = mc_context(items[0], a)
    assert ctx.endswith(items[0]["context"]) and ctx.count("\n\n") == 3
    assert ctx.startswith(a[0]["context"] + " " + a[0]["choices"][a[0]["answer"]])


# ---- compare ---------------------------------------------------------------------------------

def test_compare_lists_flipped_items_and_writes_csv_and_html(ev) -> None:
    from llmops_desktop.evaluate.compare import compare_runs
    from llmops_desktop.evaluate.report import comparison_csv, comparison_html

    cat = ev["catalog"]
    c = compare_runs(cat, [ev["hf"].ref, ev["gguf"].ref], "arc-mini")
    assert [r["artifact"] for r in c["matrix"]] == [ev["hf"].ref, ev["gguf"].ref]
    assert set(c["metrics"]) == {"acc", "acc_norm"}
    a = {r.item_index: r for r in run_store.results(cat, c["matrix"][0]["run_id"])}
    b = {r.item_index: r for r in run_store.results(cat, c["matrix"][1]["run_id"])}
    expected = sorted(i for i in a if a[i].scores["acc"] != b[i].scores["acc"]
                      or a[i].scores["acc_norm"] != b[i].scores["acc_norm"])
    assert [f["item"] for f in c["flipped"]] == expected
    acc = next(t for t in c["tests"] if t["metric"] == "acc")
    a_only = sum(1 for i in a if a[i].scores["acc"] > b[i].scores["acc"])
    assert acc["mcnemar"]["a_only"] == a_only and 0 <= acc["mcnemar"]["p"] <= 1
    rows = list(csv.DictReader(io.StringIO(comparison_csv(c))))
    assert {(r["artifact"], r["metric"]) for r in rows} == {
        (x, m) for x in (ev["hf"].ref, ev["gguf"].ref) for m in ("acc", "acc_norm")}
    page = comparison_html(c)
    assert "<svg" in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_mcnemar_by_hand_equals_scipy() -> None:
    from scipy.stats import binomtest

    from llmops_desktop.evaluate import stats

    for k, n in ((0, 5), (2, 11), (7, 20), (10, 20)):
        probs = [__import__("math").comb(n, i) / 2 ** n for i in range(n + 1)]
        by_hand = min(1.0, sum(p for p in probs if p <= probs[k] * (1 + 1e-7)))
        assert by_hand == pytest.approx(binomtest(k, n, 0.5).pvalue)
        assert stats.binomial_two_sided(k, n) == pytest.approx(by_hand)


# ---- resume ----------------------------------------------------------------------------------

def test_an_interrupted_run_resumes_where_it_stopped(ev) -> None:
    from llmops_desktop.evaluate.task import EvalRequest

    cat, suite, hf = ev["catalog"], ev["suite"], ev["hf"]
    request = EvalRequest(artifacts=(hf.ref,), suite=suite.ref, limit=6, shots=1)
    run, done = run_store.open_run(cat, suite.id, hf.id, request.run_params(), 6, None)
    assert not done
    kept = run_store.ItemResult(0, "mc", "stored before", "x", {"acc": 1.0, "acc_norm": 1.0}, {}, 0.1)
    run_store.add_results(cat, run.id, [kept])
    run_store.finish_run(cat, run.id, "interrupted", {})
    result, events = run_eval(cat, artifacts=[hf.ref], suite=suite.ref, limit=6, shots=1)
    assert result["run_ids"] == [run.id]
    assert any(isinstance(e, Log) and "resuming, 1 of 6" in e.message for e in events)
    rows = run_store.results(cat, run.id)
    assert [r.item_index for r in rows] == list(range(6)) and rows[0].prompt == "stored before"
    assert "\n\n" in rows[1].prompt  # one shot before the item
    assert run_store.get_run(cat, run.id).state == "succeeded"


# ---- approval gate ---------------------------------------------------------------------------

def test_approval_needs_a_passing_run(ev, demo_model_dir) -> None:
    from dataclasses import replace

    from llmops_desktop.settings import load_settings, save_settings
    from llmops_desktop.share.errors import GovernanceError
    from llmops_desktop.share.governance import get_status, set_status

    cat = ev["catalog"]
    path = cat.home.settings_path
    (demo_model_dir / "README.md").write_text("a copy of the demo model\n")
    fresh = import_artifact(cat, demo_model_dir, "demo-copy")
    strict = import_suite(cat, ev["root"] / "arc.jsonl", name="arc-strict",
                          thresholds=["acc>=1.0"])
    set_status(cat, fresh.id, "draft", "the setting is off: no gate")
    save_settings(path, replace(load_settings(path), approval_needs_evaluation=True))
    try:
        with pytest.raises(GovernanceError, match="no finished evaluation run"):
            set_status(cat, fresh.id, "approved", "ship it")
        run_eval(cat, artifacts=[fresh.ref], suite=strict.ref)
        with pytest.raises(GovernanceError, match=r"run #\d+ on arc-strict@1 fails: acc"):
            set_status(cat, fresh.id, "approved", "ship it")
        assert get_status(cat, fresh.id) == "draft"
        run_eval(cat, artifacts=[fresh.ref], suite="arc-mini")  # threshold acc>=0.0
        set_status(cat, fresh.id, "approved", "passed arc-mini")
        assert get_status(cat, fresh.id) == "approved"
    finally:
        save_settings(path, replace(load_settings(path), approval_needs_evaluation=False))


def test_shared_context_packing_gives_the_one_sequence_figures(ev, demo_model_session) -> None:
    from llmops_desktop.evaluate.backends import TorchBackend
    from llmops_desktop.evaluate.scoring import fewshot_examples, mc_context, mc_pairs

    items = list(iter_items(ev["suite"]))
    pool = list(enumerate(items))
    pairs = [p for i, it in pool for p in mc_pairs(mc_context(it, fewshot_examples(
        it, i, pool, 2, seed=1)), it)]
    packed = TorchBackend(demo_model_session, batch_size=8).loglikelihood(pairs)
    plain = TorchBackend(demo_model_session, batch_size=8, pack=False).loglikelihood(pairs)
    assert [p[0] for p in packed] == pytest.approx([p[0] for p in plain], abs=1e-4)
    assert [p[1] for p in packed] == [p[1] for p in plain]


def test_a_cancelled_run_keeps_its_items_and_the_next_job_finishes_it(ev) -> None:
    from llmops_desktop.jobs.events import Progress

    cat, hf = ev["catalog"], ev["hf"]
    rows = [{**MC_ROWS[i % len(MC_ROWS)], "id": f"r{i}"} for i in range(60)]
    suite = import_suite(cat, _write_jsonl(ev["root"] / "long.jsonl", rows), name="long")
    params = {"artifacts": [hf.ref], "suite": suite.ref, "shots": 1, "batch_size": 4}
    run = runner.start(cat, "eval", params)
    for event in run.events():
        if isinstance(event, Progress) and event.done >= 2:
            run.cancel()  # one item per batch: two are stored, the rest are not
    assert cat.job(run.job_id).state.value == "cancelled"
    (stopped,) = run_store.runs_of(cat, artifact_id=hf.id, suite_version_id=suite.id)
    assert stopped.state == "cancelled"
    kept = {r.item_index: r for r in run_store.results(cat, stopped.id)}
    assert 2 <= len(kept) < len(rows)
    result, events = run_eval(cat, **params)
    assert result["run_ids"] == [stopped.id]
    assert any(isinstance(e, Log) and f"resuming, {len(kept)} of {len(rows)}" in e.message
               for e in events)
    done = run_store.results(cat, stopped.id)
    assert [r.item_index for r in done] == list(range(len(rows)))
    assert all(done[i].seconds == kept[i].seconds for i in kept)  # not scored again


def test_a_threshold_relative_to_the_parent_needs_the_parents_run(ev, demo_model_dir) -> None:
    from dataclasses import replace

    from llmops_desktop.importer import import_model, inspect_source
    from llmops_desktop.settings import load_settings, save_settings
    from llmops_desktop.share.errors import GovernanceError
    from llmops_desktop.share.governance import get_status, set_status

    cat, parent = ev["catalog"], ev["hf"]
    (demo_model_dir / "README.md").write_text("the demo model, as a child of demo-hf\n")
    made = [e for e in import_model(cat, inspect_source(demo_model_dir, name="demo-child"),
                                    staging=cat.home.job_staging_dir(2), parent_id=parent.id)
            if e.type == "result"]
    child = cat.artifact(made[0].data["artifact_id"])
    rel = import_suite(cat, ev["root"] / "arc.jsonl", name="arc-rel",
                       thresholds=["acc>=parent-0.0"])
    path = cat.home.settings_path
    save_settings(path, replace(load_settings(path), approval_needs_evaluation=True))
    try:
        run_eval(cat, artifacts=[child.ref], suite=rel.ref)
        with pytest.raises(GovernanceError, match=f"the parent {parent.ref} has no finished run "
                                                  "on arc-rel@1"):
            set_status(cat, child.id, "approved", "as good as its parent")
        run_eval(cat, artifacts=[parent.ref], suite=rel.ref)
        set_status(cat, child.id, "approved", "as good as its parent")  # same weights, same acc
        assert get_status(cat, child.id) == "approved"
    finally:
        save_settings(path, replace(load_settings(path), approval_needs_evaluation=False))
