"""The Download page against a real hub: the app's own mirror, serving a separate data home,
wrapped in a fault injector (throttling for pause/resume). Offscreen, with real jobs."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from hub_faults import Faults, free_port, serve_home  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402

from llmops_desktop.acquire.download import list_partial_downloads  # noqa: E402
from llmops_desktop.catalog import ArtifactState, Catalog  # noqa: E402
from llmops_desktop.importer import import_model, inspect_source  # noqa: E402
from llmops_desktop.paths import Home  # noqa: E402
from llmops_desktop.qt.main_window import MainWindow  # noqa: E402
from llmops_desktop.qt.pages.download import DownloadPage  # noqa: E402
from llmops_desktop.secrets import get_secret, set_secret  # noqa: E402
from llmops_desktop.settings import Settings, save_settings  # noqa: E402
from tests.qt.windows import dispose  # noqa: E402

JOB_TIMEOUT_MS = 60_000
TOKEN = "hf_TestTokenValue0123456789"
BIG_SIZE = 8 << 20  # eight 1 MiB response chunks: progress arrives in steps
TINY_FILES = {"README.md", "chat_template.jinja", "config.json", "generation_config.json",
              "model.safetensors", "tokenizer.json", "tokenizer.model", "tokenizer_config.json"}


def _big_model_folder(root: Path) -> Path:
    folder = root / "big-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    header = json.dumps({"w": {"dtype": "U8", "shape": [BIG_SIZE],
                               "data_offsets": [0, BIG_SIZE]}})
    header += " " * (-len(header) % 8)
    with open(folder / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header.encode())
        fh.write(bytes(range(256)) * (BIG_SIZE // 256))
    return folder


def _demo_model_folder(root: Path) -> Path:
    """The demo model, made in a child process: this process stays free of torch, which
    test_gui checks the window never loads."""
    dest = root / "demo-tiny-llama"
    subprocess.run([sys.executable, "-c", "import sys, pathlib; from llmops_desktop.demo import "
                    "make_demo_model; make_demo_model(pathlib.Path(sys.argv[1]))", str(dest)],
                   check=True, capture_output=True)
    return dest


@pytest.fixture(scope="module")
def source_home(tmp_path_factory) -> Home:
    """A data home (not the test's) holding acme/tiny-llama and acme/big-llama, to serve."""
    root = tmp_path_factory.mktemp("hub")
    src = Home.resolve(root / "home")
    with Catalog.open(src) as catalog:
        for path, name in ((_demo_model_folder(root), "acme/tiny-llama"),
                           (_big_model_folder(root), "acme/big-llama")):
            for _ in import_model(catalog, inspect_source(path, name=name),
                                  staging=src.job_staging_dir(0)):
                pass
    return src


@pytest.fixture
def hub(source_home):
    faults = Faults()
    server = serve_home(source_home.root, faults)
    yield server, faults
    server.stop()


def open_window(qtbot, home: Home, **settings) -> tuple[MainWindow, DownloadPage]:
    save_settings(home.settings_path, Settings().updated(**settings))
    win = MainWindow(home)
    qtbot.addWidget(win)
    win.show()
    page = win.show_page("download")
    assert isinstance(page, DownloadPage)
    return win, page


@pytest.fixture
def online(qtbot, home, hub):
    server, faults = hub
    win, page = open_window(qtbot, home, offline=False, hf_endpoint=server.url)
    yield win, page, faults
    dispose(win)


def open_repo(qtbot, page: DownloadPage, repo_id: str) -> None:
    with qtbot.waitSignal(page.sig_repo_opened, timeout=10_000):
        assert page.open_repo(repo_id)


def wait_job(qtbot, win: MainWindow, start) -> tuple[int, str]:
    """Run ``start()`` (which starts one job) and wait until that job finishes."""
    with qtbot.waitSignal(win.ctx.jobs.sig_job_started, timeout=10_000) as started:
        start()
    job_id = started.args[0]
    done = win.ctx.catalog.job(job_id)
    if done.state.finished:
        return job_id, done.state.value
    with qtbot.waitSignal(win.ctx.jobs.sig_job_finished, timeout=JOB_TIMEOUT_MS,
                          check_params_cb=lambda jid, _state: jid == job_id) as finished:
        pass
    return job_id, finished.args[1]


def test_search_open_and_errors_inline(qtbot, online):
    _, page, _ = online
    with qtbot.waitSignal(page.sig_search_finished, timeout=10_000) as found:
        qtbot.keyClicks(page.search_edit, "tiny")
        qtbot.keyClick(page.search_edit, Qt.Key.Key_Return)
    assert found.args == [1]
    item = page.results.topLevelItem(0)
    assert item.text(0) == "acme/tiny-llama"
    with qtbot.waitSignal(page.sig_repo_opened, timeout=10_000):
        page.results.setCurrentItem(item)  # clicking a result opens it
    sizes = page.file_sizes()
    assert set(sizes) == TINY_FILES
    assert sizes["model.safetensors"] == "560.5 KB" and sizes["config.json"] == "717 B"
    assert set(page.checked_paths()) == TINY_FILES  # one GGUF or none: all ticked
    assert page.repo_panel.selection_label.text().startswith("8 of 8 files · 589.5 KB")
    panel = page.repo_panel
    assert "acme/tiny-llama" in panel.repo_title.text() and "commit" in panel.repo_info.text()

    with qtbot.waitSignal(page.sig_lookup_failed, timeout=10_000) as failed:
        page.open_repo("acme/nope")
    assert "acme/nope" in failed.args[0] and page.error_label.isVisible()
    assert "Traceback" not in page.error_label.text()
    assert page.snapshot is None and not page.repo_panel.download_button.isEnabled()


def test_download_chosen_files_only(qtbot, online, catalog, home):
    win, page, faults = online
    set_secret(home, "hf_token", TOKEN)  # sent to the hub, kept out of params, logs, catalog
    open_repo(qtbot, page, "acme/tiny-llama")
    chosen = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    page.set_checked(chosen)
    assert page.repo_panel.selection_label.text().startswith("4 of 8 files")
    page.repo_panel.name_edit.setText("tiny-dl")
    job_id, state = wait_job(qtbot, win, lambda: qtbot.mouseClick(
        page.repo_panel.download_button, Qt.MouseButton.LeftButton))
    assert state == "succeeded", catalog.job(job_id).error
    (entry,) = page.entries.values()
    job = catalog.job(job_id)
    artifact = catalog.resolve("tiny-dl")
    assert TOKEN not in json.dumps(job.params) + job.log_path.read_text()
    assert TOKEN not in json.dumps(artifact.metadata) + json.dumps(artifact.params)
    assert artifact.state is ArtifactState.READY
    assert {f.relpath for f in catalog.files(artifact.id)} == set(chosen)
    assert sorted(path for path, _ in faults.range_starts) == sorted(chosen)
    row = page.rows[entry.key]
    assert entry.state == "done" and "tiny-dl" in row.status.text()
    assert row.buttons["show"].isVisibleTo(row)
    qtbot.mouseClick(row.buttons["show"], Qt.MouseButton.LeftButton)
    assert win.current_page_id() == "models"
    qtbot.waitUntil(lambda: (a := win.models_page.selected_artifact()) is not None
                    and a.id == artifact.id, timeout=10_000)


def _start_throttled(qtbot, page: DownloadPage, faults: Faults):
    faults.bytes_per_second = 1 << 20  # 8 MiB in about 8 s: time to pause mid-file
    open_repo(qtbot, page, "acme/big-llama")
    entry = page.start_download()
    assert entry is not None
    row = page.rows[entry.key]
    qtbot.waitUntil(lambda: "model.safetensors · 2 of 2 ·" in row.file_label.text()
                    and "left" in row.total_label.text(), timeout=20_000)
    return entry, row


def test_pause_then_resume_completes(qtbot, online, catalog, home):
    win, page, faults = online
    entry, row = _start_throttled(qtbot, page, faults)
    assert row.file_label.isVisibleTo(row) and row.file_bar.isVisibleTo(row)
    assert "B/s · " in row.total_label.text() and " of 8.4 MB" in row.total_label.text()
    with qtbot.waitSignal(win.ctx.jobs.sig_job_finished, timeout=30_000) as paused:
        qtbot.mouseClick(row.buttons["pause"], Qt.MouseButton.LeftButton)
    assert paused.args == [entry.job_id, "cancelled"] and entry.state == "paused"
    (partial,) = list_partial_downloads(home)
    assert partial.key == entry.key and 0 < partial.bytes_on_disk < partial.total_bytes
    assert row.buttons["resume"].isVisibleTo(row) and not row.buttons["pause"].isVisibleTo(row)
    assert catalog.artifacts() == []

    faults.bytes_per_second = None
    job_id, state = wait_job(qtbot, win, lambda: qtbot.mouseClick(row.buttons["resume"],
                                                                  Qt.MouseButton.LeftButton))
    assert state == "succeeded", catalog.job(job_id).error
    assert entry.state == "done"
    starts = [start for path, start in faults.range_starts if path == "model.safetensors"]
    assert starts[0] == 0 and starts[-1] > 0  # the second job continued with a Range request
    assert catalog.resolve("acme/big-llama").state is ArtifactState.READY
    assert list_partial_downloads(home) == []


def test_cancel_deletes_partial_files(qtbot, online, catalog, home):
    win, page, faults = online
    entry, row = _start_throttled(qtbot, page, faults)
    with qtbot.waitSignal(page.sig_downloads_changed, timeout=30_000,
                          check_params_cb=lambda: entry.key not in page.rows):
        qtbot.mouseClick(row.buttons["cancel"], Qt.MouseButton.LeftButton)
    assert catalog.job(entry.job_id).state.value == "cancelled"
    assert list_partial_downloads(home) == [] and catalog.artifacts() == []
    assert page.no_downloads.isVisibleTo(page)


def test_paused_download_from_disk_is_listed_and_resumes(qtbot, hub, home, catalog):
    """A download stopped by an earlier window (or the CLI) shows up with Resume."""
    server, faults = hub
    win, page = open_window(qtbot, home, offline=False, hf_endpoint=server.url)
    try:
        entry, row = _start_throttled(qtbot, page, faults)
        with qtbot.waitSignal(win.ctx.jobs.sig_job_finished, timeout=30_000):
            page.row_action(entry.key, "pause")
    finally:
        dispose(win)
    faults.bytes_per_second = None
    win, page = open_window(qtbot, home, offline=False, hf_endpoint=server.url)
    try:
        qtbot.waitUntil(lambda: entry.key in page.rows, timeout=10_000)
        again = page.entries[entry.key]
        assert again.state == "paused" and again.params["repo_id"] == "acme/big-llama"
        assert "Resume" in page.rows[entry.key].status.text()
        _, state = wait_job(qtbot, win, lambda: page.row_action(entry.key, "resume"))
        assert state == "succeeded"
        assert catalog.resolve("acme/big-llama").state is ArtifactState.READY
    finally:
        dispose(win)


def test_offline_says_so_and_makes_no_request(qtbot, hub, home, catalog, caplog):
    server, faults = hub
    caplog.set_level(logging.INFO, logger="llmops_desktop.mirror")
    win, page = open_window(qtbot, home, offline=True, hf_endpoint=server.url)
    try:
        assert page.offline_box.isVisible() and "Offline is on" in page.offline_label.text()
        assert not page.search_button.isEnabled() and not page.open_button.isEnabled()
        assert not page.search("tiny") and not page.open_repo("acme/tiny-llama")
        assert page.start_download() is None
        assert "Offline is on" in page.error_label.text()
        assert [r for r in caplog.records if "GET" in r.getMessage()] == []
        assert faults.range_starts == [] and catalog.jobs() == []

        settings_page = win.pages["settings"]
        page.set_offline(False)  # what "Go online…" does after its confirmation
        assert not page.offline_box.isVisible() and page.search_button.isEnabled()
        assert not settings_page.editors["offline"].isChecked()  # the form follows
        with qtbot.waitSignal(page.sig_search_finished, timeout=10_000):
            page.search("llama")
        assert any("/api/models" in r.getMessage() for r in caplog.records)
    finally:
        dispose(win)


def test_tokens_are_secrets_not_settings(qtbot, home):
    win, _ = open_window(qtbot, home)
    try:
        page = win.show_page("settings")
        editor = page.secret_editors["hf_token"]
        assert editor.echoMode() == editor.EchoMode.Password
        editor.setText("hf_secret_value_1234")
        page.secret_editors["mirror_token"].setText("team-token-5678")
        assert page.is_modified() and page.save()
        assert get_secret(home, "hf_token") == "hf_secret_value_1234"
        assert get_secret(home, "mirror_token") == "team-token-5678"
        assert "secret_value" not in home.settings_path.read_text()
        download = win.download_page
        assert "****1234" in download.hub_label.text()
        assert "secret_value" not in download.hub_label.text()
    finally:
        dispose(win)


def test_mirror_toggle_serves_and_stops(qtbot, home):
    port = free_port()
    win, page = open_window(qtbot, home, mirror_port=port)
    box = page.mirror_box
    try:
        with qtbot.waitSignal(page.mirror.sig_started, timeout=30_000) as started:
            qtbot.mouseClick(box.toggle, Qt.MouseButton.LeftButton)
        url = f"http://127.0.0.1:{port}"
        assert started.args == [url] and box.url_edit.text() == f"HF_ENDPOINT={url}"
        assert win.mirror_status.isVisible() and str(port) in win.mirror_status.text()
        with urllib.request.urlopen(f"{url}/api/models", timeout=10) as resp:
            assert resp.status == 200 and json.loads(resp.read()) == []
        qtbot.waitUntil(lambda: box.requests.count() > 0, timeout=10_000)
        assert "GET /api/models 200" in box.requests.item(box.requests.count() - 1).text()
        with qtbot.waitSignal(page.mirror.sig_stopped, timeout=15_000) as stopped:
            qtbot.mouseClick(box.toggle, Qt.MouseButton.LeftButton)
        assert stopped.args == [""] and not win.mirror_status.isVisible()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"{url}/api/models", timeout=5)

        # Beyond this machine without a token: the mirror refuses, and the page says why.
        win.ctx.settings = win.ctx.settings.updated(mirror_host="0.0.0.0")
        with qtbot.waitSignal(page.mirror.sig_stopped, timeout=30_000) as refused:
            qtbot.mouseClick(box.toggle, Qt.MouseButton.LeftButton)
        assert "without a token" in refused.args[0]
        assert box.error_label.isVisible() and "without a token" in box.error_label.text()
        assert box.toggle.text() == "Start sharing" and not win.mirror_status.isVisible()
    finally:
        dispose(win)
