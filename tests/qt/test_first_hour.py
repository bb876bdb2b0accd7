"""The first hour, as a person drives the window: mouse clicks on the rows' rectangles,
right-clicks for the context menu, key presses. No page method is called to select or act."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QObject, QPoint, Qt, QTimer, QUrl, Slot  # noqa: E402
from PySide6.QtGui import QContextMenuEvent, QDesktopServices, QGuiApplication  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import (  # noqa: E402
    QApplication,
    QDialogButtonBox,
    QFileDialog,
    QLineEdit,
    QMenu,
    QMessageBox,
    QTableWidget,
    QTextBrowser,
)

from llmops_desktop.catalog import ArtifactFile  # noqa: E402
from llmops_desktop.qt.main_window import MainWindow  # noqa: E402

LONG = "/srv/models/" + "/".join(f"a-rather-long-folder-name-{i}" for i in range(8))


@pytest.fixture
def three(catalog) -> dict[str, int]:
    """An HF model (the root) and two GGUF files, one made from it."""
    ids = {}
    root = catalog.add_artifact(model_name="alpha", kind="hf", storage="reference",
                                path=Path(f"{LONG}/alpha"), license="apache-2.0",
                                params={"mode": "reference"},
                                metadata={"license": "apache-2.0", "architecture": "Llama"},
                                files=[ArtifactFile("model.safetensors", 3000, "1" * 64)])
    ids["alpha"] = root.id
    ids["beta"] = catalog.add_artifact(
        model_name="beta", kind="gguf", storage="reference", path=Path(f"{LONG}/beta.gguf"),
        parent_id=root.id, files=[ArtifactFile("beta.gguf", 1000, "2" * 64)]).id
    ids["gamma"] = catalog.add_artifact(
        model_name="gamma", kind="gguf", storage="reference", path=Path(f"{LONG}/gamma.gguf"),
        files=[ArtifactFile("gamma.gguf", 2000, "3" * 64)]).id
    return ids


def _open(qtbot, home) -> MainWindow:
    from tests.qt.windows import open_window

    win = open_window(qtbot, home)
    win.resize(1280, 800)
    win.show_page("models")
    win.activateWindow()  # keyboard shortcuts go to the active window
    qtbot.waitUntil(lambda: QApplication.activeWindow() is win, timeout=5000)
    qtbot.waitUntil(lambda: win.models_page.model.rowCount() == 3, timeout=10_000)
    return win


def _row_point(page, name: str) -> QPoint:
    proxy = page.proxy
    row = next(r for r in range(proxy.rowCount()) if proxy.index(r, 1).data() == name)
    rect = page.table.visualRect(proxy.index(row, 1))
    assert rect.isValid() and not rect.isEmpty()
    return rect.center()


def click_row(page, name: str, button=Qt.MouseButton.LeftButton) -> None:
    QTest.mouseClick(page.table.viewport(), button, Qt.KeyboardModifier.NoModifier,
                     _row_point(page, name))


def right_click_row(qtbot, page, name: str) -> QMenu:
    """Right-click a row; the context menu that pops up."""
    viewport = page.table.viewport()
    point = _row_point(page, name)
    QTest.mouseClick(viewport, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, point)
    # The window system follows a right-click with a context-menu event; QTest's synthetic
    # clicks do not, so send the one a real click brings.
    QApplication.sendEvent(viewport, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, point,
                                                       viewport.mapToGlobal(point)))
    qtbot.waitUntil(lambda: isinstance(QApplication.activePopupWidget(), QMenu), timeout=5000)
    return QApplication.activePopupWidget()


def click_menu_item(menu: QMenu, text: str) -> None:
    action = next(a for a in menu.actions() if a.text().replace("&", "") == text)
    assert action.isEnabled(), f"{text} is greyed out"
    QTest.mouseClick(menu, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     menu.actionGeometry(action).center())


def model_menu(win: MainWindow) -> QMenu:
    return next(a.menu() for a in win.menuBar().actions() if a.text() == "&Model")


def test_a_click_selects_the_model_for_every_action(qtbot, home, three):
    win = _open(qtbot, home)
    page = win.models_page
    for name in ("gamma", "alpha", "beta"):
        click_row(page, name)
        assert page.details.title.text() == f"{name} v1"
        # Toolbar, Model menu and the details' buttons follow the clicked row.
        assert page.quantize_button.isEnabled()
        menu = {a.text().replace("&", ""): a for a in model_menu(win).actions()}
        for label in ("Quantize…", "Export…", "Tag…", "Remove…", "Copy path"):
            assert menu[label].isEnabled(), f"{label} greyed out after a click on {name}"
        # Fine-tune is offered for the HF model and a GGUF made from it, not for a GGUF
        # with no Hugging Face model behind it (issue #16 item 6).
        assert menu["Fine-tune…"].isEnabled() == (name != "gamma")
        assert menu["Serve…"].isEnabled() == (name != "alpha" or page.act_serve.isEnabled())
        assert page.details.serve_button.isVisible() and page.details.serve_button.isEnabled()


def test_the_context_menu_acts_on_the_row_under_the_pointer(qtbot, home, three, catalog):
    win = _open(qtbot, home)
    page = win.models_page
    click_row(page, "alpha")
    menu = right_click_row(qtbot, page, "gamma")
    texts = {a.text(): a.isEnabled() for a in menu.actions() if a.text()}
    assert all(texts[t] for t in ("Quantize…", "Serve…", "Export…", "Tag…", "Remove…"))
    click_menu_item(menu, "Copy path")
    assert QGuiApplication.clipboard().text() == str(catalog.artifact(three["gamma"]).path)
    assert page.details.title.text() == "gamma v1"

    # Serve from the context menu of another row opens Deployments with that row's model.
    menu = right_click_row(qtbot, page, "beta")
    click_menu_item(menu, "Serve…")
    assert win.current_page_id() == "deployments"
    assert win.deployments_page.artifact_combo.currentData() == three["beta"]


def test_serve_is_a_button_on_the_details(qtbot, home, three):
    win = _open(qtbot, home)
    page = win.models_page
    click_row(page, "gamma")
    assert not page.details.chat_button.isEnabled()  # nothing serves it yet
    qtbot.mouseClick(page.details.serve_button, Qt.MouseButton.LeftButton)
    assert win.current_page_id() == "deployments"
    assert win.deployments_page.artifact_combo.currentData() == three["gamma"]


def test_a_filter_that_hides_the_selection_clears_the_details(qtbot, home, three):
    win = _open(qtbot, home)
    page = win.models_page
    click_row(page, "beta")
    assert page.details.title.text() == "beta v1"
    page.filter_edit.setFocus()
    QTest.keyClicks(page.filter_edit, "gamm")
    assert page.proxy.rowCount() == 1
    assert page.details.title.text() == "No model selected"
    assert not page.act_serve.isEnabled() and not page.details.serve_button.isEnabled()
    click_row(page, "gamma")
    assert page.details.title.text() == "gamma v1" and page.act_serve.isEnabled()


def test_details_show_each_fact_once_and_never_clip_a_path(qtbot, home, three):
    win = _open(qtbot, home)
    page = win.models_page
    click_row(page, "alpha")
    rows = page.details.overview_rows()
    labels = [label for label, _ in rows]
    assert len(labels) == len(set(labels)), labels
    assert "Storage" not in labels and labels.count("Stored as") == 1
    assert [text for _, text in rows].count("apache-2.0") == 1
    form = page.details.form
    path_label = next(form.itemAt(r, form.ItemRole.FieldRole).widget()
                      for r in range(form.rowCount())
                      if form.itemAt(r, form.ItemRole.LabelRole).widget().text() == "Path:")
    assert path_label.toolTip() == f"{LONG}/alpha"
    shown = path_label.text()
    assert "…" in shown and shown.endswith("/alpha") and shown.startswith("/srv/")
    assert path_label.fontMetrics().horizontalAdvance(shown) <= path_label.width()


def test_a_variant_never_calls_itself_base(qtbot, home, three, catalog):
    for name, ppl in (("alpha", 12.0), ("beta", 12.6)):
        catalog.add_evaluation(three[name], "perplexity", ppl, dataset="held-out",
                               dataset_sha256="9" * 64)
    win = _open(qtbot, home)
    page = win.models_page
    for name, says_base in (("alpha", True), ("beta", False)):
        click_row(page, name)
        tabs = page.details.tabs
        QTest.mouseClick(tabs.tabBar(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                         tabs.tabBar().tabRect(page.details.variants_tab).center())
        qtbot.waitUntil(lambda: page.details.variants.table.topLevelItemCount() > 0)
        changes = [row[4] for row in page.details.variants.table_texts()]
        assert ("base" in changes) == says_base, (name, changes)
    # One spelling of units: the chart's axis says KB as the tables do, not pyqtgraph's "kB".
    assert [row[1] for row in page.details.variants.table_texts()] == ["1.0 KB"]
    axis = page.details.variants.plot.getAxis("bottom").labelString()
    assert "(KB)" in axis and "kB" not in axis


def test_quit_question_defaults_to_cancel(qtbot, home, three):
    """A stray Enter on the quit question neither quits nor leaves servers running."""
    win = _open(qtbot, home)
    seen = []

    def press_enter() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        seen.append(box.defaultButton().text())
        QTest.keyClick(box, Qt.Key.Key_Return)

    QTimer.singleShot(100, press_enter)
    assert win.ask_keep_deployments(1) == "cancel"
    assert seen == ["Cancel"]


def test_the_banner_does_not_move_the_page(qtbot, home, three):
    win = _open(qtbot, home)
    page = win.models_page
    before = page.table.viewport().mapTo(win, QPoint(0, 0))
    win.ctx.events.sig_error.emit("Something went wrong, and this says what.")
    qtbot.waitUntil(win.banner.isVisible)
    assert "went wrong" in win.banner.text()
    assert page.table.viewport().mapTo(win, QPoint(0, 0)) == before


def _help_menu(qtbot, win: MainWindow) -> QMenu:
    bar = win.menuBar()
    help_action = next(a for a in bar.actions() if a.text() == "&Help")
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     bar.actionGeometry(help_action).center())
    qtbot.waitUntil(lambda: isinstance(QApplication.activePopupWidget(), QMenu), timeout=5000)
    return QApplication.activePopupWidget()


def test_help_works_offline(qtbot, home, three, tmp_path):
    win = _open(qtbot, home)
    click_menu_item(_help_menu(qtbot, win), "README (offline)")
    browser = next(w for w in QApplication.topLevelWidgets() if w.isVisible()
                   and w.findChild(QTextBrowser, "readme"))
    text = browser.findChild(QTextBrowser, "readme").toPlainText()
    assert "LLMOps Desktop" in text and "#" not in text.splitlines()[0]  # rendered Markdown
    browser.close()

    click_menu_item(_help_menu(qtbot, win), "Keyboard shortcuts")
    qtbot.waitUntil(lambda: any(w.isVisible() and w.findChild(QTableWidget, "shortcuts")
                                for w in QApplication.topLevelWidgets()), timeout=5000)
    sheet = next(w for w in QApplication.topLevelWidgets() if w.isVisible()
                 and w.findChild(QTableWidget, "shortcuts"))
    table = sheet.findChild(QTableWidget, "shortcuts")
    pairs = {table.item(r, 0).text(): table.item(r, 1).text() for r in range(table.rowCount())}
    assert pairs["Model › Quantize"] == "Ctrl+Shift+Q" and pairs["View › Prompts"] == "Ctrl+9"
    assert pairs["View › Jobs"] == "Ctrl+J" and pairs["View › Settings"] == "Ctrl+,"
    assert pairs["Help › Keyboard shortcuts"] == "Ctrl+/"
    sheet.close()

    # Open data folder: Qt hands file URLs to the registered handler (the desktop's file
    # manager by default); a handler here sees the URL instead of a window opening.
    class Opened(QObject):
        urls: list[str] = []

        @Slot(QUrl)
        def open(self, url: QUrl) -> None:
            self.urls.append(url.toLocalFile())

    opened = Opened()
    QDesktopServices.setUrlHandler("file", opened, "open")
    try:
        click_menu_item(_help_menu(qtbot, win), "Open data folder")
    finally:
        QDesktopServices.unsetUrlHandler("file")
    assert [Path(u) for u in opened.urls] == [home.root]

    dest = tmp_path / "diag.zip"
    click_menu_item(_help_menu(qtbot, win), "Save a diagnostics bundle…")
    qtbot.waitUntil(lambda: isinstance(QApplication.activeModalWidget(), QFileDialog))
    dialog = QApplication.activeModalWidget()
    assert QTest.qWaitForWindowExposed(dialog) and QTest.qWaitForWindowActive(dialog)
    name_edit = dialog.findChild(QLineEdit, "fileNameEdit")
    name_edit.selectAll()
    QTest.keyClicks(name_edit, str(dest))
    if (popup := QApplication.activePopupWidget()) is not None:  # the path completer
        popup.hide()
    save = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Save)
    QTest.mouseClick(save, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=5000)
    qtbot.waitUntil(lambda: "Diagnostics bundle saved" in win.statusBar().currentMessage()
                    or bool(win.banner.text()), timeout=120_000)
    assert not win.banner.text()
    assert f"saved to {dest}" in win.statusBar().currentMessage()
    with zipfile.ZipFile(dest) as zf:
        assert "doctor.json" in zf.namelist()


def test_jobs_read_as_words_in_one_vocabulary(qtbot, home, three, catalog):
    from llmops_desktop.catalog import JobState

    job = catalog.create_job("quantize", {"artifact_id": three["alpha"], "targets": ["Q4_K_M"],
                                          "eval_text": None, "measure_perplexity": True})
    catalog.finish_job(job.id, JobState.SUCCEEDED)
    win = _open(qtbot, home)
    page = win.show_page("jobs")
    qtbot.mouseClick(win.sidebar.viewport(), Qt.MouseButton.LeftButton,
                     pos=win.sidebar.visualItemRect(
                         win.sidebar.item(list(win.pages).index("jobs"))).center())
    assert win.current_page_id() == "jobs"
    table = page.table
    rect = table.visualRect(page.model.index(0, 2))
    QTest.mouseClick(table.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, rect.center())
    state = page.model.index(0, 3).data()
    assert state == "succeeded"  # the state's own word, not "done"
    assert page.header.text().endswith("— succeeded")
    words = page.params_label.text()
    assert "Targets: Q4_K_M" in words and "Measure perplexity: yes" in words
    for python in ("=", "None", "True", "[", "'", "eval_text", "measure_perplexity"):
        assert python not in words, words
    assert "T" not in words.splitlines()[1] and "Started" not in words  # local, not ISO
    assert "Queued 20" in words


def test_datasets_page_offers_the_sample_and_says_what_it_accepts(qtbot, home, catalog):
    from tests.qt.windows import open_window

    win = open_window(qtbot, home)
    page = win.show_page("datasets")
    assert page.list_stack.currentWidget() is page.empty
    accepted = page.empty.formats_label.text()
    for fmt in ("JSONL", "CSV", "Parquet", "chat messages", "plain text"):
        assert fmt in accepted
    qtbot.mouseClick(page.empty.sample_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.list.topLevelItemCount() == 1, timeout=30_000)
    assert page.list_stack.currentWidget() is page.list
    item = page.list.topLevelItem(0)
    assert item.text(0).startswith("chat-sample") and item.text(1) == "30"
    assert item.text(2) == "chat"


def test_serve_then_chat_from_the_details_and_enter_on_quit_keeps_the_window(
        qtbot, home, gguf_artifact):
    from tests.qt.windows import dispose, open_window

    win = open_window(qtbot, home)
    win.deployments_on_close = "ask"
    win.show_page("models")
    page = win.models_page
    qtbot.waitUntil(lambda: page.model.rowCount() == 1, timeout=10_000)
    click_row(page, "demo-gguf")
    assert not page.details.chat_button.isEnabled()
    qtbot.mouseClick(page.details.serve_button, Qt.MouseButton.LeftButton)
    deployments = win.deployments_page
    assert win.current_page_id() == "deployments"
    assert deployments.artifact_combo.currentData() == gguf_artifact
    port = deployments.port_spin
    port.setFocus()
    QTest.keyClick(port, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    QTest.keyClicks(port, "0")  # any free port
    with qtbot.waitSignal(deployments.deploy.sig_started, timeout=60_000) as started:
        qtbot.mouseClick(deployments.start_button, Qt.MouseButton.LeftButton)
    key = started.args[0]

    sidebar = win.sidebar
    QTest.mouseClick(sidebar.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, sidebar.visualItemRect(sidebar.item(0)).center())
    assert win.current_page_id() == "models"
    click_row(page, "demo-gguf")
    assert page.details.chat_button.isEnabled()
    qtbot.mouseClick(page.details.chat_button, Qt.MouseButton.LeftButton)
    assert win.current_page_id() == "playground"
    assert win.playground_page.current().key == key

    # A stray Enter on the quit question keeps the window and its server.
    QTimer.singleShot(200, lambda: QTest.keyClick(QApplication.activeModalWidget(),
                                                  Qt.Key.Key_Return))
    assert not win.close()
    assert win.isVisible() and deployments.deploy.get(key).state == "running"
    win.deployments_on_close = "stop"
    dispose(win)


def test_an_alert_does_not_move_the_monitor_charts(qtbot, home):
    from llmops_desktop.settings import Settings, save_settings
    from tests.qt.windows import open_window

    save_settings(home.settings_path, Settings().updated(alert_ram_pct=1))  # fires at once
    win = open_window(qtbot, home)
    sidebar = win.sidebar
    row = list(win.pages).index("monitor")
    QTest.mouseClick(sidebar.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, sidebar.visualItemRect(sidebar.item(row)).center())
    page = win.pages["monitor"]
    before = page.scroll.viewport().mapTo(win, QPoint(0, 0))
    qtbot.waitUntil(lambda: "RAM use" in page.banner.text(), timeout=30_000)
    assert page.scroll.viewport().mapTo(win, QPoint(0, 0)) == before
