"""The window as a user drives it: welcome, demo, import (dialog, drop), errors, filter and
sort, jobs and cancel, settings, remembered geometry, About. Offscreen, with real jobs."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QDropEvent  # noqa: E402

from llmops_desktop.catalog import Artifact, ArtifactFile, ArtifactState  # noqa: E402
from llmops_desktop.qt.main_window import MainWindow  # noqa: E402
from tests.qt.windows import dispose  # noqa: E402

JOB_TIMEOUT_MS = 90_000


def wait_job(qtbot, window: MainWindow, start) -> tuple[int, str]:
    """Run ``start()`` (which starts one job) and wait until that job finishes."""
    with qtbot.waitSignal(window.ctx.jobs.sig_job_started, timeout=10_000) as started:
        start()
    job_id = started.args[0]
    done = window.ctx.catalog.job(job_id)
    if not done.state.finished:
        with qtbot.waitSignal(window.ctx.jobs.sig_job_finished, timeout=JOB_TIMEOUT_MS,
                              check_params_cb=lambda jid, _state: jid == job_id) as finished:
            pass
        return job_id, finished.args[1]
    return job_id, done.state.value


def table_texts(page, column: int = 1) -> list[str]:
    proxy = page.proxy
    return [proxy.index(r, column).data() for r in range(proxy.rowCount())]


def wait_rows(qtbot, window: MainWindow, n: int) -> None:
    qtbot.waitUntil(lambda: window.models_page.model.rowCount() == n, timeout=10_000)


def test_empty_catalog_shows_welcome_then_demo_fills_table(qtbot, window):
    page = window.models_page
    assert page.stack.currentWidget() is page.welcome
    assert page.welcome.demo_button.isVisible()
    _, state = wait_job(qtbot, window,
                        lambda: qtbot.mouseClick(page.welcome.demo_button, Qt.MouseButton.LeftButton))
    assert state == "succeeded"
    wait_rows(qtbot, window, 1)
    assert page.stack.currentIndex() == 1
    assert table_texts(page) == ["demo-tiny-llama"]


def test_window_and_demo_job_keep_heavy_libraries_out_of_the_gui_process(home):
    """The window (in a fresh process: other tests load torch here) runs the demo job and
    shows its model without importing torch, transformers or llama.cpp itself."""
    import subprocess

    code = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from llmops_desktop.qt.app import create_application\n"
        "from llmops_desktop.qt.main_window import MainWindow\n"
        "from llmops_desktop.paths import Home\n"
        "app = create_application(); w = MainWindow(Home.resolve()); w.show()\n"
        "w.ctx.jobs.sig_job_finished.connect(lambda *a: QTimer.singleShot(500, app.quit))\n"
        "w.start_demo()\n"
        "QTimer.singleShot(120_000, app.quit)\n"
        "app.exec()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "               ('torch', 'transformers', 'llama_cpp', 'peft', 'bitsandbytes'))\n"
        "print('rows', w.models_page.model.rowCount(), 'heavy', heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180, env={**__import__("os").environ,
                                            "LLMOPS_HOME": str(home.root),
                                            "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr
    assert "rows 1 heavy []" in proc.stdout, proc.stdout + proc.stderr


def test_import_folder_through_dialog_shows_hashes_and_lineage(qtbot, window, demo_model_dir,
                                                               catalog):
    dialog = window.open_import_dialog("folder", str(demo_model_dir))
    dialog.name_edit.setText("my-llama")
    dialog.tags_edit.setText("gui, test")
    _, state = wait_job(qtbot, window, lambda: qtbot.mouseClick(dialog.import_button,
                                                                  Qt.MouseButton.LeftButton))
    assert state == "succeeded"
    wait_rows(qtbot, window, 1)
    artifact = catalog.resolve("my-llama")
    assert artifact.tags == ("gui", "test")
    page = window.models_page
    assert page.select_artifact(artifact.id)
    details = page.details
    expected = {f.relpath: f.sha256 for f in catalog.files(artifact.id)}
    assert "model.safetensors" in expected
    assert details.file_hashes() == expected
    assert details.lineage_texts() == [f"#{artifact.id} my-llama@1"]
    assert "LlamaForCausalLM" in table_texts(page, 4)


def test_drop_gguf_on_window_imports_it(qtbot, window, demo_gguf, catalog):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(demo_gguf))])

    def drop() -> None:
        event = QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, mime,
                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        window.dropEvent(event)
        assert event.isAccepted()

    _, state = wait_job(qtbot, window, drop)
    assert state == "succeeded"
    wait_rows(qtbot, window, 1)
    assert table_texts(window.models_page, 3) == ["gguf"]
    (artifact,) = catalog.artifacts()
    assert artifact.kind == "gguf"
    assert window.models_page.details.file_hashes() == {
        f.relpath: f.sha256 for f in catalog.files(artifact.id)}


def test_bad_import_shows_error_and_adds_nothing(qtbot, window, tmp_path, catalog):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    window.import_paths([empty])
    qtbot.waitUntil(lambda: "empty" in window.banner.text(), timeout=10_000)
    assert window.banner.isVisible()
    assert "Traceback" not in window.banner.text()
    dialog = window.open_import_dialog("folder", str(empty))
    with qtbot.waitSignal(dialog.sig_check_failed, timeout=10_000) as failed:
        qtbot.mouseClick(dialog.import_button, Qt.MouseButton.LeftButton)
    assert "nothing to import" in failed.args[0]
    assert dialog.isVisible() and "nothing to import" in dialog.error_label.text()
    dialog.reject()
    assert catalog.artifacts() == [] and catalog.jobs() == []
    assert window.models_page.stack.currentWidget() is window.models_page.welcome


def _fake_artifacts(n: int) -> list[Artifact]:
    kinds = ("hf", "gguf", "lora")
    return [Artifact(
        id=i, model_id=i, model_name=f"model-{i % 97}", version=i % 5 + 1, kind=kinds[i % 3],
        state=ArtifactState.READY, storage="copy", path=Path(f"/store/m{i}"),
        size_bytes=(i * 7919) % 100_003, parent_id=None, job_id=None, params={},
        metadata={"architecture": "LlamaForCausalLM", "parameters": i * 1000},
        source="", created_at="2025-01-01T00:00:00.000000Z", content_digest=str(i),
        tags=(f"tag{i % 7}",)) for i in range(1, n + 1)]


def test_filter_and_sort_through_proxy(qtbot, window, catalog):
    for i, (name, kind, size) in enumerate([("alpha", "hf", 300), ("beta", "gguf", 100),
                                            ("gamma", "gguf", 200)]):
        catalog.add_artifact(model_name=name, kind=kind, storage="reference",
                             path=Path(f"/nowhere/{name}"), tags=("t",) if i == 0 else (),
                             files=[ArtifactFile("w", size, f"{i:064x}")])
    window.refresh()
    wait_rows(qtbot, window, 3)
    page = window.models_page
    qtbot.keyClicks(page.filter_edit, "gguf")
    assert sorted(table_texts(page)) == ["beta", "gamma"]
    page.filter_edit.setText("gamma gguf")
    assert table_texts(page) == ["gamma"]
    page.filter_edit.clear()
    page.kind_combo.setCurrentIndex(page.kind_combo.findData("hf"))
    assert table_texts(page) == ["alpha"]
    page.kind_combo.setCurrentIndex(0)
    page.table.sortByColumn(7, Qt.SortOrder.DescendingOrder)  # size
    assert table_texts(page) == ["alpha", "gamma", "beta"]
    page.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
    assert table_texts(page) == ["alpha", "beta", "gamma"]
    page.filter_edit.setText("a")  # every name has an 'a': order kept under a filter
    page.table.sortByColumn(7, Qt.SortOrder.AscendingOrder)
    assert table_texts(page) == ["beta", "gamma", "alpha"]

    # 10,000 artifacts: filtering is right at scale (its speed: tests/bench/bench_gui.py).
    page.model.set_artifacts(_fake_artifacts(10_000))
    page.filter_edit.clear()
    for text in ("m", "mo", "model-1", "model-12", "model-1", "", "tag3"):
        page.proxy.set_filter_text(text)
    assert page.proxy.rowCount() == sum(1 for i in range(1, 10_001) if i % 7 == 3)


def _big_model_folder(root: Path, size: int) -> Path:
    folder = root / "big-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    header = json.dumps({"w": {"dtype": "U8", "shape": [size], "data_offsets": [0, size]}})
    header += " " * (-len(header) % 8)
    chunk = b"\x01" * (8 << 20)
    with open(folder / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header.encode())
        for _ in range(size // len(chunk)):
            fh.write(chunk)
    return folder


def test_jobs_page_lists_jobs_and_cancels_a_running_import(qtbot, window, tmp_path, catalog):
    folder = _big_model_folder(tmp_path, 1024 << 20)
    jobs_page = window.show_page("jobs")
    window.import_paths([folder])
    with qtbot.waitSignal(window.ctx.jobs.sig_job_progress, timeout=20_000) as progress:
        pass  # the child is running and reporting
    job_id = progress.args[0]
    assert jobs_page.select_job(job_id)
    assert jobs_page.cancel_button.isEnabled()
    with qtbot.waitSignal(window.ctx.jobs.sig_job_finished, timeout=30_000,
                          check_params_cb=lambda jid, _s: jid == job_id) as finished:
        qtbot.mouseClick(jobs_page.cancel_button, Qt.MouseButton.LeftButton)
    assert finished.args[1] == "cancelled"
    assert catalog.job(job_id).state.value == "cancelled"
    assert catalog.artifacts() == []
    qtbot.waitUntil(lambda: "cancelled" in jobs_page.model.index(0, 3).data(), timeout=5000)
    assert jobs_page.model.index(0, 0).data() == str(job_id)
    qtbot.waitUntil(lambda: "started" in jobs_page.log_view.toPlainText(), timeout=5000)
    assert "No jobs running" in window.jobs_status.text()
    assert not any(p.name.startswith("job-") for p in catalog.home.staging_dir.iterdir())


def test_settings_round_trip(qtbot, window, home):
    from llmops_desktop.settings import load_settings

    page = window.show_page("settings")
    assert str(home.root) == page.home_edit.text()
    assert page.editors["default_threads"].toolTip().startswith("CPU threads")
    page.editors["default_threads"].setValue(3)
    page.editors["offline"].setChecked(False)
    page.editors["import_mode"].setCurrentText("reference")
    page.editors["hf_cache_dir"].setText(str(home.root / "hf"))
    assert page.save()
    saved = load_settings(home.settings_path)
    assert (saved.default_threads, saved.offline, saved.import_mode) == (3, False, "reference")
    assert saved.hf_cache_dir == str(home.root / "hf")
    page.editors["default_threads"].setValue(5)
    page.load()  # revert shows what is on disk
    assert page.editors["default_threads"].value() == 3


def test_geometry_and_last_page_remembered(qtbot, home):
    first = MainWindow(home)
    qtbot.addWidget(first)
    first.show()
    first.resize(780, 560)
    first.show_page("settings")
    dispose(first)
    second = MainWindow(home)
    qtbot.addWidget(second)
    second.show()
    assert second.current_page_id() == "settings"
    assert (second.width(), second.height()) == (780, 560)
    dispose(second)


def test_about_box_names_versions(qtbot, window):
    from importlib.metadata import version

    from PySide6.QtCore import qVersion

    from llmops_desktop import __version__

    box = window.show_about()
    text = box.text()
    for expected in (__version__, qVersion(), version("torch"), version("llama-cpp-python")):
        assert expected in text
    assert "llama.cpp" in text and "PyTorch" in text
    box.accept()
