"""The Quantize dialog and the Variants tab as a user drives them, with real quantize jobs:
estimates before the start, per-tensor progress, perplexity and lineage after, the
confirmation a GGUF needs to go up in precision, and cancel. Offscreen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from llmops_desktop.catalog import Artifact, Catalog  # noqa: E402
from llmops_desktop.qt.main_window import MainWindow  # noqa: E402
from llmops_desktop.qt.quantize_dialog import QuantizeDialog  # noqa: E402

JOB_TIMEOUT_MS = 90_000


@pytest.fixture(scope="session")
def q4_gguf_session(demo_gguf_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model as a Q4_K_M GGUF (quantized in a child: llama_cpp stays out of here)."""
    out = tmp_path_factory.mktemp("q4") / "demo-Q4_K_M.gguf"
    code = ("import sys; from pathlib import Path; "
            "from llmops_desktop.quantize.llama_quant import quantize_gguf; "
            "list(quantize_gguf(Path(sys.argv[1]), Path(sys.argv[2]), 'Q4_K_M', threads=2))")
    subprocess.run([sys.executable, "-c", code, str(demo_gguf_session), str(out)], check=True,
                   capture_output=True)
    return out


def add_to_catalog(catalog: Catalog, path: Path, name: str) -> Artifact:
    from llmops_desktop.importer import import_model, inspect_source

    source = inspect_source(path, name=name)
    for _ in import_model(catalog, source, staging=catalog.home.staging_dir / "test-import"):
        pass
    return catalog.resolve(name)


def open_dialog(qtbot, window: MainWindow, artifact: Artifact) -> QuantizeDialog:
    """Select the artifact on the Models page and open its Quantize dialog from the action
    (the context menu, the Model menu and the toolbar all use it)."""
    page = window.models_page
    window.refresh()
    qtbot.waitUntil(lambda: page.select_artifact(artifact.id), timeout=10_000)
    assert page.act_quantize.isEnabled()
    page.act_quantize.trigger()
    dialog = page._quantize_dialogs[artifact.id]
    qtbot.waitUntil(lambda: dialog.free_bytes is not None, timeout=10_000)  # probed
    assert dialog.isVisible() and not dialog.isModal()
    return dialog


def test_quantize_dialog_makes_variants_with_perplexity(qtbot, window, catalog, demo_model_dir,
                                                        monkeypatch):
    import llmops_desktop.quantize.bnb as bnb

    no_gpu = "No CUDA GPU is usable here (no NVIDIA driver, or torch was built without CUDA)."
    monkeypatch.setattr(bnb, "bnb_support",
                        lambda folder, mode, **_: None if mode == "bnb-int8" else no_gpu)
    parent = add_to_catalog(catalog, demo_model_dir, "demo")
    page = window.models_page
    assert page.act_quantize.shortcut().toString() == "Ctrl+Shift+Q"
    assert page.act_quantize in page.model_actions  # context menu and Model menu
    dialog = open_dialog(qtbot, window, parent)
    details = page.details
    details.show_variants()  # open on the parent, before any variant exists
    assert details.variants.table_texts()[0][0] == "float32"
    assert details.variants.chart_stack.currentWidget() is details.variants.hint
    assert details.variants.plot is None  # no chart (nor pyqtgraph) until there is a point

    # What each target costs is on screen before anything starts.
    estimates = dialog.estimates()
    assert {"Q8_0", "Q4_K_M", "F16", "bnb-nf4"} <= set(estimates)
    for target in ("Q8_0", "Q4_K_M"):
        size, memory = estimates[target]
        assert size.endswith("KB") and memory.endswith("MB")
    # bitsandbytes modes this machine cannot do are disabled, with the reason in view.
    assert not dialog.is_available("bnb-nf4") and dialog.is_available("bnb-int8")
    nf4 = dialog.target_item("bnb-nf4")
    assert nf4.text(4) == no_gpu and nf4.toolTip(0) == no_gpu
    assert not dialog.start_button.isEnabled()  # nothing ticked yet

    dialog.set_checked(["Q8_0", "Q4_K_M"])
    dialog.keep_check.setChecked(True)
    assert dialog.checked_targets() == ["Q8_0", "Q4_K_M"]
    assert "2 variants" in dialog.totals_label.text()
    assert "F16 intermediate" in dialog.totals_label.text()
    assert "free" in dialog.totals_label.text()

    stages: list[str] = []
    window.ctx.jobs.sig_job_progress_event.connect(
        lambda *_: stages.append(f"{dialog.stage_label.text()} | {dialog.tensor_label.text()}"))
    with qtbot.waitSignal(dialog.sig_started, timeout=10_000) as started:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    job_id = started.args[0]
    assert catalog.job(job_id).params["targets"] == ["Q8_0", "Q4_K_M"]
    assert dialog.progress_box.isVisible() and dialog.cancel_button.isVisible()
    with qtbot.waitSignal(dialog.sig_finished, timeout=JOB_TIMEOUT_MS) as finished:
        pass
    assert finished.args == [job_id, "succeeded"], dialog.error_label.text()
    # Tensor-by-tensor progress, named, for the converter and the quantizer.
    assert any(s.startswith("Converting") and "tensor 1 of " in s for s in stages), stages
    assert any(s.startswith("Quantizing to Q4_K_M") and "tensor 1 of " in s for s in stages), stages

    # The catalog: children with lineage, tool versions and perplexity.
    children = {a.params["target"]: a for a in catalog.descendants(parent.id)}
    assert set(children) == {"F16", "Q8_0", "Q4_K_M"}
    assert children["Q8_0"].parent_id == parent.id and children["F16"].parent_id == parent.id
    assert children["Q4_K_M"].parent_id == children["F16"].id
    for child in children.values():
        assert child.params["llama_cpp"] and child.params["llama_cpp_python"]
        assert child.job_id == job_id
    assert children["Q4_K_M"].params["method"] == "llama_model_quantize"
    assert children["Q4_K_M"].params["threads"] == window.ctx.settings.default_threads
    for a in (parent, *children.values()):
        (ppl,) = [e for e in catalog.evaluations(a.id) if e.metric == "perplexity"]
        assert ppl.value > 1 and ppl.dataset == "heldout-en.txt"

    # The dialog lists what it made, with perplexity and the change against the parent.
    results = {row[0]: row for row in dialog.results_texts()}
    assert set(results) == {"float32", "F16", "Q8_0", "Q4_K_M"}
    assert results["float32"][4] == "base"
    for target in ("Q8_0", "Q4_K_M"):
        assert results[target][3] != "—" and results[target][4].endswith("%")
        assert results[target][5] != "—" and results[target][6].endswith("%")  # KL, top-1
        assert results[target][-1] == children[target].ref

    # The parent's Variants tab, open all along, refreshed with the same rows and a chart.
    qtbot.waitUntil(lambda: len(details.variants.table_texts()) == 4, timeout=10_000)
    details.tabs.setCurrentIndex(0)
    qtbot.mouseClick(dialog.show_variants_button, Qt.MouseButton.LeftButton)
    assert details.tabs.currentIndex() == details.variants_tab
    rows = {row[0]: row for row in details.variants.table_texts()}
    assert rows["Q4_K_M"][3:5] == results["Q4_K_M"][3:5]
    assert details.variants.plot is not None and "pyqtgraph" in sys.modules
    assert details.variants.chart_stack.currentWidget() is details.variants.plot
    # A child's overview names how it was made.
    qtbot.waitUntil(lambda: page.select_artifact(children["Q4_K_M"].id), timeout=10_000)
    details.tabs.setCurrentIndex(0)
    overview = {details.form.itemAt(r, details.form.ItemRole.LabelRole).widget().text():
                details.form.itemAt(r, details.form.ItemRole.FieldRole).widget().text()
                for r in range(details.form.rowCount())}
    assert overview["Made as:"] == "Q4_K_M" and overview["Made from:"] == "F16"
    assert overview["llama.cpp:"] == children["Q4_K_M"].params["llama_cpp"]
    assert overview["Perplexity:"].startswith(results["Q4_K_M"][3])


def test_gguf_to_higher_precision_asks_first(qtbot, window, catalog, q4_gguf_session, tmp_path):
    gguf = tmp_path / q4_gguf_session.name
    gguf.write_bytes(q4_gguf_session.read_bytes())
    parent = add_to_catalog(catalog, gguf, "demo-q4")
    assert parent.metadata["quantization"] == "Q4_K_M"
    dialog = open_dialog(qtbot, window, parent)
    assert "bnb-int8" not in dialog.target_names()  # a GGUF takes GGUF targets only
    assert not dialog.keep_check.isEnabled()
    assert "confirm" in dialog.target_item("Q8_0").text(4)

    dialog.set_checked(["Q8_0"])
    with qtbot.waitSignal(dialog.sig_confirmation_requested, timeout=5000) as asked:
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert "already quantized to Q4_K_M" in asked.args[0]
    assert dialog.confirm_box.isVisible() and "Quantize anyway" in dialog.confirm_label.text()
    assert catalog.jobs() == [] and dialog.job_id is None  # nothing started

    with qtbot.waitSignal(dialog.sig_started, timeout=10_000) as started:
        qtbot.mouseClick(dialog.confirm_button, Qt.MouseButton.LeftButton)
    assert catalog.job(started.args[0]).params["force"] is True
    with qtbot.waitSignal(dialog.sig_finished, timeout=JOB_TIMEOUT_MS) as finished:
        pass
    assert finished.args[1] == "succeeded", dialog.error_label.text()
    (child,) = catalog.children(parent.id)
    assert child.params["target"] == "Q8_0" and child.params["from_quantization"] == "Q4_K_M"
    assert [row[0] for row in dialog.results_texts()] == ["Q4_K_M", "Q8_0"]


def converters_of(model_dir: Path) -> list[object]:
    """llama.cpp converter processes still reading ``model_dir``."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if str(model_dir) in cmdline and "--outtype" in cmdline:
            found.append(proc)
    return found


def test_cancel_during_the_run_keeps_nothing(qtbot, window, catalog, demo_model_dir):
    parent = add_to_catalog(catalog, demo_model_dir, "demo")
    dialog = open_dialog(qtbot, window, parent)
    dialog.set_checked(["Q4_K_M"])
    with qtbot.waitSignal(window.ctx.jobs.sig_job_progress_event, timeout=JOB_TIMEOUT_MS,
                          check_params_cb=lambda _jid, ev: ev.unit == "tensors"):
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert dialog.stage_label.text().startswith("Converting")  # the converter is at work
    assert converters_of(parent.path)
    job_id = dialog.job_id
    with qtbot.waitSignal(dialog.sig_finished, timeout=30_000) as finished:
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
        assert dialog.cancel_button.text() == "Cancelling…"
    assert finished.args == [job_id, "cancelled"]
    assert [a.id for a in catalog.artifacts()] == [parent.id]
    assert "Nothing from this run was kept" in dialog.stage_label.text()
    assert not dialog.results_box.isVisible() and dialog.back_button.isVisible()
    assert not any(p.name.startswith("job-") for p in catalog.home.staging_dir.iterdir())
    qtbot.waitUntil(lambda: not converters_of(parent.path), timeout=10_000)


def test_window_opens_without_pyqtgraph(home):
    code = ("import sys\n"
            "from llmops_desktop.qt.app import create_application\n"
            "from llmops_desktop.qt.main_window import MainWindow\n"
            "app = create_application()\n"
            "w = MainWindow()\n"
            "w.show(); app.processEvents()\n"
            "print('pyqtgraph' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
