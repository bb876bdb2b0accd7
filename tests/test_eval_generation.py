"""Evaluation (#18): generation metrics equal the maintained libraries' on the stored outputs,
a live demo deployment judges (pointwise, and pairwise in both orders), and the commands
work end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.evaluate import metrics
from llmops_desktop.evaluate import runs as run_store
from llmops_desktop.evaluate.suites import import_suite, iter_items
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Result
from llmops_desktop.paths import Home
from tests.mirror_fixtures import import_artifact

pytestmark = pytest.mark.slow

SCHEMA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
GEN_ROWS = [
    {"prompt": "The quick brown fox", "references": ["jumps over the lazy dog.", "runs away"],
     "metrics": ["exact_match", "contains", "rouge_l", "bleu", "chrf"], "max_tokens": 16},
    {"prompt": "Numbers like 1234, 3.14159", "reference": "2026",
     "metrics": ["numeric", "regex", "rouge_l"], "pattern": "[0-9]+", "tolerance": 5,
     "max_tokens": 12},
    {"messages": [{"role": "user", "content": "Give me a JSON object with a name."}],
     "references": ["{\"name\": \"model\"}"], "metrics": ["json_schema", "bleu", "chrf"],
     "schema": SCHEMA, "max_tokens": 16},
    {"prompt": "LLMOps Desktop keeps every model", "references": ["on your own machine."],
     "metrics": ["rouge_l", "bleu", "chrf", "contains"], "max_tokens": 10},
]
JUDGED_ROWS = [
    {"kind": "judged", "prompt": "Name a colour.", "rubric": "A real colour scores high."},
    {"kind": "judged", "prompt": "Say hello.", "rubric": "Polite and short.", "mode": "pairwise",
     "baseline": "Hello there!"},
]


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_eval(catalog: Catalog, **params) -> dict:
    run = runner.start(catalog, "eval", params)
    events = list(run.events())
    run.wait()
    err = next((e for e in events if isinstance(e, Error)), None)
    assert err is None, err
    return next(e.data for e in events if isinstance(e, Result))


@pytest.fixture(scope="module")
def gen(tmp_path_factory, demo_model_session, demo_gguf_session):
    root = tmp_path_factory.mktemp("evalgen")
    old = os.environ.get("LLMOPS_HOME")
    os.environ["LLMOPS_HOME"] = str(root)
    home = Home.resolve(root)
    cat = Catalog.open(home)
    hf = import_artifact(cat, demo_model_session, "demo-hf")
    gguf = import_artifact(cat, demo_gguf_session, "demo-gguf")
    suite = import_suite(cat, _jsonl(root / "gen.jsonl", GEN_ROWS), name="gen")
    yield {"catalog": cat, "home": home, "hf": hf, "gguf": gguf, "suite": suite, "root": root}
    cat.close()
    if old is None:
        os.environ.pop("LLMOPS_HOME", None)
    else:
        os.environ["LLMOPS_HOME"] = old


def test_metrics_on_known_answers() -> None:
    assert metrics.exact_match("The  Answer!", ["answer"]) == 1.0
    assert metrics.exact_match("an answer", ["answers"]) == 0.0
    assert metrics.contains("I think it is Paris, France.", ["paris"]) == 1.0
    assert metrics.numeric("so the total is 1,234.5", ["1234.5"]) == 1.0
    assert metrics.numeric("about 10", ["12"], tolerance=2) == 1.0
    assert metrics.numeric("about 10", ["12"], tolerance=1) == 0.0
    assert metrics.regex_match("code 42", r"\d+") == 1.0
    assert metrics.json_schema_valid('```json\n{"name": "x"}\n```', SCHEMA) == 1.0
    assert metrics.json_schema_valid('{"name": 3}', SCHEMA) == 0.0
    assert metrics.json_schema_valid("not json", SCHEMA) == 0.0
    import sacrebleu
    from rouge_score import rouge_scorer

    out, refs = "the cat sat on a mat today", ["the cat sat on the mat", "a cat was on a mat"]
    got = metrics.score_generation(out, {"references": refs, "metrics": ["rouge_l", "bleu", "chrf"]})
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    assert got["rouge_l"] == max(scorer.score(r, out)["rougeL"].fmeasure for r in refs) > 0.5
    assert got["bleu"] == sacrebleu.sentence_bleu(out, refs).score > 0
    assert got["chrf"] == sacrebleu.sentence_chrf(out, refs).score > 0


@pytest.mark.parametrize("which", ["hf", "gguf"])
def test_generation_metrics_equal_rouge_score_and_sacrebleu_on_stored_outputs(gen, which) -> None:
    import sacrebleu
    from rouge_score import rouge_scorer

    cat, suite = gen["catalog"], gen["suite"]
    result = run_eval(cat, artifacts=[gen[which].ref], suite=suite.ref)
    run = run_store.get_run(cat, result["run_ids"][0])
    rows = run_store.results(cat, run.id)
    items = list(iter_items(suite))
    assert len(rows) == len(items)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for row, item in zip(rows, items):
        refs = item["references"]
        assert row.output == row.output.strip() or row.output  # the raw answer is stored
        assert set(row.scores) == set(item["metrics"])
        if "rouge_l" in item["metrics"]:
            assert row.scores["rouge_l"] == max(scorer.score(r, row.output)["rougeL"].fmeasure
                                                for r in refs)
        if "bleu" in item["metrics"]:
            assert row.scores["bleu"] == sacrebleu.sentence_bleu(row.output, refs).score
        if "chrf" in item["metrics"]:
            assert row.scores["chrf"] == sacrebleu.sentence_chrf(row.output, refs).score
        if "json_schema" in item["metrics"]:
            assert row.scores["json_schema"] == metrics.json_schema_valid(row.output, SCHEMA)
        assert row.prompt and row.seconds > 0
    bleu_rows = [(r.output, i["references"]) for r, i in zip(rows, items) if "bleu" in i["metrics"]]
    refs_t = [[refs[k] if k < len(refs) else refs[0] for _, refs in bleu_rows] for k in range(2)]
    corpus = sacrebleu.corpus_bleu([o for o, _ in bleu_rows], refs_t).score
    assert run.summary["extra"]["corpus_bleu"] == pytest.approx(corpus)
    for name, s in run.summary["metrics"].items():
        values = [r.scores[name] for r in rows if name in r.scores]
        assert s["mean"] == pytest.approx(sum(values) / len(values)) and s["n"] == len(values)


def test_a_live_deployment_judges_pointwise_and_pairwise_in_both_orders(gen) -> None:
    from llmops_desktop.serving.engines.base import EngineSettings, get_engine
    from llmops_desktop.serving.recorder import RequestRecorder
    from llmops_desktop.serving.store import request_log, update_deployment
    from tests.serving_fixtures import make_deployment, server_thread

    cat, gguf = gen["catalog"], gen["gguf"]
    suite = import_suite(cat, _jsonl(gen["root"] / "judged.jsonl", JUDGED_ROWS), name="judged")
    assert suite.kinds == {"judged": 2} and "{rubric}" in suite.judge_prompts["pointwise"]
    engine = get_engine("llama.cpp").load(gguf.path, EngineSettings(threads=1, parallel=1))
    config = make_deployment(cat, gguf, name="judge")
    try:
        with RequestRecorder(gen["home"], interval=0.2) as recorder, \
                server_thread(config, engine, recorder) as server:
            # The judge is named as a deployment; its address comes from the catalog.
            update_deployment(cat, config.id, state="running", url=server.url,
                              port=int(server.url.rsplit(":", 1)[1]), pid=os.getpid())
            result = run_eval(cat, artifacts=[gen["hf"].ref], suite=suite.ref, judge="judge",
                              max_tokens=8)
            assert recorder.flush()
    finally:
        engine.close()
    rows = run_store.results(cat, result["run_ids"][0])
    point, pair = rows
    assert point.details["judge"] == server.url
    assert "A real colour scores high." in point.details["judge_prompt"]
    assert point.output in point.details["judge_prompt"] and "Name a colour." in \
        point.details["judge_prompt"]
    assert isinstance(point.details["judge_reply"], str)
    assert ("judge_score" in point.scores) == (point.details["score"] is not None)
    first, second = pair.details["orders"]
    ours = pair.output
    assert first["ours_is"] == "A" and second["ours_is"] == "B"
    assert first["judge_prompt"].index(ours) < first["judge_prompt"].index("Hello there!")
    assert second["judge_prompt"].index("Hello there!") < second["judge_prompt"].rindex(ours)
    logged = request_log(cat, deployment_id=config.id)
    assert len(logged) == 3  # one pointwise question, the pairwise one in both orders


def test_commands_import_evaluate_and_compare(gen, tmp_path, capsys) -> None:
    from llmops_desktop.cli import main

    home = str(gen["home"].root)
    src = _jsonl(tmp_path / "mc.jsonl", [
        {"question": f"Is {n} even?", "choices": ["yes", "no"], "answer": n % 2} for n in range(8)])
    assert main(["--home", home, "suite", "import", str(src), "--name", "parity", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kinds"] == {"mc": 8}
    ref_a, ref_b = gen["hf"].ref, gen["gguf"].ref
    assert main(["--home", home, "eval", ref_a, ref_b, "--suite", "parity", "--limit", "6",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["summary"]["items"] for r in out["runs"]] == [6, 6]
    csv_path, html_path = tmp_path / "cmp.csv", tmp_path / "cmp.html"
    assert main(["--home", home, "eval", "compare", ref_a, ref_b, "--suite", "parity",
                 "--csv", str(csv_path), "--html", str(html_path)]) == 0
    text = capsys.readouterr().out
    assert "acc_norm" in text and ("not a real difference" in text or "a real difference" in text)
    assert csv_path.read_text().startswith("artifact,run_id,metric")
    assert "<table>" in html_path.read_text()
