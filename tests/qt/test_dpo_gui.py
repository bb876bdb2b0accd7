"""DPO from the Fine-tune page as a user drives it (#19): the method shows only preference
datasets, the run draws its reward margin and log-probabilities live, the adapter appears,
its page shows the before/after comparison on the suite the run named, and the Models
page's lineage timeline goes base → adapter with each step's evaluation figures."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from llmops_desktop.catalog import Catalog, JobState  # noqa: E402
from tests.qt.windows import dispose, open_window  # noqa: E402

JOB_TIMEOUT_MS = 180_000
OPTIONS = {"max_steps": 8, "batch_size": 4, "max_len": 48, "eval_steps": 4, "save_steps": 8,
           "r": 8, "alpha": 16.0, "lr": 5e-3, "beta": 0.1, "validation": 0.125, "seed": 5}


@pytest.fixture
def window(qtbot, home, demo_model_session, tmp_path):
    from llmops_desktop.datasets.store import import_dataset
    from llmops_desktop.importer import import_model, inspect_source
    from tests.test_finetune import make_dataset

    with Catalog.open(home) as cat:
        for _ in import_model(cat, inspect_source(demo_model_session, name="tiny"),
                              staging=home.staging_dir / "test-import"):
            pass
        import_dataset(cat, make_dataset(tmp_path / "chat.jsonl", rows=8), name="chat")
    win = open_window(qtbot, home)
    yield win
    dispose(win)


def test_dpo_from_the_finetune_page_with_before_after_and_lineage(qtbot, window, home,
                                                                  tmp_path) -> None:
    from llmops_desktop.datasets.store import import_dataset
    from llmops_desktop.evaluate.suites import import_suite
    from tests.test_dpo import make_pairs
    from tests.test_eval import MC_ROWS, _write_jsonl

    page = window.show_page("finetune")
    page.set_option("method", "dpo")
    # Only a chat dataset so far: DPO has nothing to train on, and says how to get pairs.
    assert page.dataset_combo.count() == 0 and not page.start_button.isEnabled()
    assert "preference pairs (prompt, chosen, rejected)" in page.start_reason.text()
    assert not page._inputs["beta"].isHidden()  # DPO's beta is shown for DPO
    with Catalog.open(home) as cat:
        pairs = import_dataset(cat, make_pairs(tmp_path / "pairs.jsonl", rows=24), name="pairs")
        import_suite(cat, _write_jsonl(tmp_path / "arc.jsonl", MC_ROWS[:6]), name="arc-mini")
        base_id = cat.resolve("tiny").id
    page.reload()
    assert [page.dataset_combo.itemData(i) for i in range(page.dataset_combo.count())] \
        == [pairs.id]
    assert page.start_button.isEnabled()
    page.set_option("method", "lora")  # supervised: every dataset again, no beta
    assert page.dataset_combo.count() == 2 and page._inputs["beta"].isHidden()
    page.set_option("method", "dpo")
    if page.qlora_reason:  # no bitsandbytes + CUDA here: 4-bit is greyed out with the reason
        assert not page._inputs["four_bit"].isEnabled()
        assert page.qlora_reason in page._inputs["four_bit"].toolTip()
    assert page.suite_picker.count() == 1 and "arc-mini@1" in page.suite_picker.item(0).text()
    page.suite_picker.item(0).setCheckState(Qt.CheckState.Checked)  # the user ticks it
    for name, value in OPTIONS.items():
        page.set_option(name, value)
    assert page.options().method == "dpo" and page.options().suites == "arc-mini@1"
    page.update_estimate()  # DPO's estimate: chosen and rejected sequences both
    assert "memory needed on cpu" in page.estimate_label.text()
    job_id = page.start()
    assert job_id is not None, page.status.text()

    qtbot.waitUntil(lambda: len(page.charts.series("reward_margin")) >= 2,
                    timeout=JOB_TIMEOUT_MS)
    assert page.plots["reward"].isVisible() and page.plots["logps"].isVisible()
    xs, _ = page._curves["reward_margin"].getData()
    assert len(xs) >= 2
    with Catalog.open(home) as cat:
        qtbot.waitUntil(lambda: cat.job(job_id).state.finished, timeout=JOB_TIMEOUT_MS)
        job = cat.job(job_id)
        assert job.state is JobState.SUCCEEDED, job.error
        adapter = cat.artifact(job.result["artifact_id"])
    assert adapter.kind == "lora" and adapter.parent_id == base_id and "dpo" in adapter.tags
    qtbot.waitUntil(lambda: "reward margin" in page.result_label.text(), timeout=10_000)
    margins = page.charts.series("reward_margin")
    assert [s for s, _ in margins] == list(range(1, OPTIONS["max_steps"] + 1))
    _, chosen = page._curves["logps_chosen"].getData()
    assert len(chosen) == OPTIONS["max_steps"] and all(v < 0 for v in chosen)

    assert page.merge_button.isEnabled()  # the adapter merged into its base: a new model
    merge_id = page.merge()
    assert merge_id is not None, page.status.text()
    with Catalog.open(home) as cat:
        qtbot.waitUntil(lambda: cat.job(merge_id).state.finished, timeout=JOB_TIMEOUT_MS)
        merge_job = cat.job(merge_id)
        assert merge_job.state is JobState.SUCCEEDED, merge_job.error
        merged = cat.artifact(merge_job.result["artifact_id"])

    # The adapter's page: the before/after comparison on arc-mini, base against adapter.
    models = window.show_page("models")
    models.reload()
    qtbot.waitUntil(lambda: models.select_artifact(adapter.id), timeout=10_000)
    details = models.details
    assert details.tabs.isTabVisible(details.comparison_tab)
    rows = {r[1]: r for r in details.comparison.texts()}
    assert {"acc", "acc_norm"} <= set(rows)
    suite, _, base_text, adapter_text, diff_text, verdict = rows["acc"]
    assert suite == "arc-mini@1" and "[" in base_text and "[" in adapter_text
    assert diff_text[0] in "+-" and verdict.split(" (")[0] in (
        "better", "worse", "no clear difference")
    # The lineage timeline: base → DPO adapter → merge, the first two with their figures.
    lineage = details.lineage.rows()
    assert [(d, text, step) for d, text, step, _ in lineage] == [
        (0, f"#{base_id} tiny@1", "base"), (1, f"#{adapter.id} {adapter.ref}", "DPO adapter"),
        (2, f"#{merged.id} {merged.ref}", "merge")]
    assert all("arc-mini@1: acc " in figures for *_, figures in lineage[:2])
    base_item = details.lineage.topLevelItem(0)
    details.lineage.itemClicked.emit(base_item, 0)  # a click opens the base
    qtbot.waitUntil(lambda: details.artifact is not None and details.artifact.id == base_id,
                    timeout=10_000)
    assert not details.tabs.isTabVisible(details.comparison_tab)


def test_dpo_cancel_and_resume_from_the_page(qtbot, window, home, tmp_path) -> None:
    from llmops_desktop.datasets.store import import_dataset
    from tests.test_dpo import make_pairs

    with Catalog.open(home) as cat:
        import_dataset(cat, make_pairs(tmp_path / "pairs.jsonl", rows=16), name="pairs")
    page = window.show_page("finetune")
    page.set_option("method", "dpo")
    page.reload()
    steps = 30  # room for the Cancel to land mid-run (10 steps could all end before it did)
    for name, value in {**OPTIONS, "max_steps": steps, "save_steps": 1,
                        "validation": 0.0}.items():
        page.set_option(name, value)
    job_id = page.start()
    assert job_id is not None, page.status.text()
    qtbot.waitUntil(lambda: len(page.charts.series("reward_margin")) >= 1,
                    timeout=JOB_TIMEOUT_MS)
    assert page.cancel_button.isEnabled()
    page.cancel_button.click()
    with Catalog.open(home) as cat:
        qtbot.waitUntil(lambda: cat.job(job_id).state.finished, timeout=JOB_TIMEOUT_MS)
        assert cat.job(job_id).state is JobState.CANCELLED
    qtbot.waitUntil(page.resume_button.isEnabled, timeout=10_000)
    stopped = len(page.charts.series("reward_margin"))
    assert 1 <= stopped < steps
    resumed = page.resume()
    assert resumed is not None and resumed != job_id, page.status.text()
    with Catalog.open(home) as cat:
        qtbot.waitUntil(lambda: cat.job(resumed).state.finished, timeout=JOB_TIMEOUT_MS)
        job = cat.job(resumed)
        assert job.state is JobState.SUCCEEDED, job.error
        assert cat.artifact(job.result["artifact_id"]).params["method"] == "dpo"
    # The resumed job's charts carry on from the checkpoint's curve to the last step.
    qtbot.waitUntil(lambda: len(page.charts.series("reward_margin")) == steps,
                    timeout=JOB_TIMEOUT_MS)
    assert [s for s, _ in page.charts.series("reward_margin")] == list(range(1, steps + 1))
