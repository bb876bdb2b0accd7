"""The Evaluate page as a user drives it (#18): suites made here imported from the page (a
refused file's bad rows shown by line), real eval jobs on two demo models started from the
Run tab, the matrix filled with the figures the catalog stored, two artifacts compared
with their flipped items side by side, the bars, and the CSV and HTML exports. Offscreen."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from llmops_desktop.catalog import Catalog  # noqa: E402
from llmops_desktop.evaluate import runs as run_store  # noqa: E402
from llmops_desktop.evaluate.suites import resolve_suite  # noqa: E402
from tests.mirror_fixtures import import_artifact  # noqa: E402

pytestmark = pytest.mark.slow

JOB_TIMEOUT_MS = 300_000
MC_ROWS = [{"question": f"What is {a} plus {b}?",
            "choices": {"text": [str(a + b), str(a + b + 1), "the model",
                                 "a long answer on weights"], "label": ["A", "B", "C", "D"]},
            "answerKey": "ABCD"[i % 4], "id": f"q{i}"}
           for i, (a, b) in enumerate([(1, 2), (3, 4), (5, 6), (7, 8), (2, 2), (9, 1), (4, 4),
                                       (6, 1), (8, 3), (2, 9), (5, 5), (1, 1)])]
GEN_ROWS = [{"prompt": "The quick brown fox", "references": ["jumps over the lazy dog."],
             "metrics": ["exact_match", "contains", "rouge_l"], "max_tokens": 8},
            {"prompt": "LLMOps Desktop keeps every model", "references": ["on your machine."],
             "metrics": ["contains", "rouge_l"], "max_tokens": 8}]


@pytest.fixture(scope="session")
def demo_b_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second demo model (other random weights): it answers differently."""
    from llmops_desktop.demo import make_demo_model

    return make_demo_model(tmp_path_factory.mktemp("demo-b") / "demo-b", seed=1)


def _interval(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]"


def _stored(catalog: Catalog, artifact_id: int, suite_ref: str) -> run_store.EvalRun:
    return run_store.latest_run(catalog, artifact_id, resolve_suite(catalog, suite_ref).id)


def _run_from_page(qtbot, window, page, refs: list[str], suite: str, limit: int = 0) -> int:
    finished: dict[int, str] = {}
    window.ctx.jobs.sig_job_finished.connect(lambda jid, state: finished.__setitem__(jid, state))
    page.tabs.setCurrentIndex(1)
    form = page.run_form
    form.set_checked(refs)
    form.select_suite(suite)
    form.limit_spin.setValue(limit)
    assert form.judge() is None
    job_id = form.start()
    assert job_id is not None, form.status.text()
    assert window.ctx.catalog.job(job_id).kind == "eval"
    qtbot.waitUntil(lambda: job_id in finished, timeout=JOB_TIMEOUT_MS)
    assert finished[job_id] == "succeeded", window.ctx.catalog.job(job_id).error
    return job_id


def test_evaluate_page_runs_compares_and_exports(qtbot, window, catalog, demo_model_session,
                                                 demo_b_session, tmp_path):
    a = import_artifact(catalog, demo_model_session, "demo-a")
    b = import_artifact(catalog, demo_b_session, "demo-b")
    page = window.show_page("evaluate")
    assert page.matrix.rowCount() == 0 and not page.csv_button.isEnabled()

    # A file with bad rows is refused; the rows are named by line in a dialog.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(MC_ROWS[0]) + "\n" + json.dumps({**MC_ROWS[1], "answerKey": "E"})
                   + "\n{broken\n", encoding="utf-8")
    page.suites.import_file(str(bad))
    qtbot.waitUntil(lambda: page.suites.bad_rows_box is not None, timeout=20_000)
    details = page.suites.bad_rows_box.detailedText()
    assert details.startswith("line 2: ") and "\nline 3: " in details
    page.suites.bad_rows_box.close()
    assert page.suites.tree.topLevelItemCount() == 0

    mc = tmp_path / "arc-mini.jsonl"
    mc.write_text("".join(json.dumps(r) + "\n" for r in MC_ROWS), encoding="utf-8")
    page.suites.import_file(str(mc))  # the name defaults to the file's
    qtbot.waitUntil(lambda: page.suites.tree.topLevelItemCount() == 1, timeout=20_000)
    assert "What is 1 plus 2?" in page.suites.preview_text()
    assert page.suites.tree.currentItem().text(2) == "12"
    gen = tmp_path / "gen.json"
    gen.write_text(json.dumps(GEN_ROWS), encoding="utf-8")
    page.suites.name_edit.setText("gen-mini")
    page.suites.import_file(str(gen))
    qtbot.waitUntil(lambda: page.suites.tree.topLevelItemCount() == 2, timeout=20_000)
    assert "references: jumps over the lazy dog." in page.suites.preview_text()

    # Both models on the multiple-choice suite, as one job from the Run tab.
    _run_from_page(qtbot, window, page, [a.ref, b.ref], "arc-mini@1")
    assert page.tabs.currentIndex() == 2 and page.results_suite.currentText() == "arc-mini@1"
    assert page.matrix.metrics == ["acc", "acc_norm"]
    runs = {ref: _stored(catalog, art.id, "arc-mini@1") for ref, art in ((a.ref, a), (b.ref, b))}
    assert [page.matrix.headerData(r, 2) for r in range(page.matrix.rowCount())] == [a.ref, b.ref]
    assert page.matrix.texts() == [[_interval(runs[ref].summary["metrics"][m])
                                    for m in ("acc", "acc_norm")] for ref in (a.ref, b.ref)]
    assert all(runs[ref].summary["items"] == len(MC_ROWS) for ref in runs)

    # The bars are the stored means and intervals of the chosen metric.
    page.chart.metric_combo.setCurrentText("acc")
    assert page.chart.bars is not None
    assert page.chart.shown() == [
        (ref, s["mean"], s["ci_low"], s["ci_high"])
        for ref in (a.ref, b.ref) for s in [runs[ref].summary["metrics"]["acc"]]]

    # The generation suite on one model, its first item only.
    _run_from_page(qtbot, window, page, [a.ref], "gen-mini@1", limit=1)
    assert page.results_suite.currentText() == "gen-mini@1"
    gen_run = _stored(catalog, a.id, "gen-mini@1")
    assert gen_run.summary["items"] == 1 and "rouge_l" in page.matrix.metrics
    assert page.matrix.texts() == [[_interval(gen_run.summary["metrics"][m])
                                    for m in page.matrix.metrics]]

    # Compare A and B on the multiple-choice suite: the tests and the flipped items.
    page.select_results_suite(resolve_suite(catalog, "arc-mini@1").id)
    assert page.matrix.rowCount() == 2
    compare = page.compare
    compare.a_combo.setCurrentText(a.ref)
    compare.b_combo.setCurrentText(b.ref)
    compare.compare_button.click()
    qtbot.waitUntil(lambda: compare.comparison is not None, timeout=60_000)
    ra = {r.item_index: r for r in run_store.results(catalog, runs[a.ref].id)}
    rb = {r.item_index: r for r in run_store.results(catalog, runs[b.ref].id)}
    flipped = [i for i in sorted(ra) if ra[i].scores["acc"] != rb[i].scores["acc"]
               or ra[i].scores["acc_norm"] != rb[i].scores["acc_norm"]]
    assert flipped, "the two demo models should disagree on some items"
    shown = compare.flipped_rows()
    assert [int(r[0]) for r in shown] == flipped
    assert [(r[3], r[4]) for r in shown] == [(ra[i].output, rb[i].output) for i in flipped]
    assert compare.tests_table.rowCount() == 2
    verdicts = {compare.tests_table.item(r, 5).text() for r in range(2)}
    assert verdicts <= {"a real difference", "not a real difference"}
    assert "real difference" in compare.verdict_label.text()
    assert f"{len(flipped)} items flipped" in compare.verdict_label.text()

    # Exports: the matrix as CSV (the catalog's figures), and the HTML report.
    path = page.export_csv(str(tmp_path / "matrix.csv"))
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {(r["artifact"], r["metric"], float(r["mean"]), int(r["n"])) for r in rows} == {
        (ref, m, s["mean"], s["n"]) for ref in (a.ref, b.ref)
        for m, s in runs[ref].summary["metrics"].items()}
    exported: list[str] = []
    page.sig_exported.connect(exported.append)
    page.export_html(str(tmp_path / "report.html"))
    qtbot.waitUntil(lambda: bool(exported), timeout=60_000)
    report = Path(exported[0]).read_text(encoding="utf-8")
    assert "<svg" in report and a.ref in report and b.ref in report
    assert f"Flipped items ({len(flipped)})" in report


def test_a_judged_suite_asks_for_a_judge_before_any_job(qtbot, window, catalog,
                                                        demo_model_session, tmp_path):
    a = import_artifact(catalog, demo_model_session, "demo-a")
    path = tmp_path / "judged.jsonl"
    path.write_text(json.dumps({"kind": "judged", "prompt": "Name a colour.",
                                "rubric": "A real colour scores high."}) + "\n", encoding="utf-8")
    page = window.show_page("evaluate")
    page.suites.import_file(str(path))
    qtbot.waitUntil(lambda: page.suites.tree.topLevelItemCount() == 1, timeout=20_000)
    assert "rubric: A real colour scores high." in page.suites.preview_text()
    form = page.run_form
    form.set_checked([a.ref])
    form.select_suite("judged@1")
    jobs_before = len(catalog.jobs())
    assert form.start() is None
    assert "judged@1 has 1 judged items: choose a running deployment" in form.status.text()
    assert len(catalog.jobs()) == jobs_before
    form.judge_combo.setEditText("http://127.0.0.1:9")
    assert form.judge() == "http://127.0.0.1:9"
    form.judge_combo.setCurrentIndex(0)
    assert form.judge() is None
