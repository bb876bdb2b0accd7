"""Evaluation runs travel in packages (#18 item 6): exported with their summaries and the
approval gate's verdict, checked on import, stored on the imported artifact and shown by
``llmops import``, ``llmops show`` and the model details."""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path

import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.evaluate.suites import import_suite
from llmops_desktop.jobs.events import Error, Result
from tests.mirror_fixtures import import_artifact
from tests.test_eval import MC_ROWS, _write_jsonl, run_eval
from tests.test_share import (_members, _with_manifest, _write, llmops, run_job, second_home,
                               snapshot)


@pytest.fixture
def exported(home, catalog, demo_gguf, tmp_path):
    """Home A: the demo GGUF with a passing run on one suite and a failing run on another,
    exported to a package through the CLI."""
    gguf = import_artifact(catalog, demo_gguf, "demo-gguf")
    src = _write_jsonl(tmp_path / "arc.jsonl", MC_ROWS)
    import_suite(catalog, src, name="arc-mini", thresholds=["acc>=0.0"])
    import_suite(catalog, src, name="arc-strict", thresholds=["acc>=1.0"])
    result, _ = run_eval(catalog, artifacts=[gguf.ref], suite="arc-mini")
    run_eval(catalog, artifacts=[gguf.ref], suite="arc-strict")
    pkg = tmp_path / "evals.llmpkg"
    llmops(home, "export", gguf.ref, "-o", str(pkg), "--json")
    return gguf, pkg, result["runs"][0]["summary"]


def test_runs_are_in_the_manifest_with_intervals_and_the_gate(exported) -> None:
    gguf, pkg, summary = exported
    with tarfile.open(pkg) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    runs = {r["suite"]: r for r in manifest["artifacts"][0]["eval_runs"]}
    assert set(runs) == {"arc-mini", "arc-strict"}
    mini, strict = runs["arc-mini"], runs["arc-strict"]
    assert mini["items"] == len(MC_ROWS) and mini["suite_version"] == 1
    assert len(mini["suite_sha256"]) == 64
    for name in ("acc", "acc_norm"):
        s = summary["metrics"][name]
        assert mini["metrics"][name] == {"mean": s["mean"], "ci_low": s["ci_low"],
                                         "ci_high": s["ci_high"]}
    assert mini["passed"] is True and mini["failures"] == []
    assert strict["passed"] is False and strict["failures"][0].startswith("acc ")
    assert strict["thresholds"] == [{"metric": "acc", "min": 1.0}]


def test_runs_show_on_import_and_after(exported, tmp_path, qtbot) -> None:
    gguf, pkg, summary = exported
    home_b = second_home(tmp_path)
    out = llmops(home_b, "import", str(pkg), "--allow-unsigned").stdout
    acc = summary["metrics"]["acc"]
    assert f"evaluation runs of {gguf.ref} (from the package):" in out
    assert (f"arc-mini@1 ({len(MC_ROWS)} items): acc {acc['mean']:.4f} "
            f"[{acc['ci_low']:.4f}, {acc['ci_high']:.4f}]") in out
    mini_line = next(line for line in out.splitlines() if "arc-mini@1" in line)
    strict_line = next(line for line in out.splitlines() if "arc-strict@1" in line)
    assert mini_line.endswith("passes its thresholds")
    assert "fails its thresholds: acc " in strict_line and "< 1.0" in strict_line

    shown = json.loads(llmops(home_b, "show", gguf.ref, "--json").stdout)
    runs = {r["suite"]: r for r in shown["eval_runs"]}
    assert runs["arc-mini"]["from_package"] == pkg.name
    assert runs["arc-mini"]["metrics"]["acc"] == pytest.approx(
        {k: acc[k] for k in ("mean", "ci_low", "ci_high")})
    assert runs["arc-strict"]["passed"] is False
    text = llmops(home_b, "show", gguf.ref).stdout
    assert "evaluation runs:" in text and f"(from the package {pkg.name})" in text

    from llmops_desktop.qt.pages.model_details import DetailsPane

    with Catalog.open(home_b) as cat_b:
        pane = DetailsPane(cat_b)
        qtbot.addWidget(pane)
        pane.show_artifact(cat_b.resolve(gguf.ref).id)
        rows = dict(pane.overview_rows())
        mini = rows["Evaluated on arc-mini@1 (package)"]
        assert mini.startswith(f"{len(MC_ROWS)} items: acc ") and "passes its thresholds" in mini
        assert "fails its thresholds" in rows["Evaluated on arc-strict@1 (package)"]
        pane.close()


def test_hostile_eval_runs_are_refused_and_nothing_is_written(exported, tmp_path) -> None:
    _, pkg, _ = exported
    members = _members(pkg)
    cases = {
        "not-a-list": (lambda m: m["artifacts"][0].update(eval_runs={"a": 1}),
                       "eval_runs is not a list"),
        "too-many": (lambda m: m["artifacts"][0].update(
            eval_runs=m["artifacts"][0]["eval_runs"] * 60), "evaluation runs (at most 100)"),
        "nan": (lambda m: m["artifacts"][0]["eval_runs"][0]["metrics"]["acc"].update(
            mean=math.nan), "has no finite mean and interval"),
        "string-mean": (lambda m: m["artifacts"][0]["eval_runs"][0]["metrics"]["acc"].update(
            ci_low="0.1"), "has no finite mean and interval"),
        "bool-version": (lambda m: m["artifacts"][0]["eval_runs"][0].update(suite_version=True),
                         "has no valid suite version"),
        "control-name": (lambda m: m["artifacts"][0]["eval_runs"][0].update(suite="a\x1b[2Jb"),
                         "has no valid suite name"),
        "long-failure": (lambda m: m["artifacts"][0]["eval_runs"][0].update(
            failures=["x" * 10_000]), "failures are not a short list"),
        "passed-text": (lambda m: m["artifacts"][0]["eval_runs"][0].update(passed="yes"),
                        "'passed' is not true/false"),
        "many-metrics": (lambda m: m["artifacts"][0]["eval_runs"][0].update(
            metrics={f"m{i}": {"mean": 0, "ci_low": 0, "ci_high": 0} for i in range(65)}),
            "has no metrics, or more than 64"),
    }
    home_b = second_home(tmp_path)
    with Catalog.open(home_b) as cat_b:
        before = snapshot(cat_b)
        for name, (change, expected) in cases.items():
            bad = _write(tmp_path / f"{name}.llmpkg", _with_manifest(members, change))
            final, _ = run_job(cat_b, "import-package", {"path": str(bad),
                                                         "allow_unsigned": True})
            assert isinstance(final, Error), name
            assert expected in final.message and "nothing was imported" in final.message, \
                (name, final.message)
            assert snapshot(cat_b) == before, name
        final, _ = run_job(cat_b, "import-package", {"path": str(pkg), "allow_unsigned": True})
        assert isinstance(final, Result), final


def test_a_package_without_runs_still_imports(home, catalog, demo_gguf, tmp_path) -> None:
    gguf = import_artifact(catalog, demo_gguf, "plain")
    pkg = tmp_path / "plain.llmpkg"
    llmops(home, "export", gguf.ref, "-o", str(pkg))
    with tarfile.open(pkg) as tar:
        assert json.load(tar.extractfile("manifest.json"))["artifacts"][0]["eval_runs"] == []
    members = _members(pkg)  # and one from before eval runs travelled (no key at all)
    old = _write(tmp_path / "old.llmpkg", _with_manifest(
        members, lambda m: m["artifacts"][0].pop("eval_runs")))
    out = llmops(second_home(tmp_path), "import", str(old), "--allow-unsigned").stdout
    assert "imported plain@1" in out and "evaluation runs" not in out


@pytest.fixture
def window_b(qtbot, tmp_path):
    """A window on a second home (closed and destroyed after the test, as tests/qt's)."""
    from tests.qt.windows import dispose, open_window

    win = open_window(qtbot, second_home(tmp_path))
    yield win
    dispose(win)


def test_the_evaluate_matrix_shows_a_carried_run_until_one_is_made_here(exported, tmp_path,
                                                                        window_b, qtbot) -> None:
    """On a suite with the same content (items, thresholds; here under another name), the
    Evaluate page's Results matrix lists the artifact with the figures it brought, marked as
    from the package and left out of Compare and the HTML report; once it is evaluated
    here, the run made here is the one shown and it can be compared."""
    from PySide6.QtCore import Qt

    from llmops_desktop.qt.eval_matrix import suite_matrix

    gguf, pkg, summary = exported
    home_b = second_home(tmp_path)
    llmops(home_b, "import", str(pkg), "--allow-unsigned")
    with Catalog.open(home_b) as cat_b:
        local = import_suite(cat_b, tmp_path / "arc.jsonl", name="arc-here",
                             thresholds=["acc>=0.0"])
        # a suite with other items, or other thresholds, shows nothing of it
        other = tmp_path / "other.jsonl"
        _write_jsonl(other, MC_ROWS[:3])
        assert suite_matrix(cat_b, import_suite(cat_b, other, name="arc-short").id) == ([], [])
        plain = import_suite(cat_b, tmp_path / "arc.jsonl", name="arc-plain")
        assert suite_matrix(cat_b, plain.id) == ([], [])

    page = window_b.show_page("evaluate")
    bar = page.tabs.tabBar()
    results = next(i for i in range(page.tabs.count()) if page.tabs.tabText(i) == "Results")
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.tabRect(results).center())
    assert page.tabs.currentIndex() == results
    page.results_suite.setCurrentIndex(page.results_suite.findData(local.id))  # the user's pick
    assert page.matrix.metrics == ["acc", "acc_norm"]
    [row] = page.rows
    assert (row["artifact"], row["run_id"], row["from_package"], row["items"]) == (
        gguf.ref, None, pkg.name, len(MC_ROWS))
    acc = summary["metrics"]["acc"]
    assert row["metrics"]["acc"] == pytest.approx(
        {"mean": acc["mean"], "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
         "n": len(MC_ROWS)})
    header = page.matrix.headerData(0, Qt.Orientation.Vertical)
    assert header == f"{gguf.ref} (package)"
    assert f"from the package {pkg.name}" in page.matrix.headerData(
        0, Qt.Orientation.Vertical, Qt.ItemDataRole.ToolTipRole)
    assert "not part of paired comparisons" in page.matrix.data(
        page.matrix.index(0, 0), Qt.ItemDataRole.ToolTipRole)
    assert page.results_status.text() == ("1 artifact with a finished run on arc-here@1 "
                                          "(1 measured elsewhere, from packages)")
    assert page.compare.a_combo.count() == 0  # nothing to pair it with
    assert page.csv_button.isEnabled() and not page.html_button.isEnabled()
    written = page.export_csv(str(tmp_path / "matrix.csv"))
    assert f"{gguf.ref},,acc,{acc['mean']}" in Path(written).read_text()

    with Catalog.open(home_b) as cat_b:
        result, _ = run_eval(cat_b, artifacts=[gguf.ref], suite="arc-here")
    page.load_matrix()
    [row] = page.rows
    assert row["run_id"] == result["runs"][0]["run_id"] and "from_package" not in row
    assert page.matrix.headerData(0, Qt.Orientation.Vertical) == gguf.ref
    assert page.compare.a_combo.currentText() == gguf.ref and page.html_button.isEnabled()
