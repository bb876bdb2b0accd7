"""The Datasets and Fine-tune pages as a user drives them, with real imports and a real
training job: the token histogram, bad rows by line, live loss points, the adapter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")


from llmops_desktop.catalog import Catalog, JobState  # noqa: E402
from tests.qt.windows import dispose, open_window  # noqa: E402

JOB_TIMEOUT_MS = 120_000
CHAT = {"messages": [{"role": "user", "content": "Repeat data"},
                     {"role": "assistant", "content": "data data data"}]}


@pytest.fixture
def window(qtbot, home, demo_model_session):
    from llmops_desktop.importer import import_model, inspect_source

    with Catalog.open(home) as cat:
        for _ in import_model(cat, inspect_source(demo_model_session, name="tiny"),
                              staging=home.staging_dir / "test-import"):
            pass
    win = open_window(qtbot, home)
    yield win
    dispose(win)


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_dataset_import_shows_rows_histogram_and_bad_rows(qtbot, window, tmp_path) -> None:
    page = window.show_page("datasets")
    bad = _write(tmp_path / "bad.jsonl", [CHAT, "{oops", CHAT])
    page.path_edit.setText(str(bad))
    page.import_button.click()
    qtbot.waitUntil(lambda: page.import_button.isEnabled(), timeout=30_000)
    assert "line 2: invalid JSON" in page.bad_view.toPlainText()
    assert page.list.topLevelItemCount() == 0  # refused, nothing imported
    other = dict(CHAT, messages=[{"role": "user", "content": "Repeat model " * 5},
                                 {"role": "assistant", "content": "model"}])
    good = _write(tmp_path / "good.jsonl", [CHAT, CHAT, other])
    page.path_edit.setText(str(good))
    with qtbot.waitSignal(page.sig_imported, timeout=30_000):
        page.import_button.click()
    assert page.list.topLevelItemCount() == 1
    assert "data data data" in page.rows_view.toPlainText()
    page.model_combo.setCurrentIndex(page.model_combo.findText("tiny@1"))
    with qtbot.waitSignal(page.sig_stats_ready, timeout=60_000) as blocker:
        page.stats_button.click()
    stats = blocker.args[0]
    assert stats["duplicates"] == 1 and stats["rows"] == 3
    heights = page.hist_item.opts["height"]
    assert sum(heights) == 3  # every row is in the histogram
    assert "1 duplicates" in page.stats_label.text()


def test_finetune_from_the_page_draws_live_loss_and_makes_an_adapter(qtbot, window, home,
                                                                     tmp_path) -> None:
    from llmops_desktop.datasets.store import import_dataset

    rows = [dict(CHAT, messages=[{"role": "user", "content": f"Repeat {w}"},
                                 {"role": "assistant", "content": f"{w} {w} {w}"}])
            for w in ("data model team share serve train local disk page job".split() * 3)]
    with Catalog.open(home) as cat:
        import_dataset(cat, _write(tmp_path / "d.jsonl", rows), name="repeat")
        base_id = cat.resolve("tiny").id
    # The Models page's "Fine-tune…" opens this page with the model as the base.
    models = window.show_page("models")
    models.reload()
    qtbot.waitUntil(lambda: models.select_artifact(base_id), timeout=10_000)
    models.act_finetune.trigger()
    page = window.pages["finetune"]
    assert window.current_page_id() == "finetune"
    assert page.base_combo.currentData() == base_id
    page.dataset_combo.setCurrentIndex(0)
    for name, value in {"max_steps": 12, "batch_size": 4, "max_len": 48, "eval_steps": 4,
                        "save_steps": 6, "r": 4, "lr": 0.005}.items():
        page.set_option(name, value)
    page.update_estimate()
    assert "memory needed on cpu" in page.estimate_label.text()
    assert page.base_combo.toolTip() and page._inputs["lr"].toolTip().startswith("Peak")
    job_id = page.start()
    assert job_id is not None
    qtbot.waitUntil(lambda: len(page.loss_points()) >= 2, timeout=JOB_TIMEOUT_MS)
    xs, ys = page._curves["loss"].getData()
    assert len(xs) >= 2  # points on the chart, while it runs or just after
    with Catalog.open(home) as cat:
        qtbot.waitUntil(lambda: cat.job(job_id).state.finished, timeout=JOB_TIMEOUT_MS)
        job = cat.job(job_id)
        assert job.state is JobState.SUCCEEDED, job.error
        adapter = cat.artifact(job.result["artifact_id"])
        assert adapter.kind == "lora" and adapter.parent_id == base_id
    qtbot.waitUntil(lambda: "perplexity" in page.result_label.text(), timeout=10_000)
    assert len(page.loss_points()) == 12
    assert page.merge_button.isEnabled()
