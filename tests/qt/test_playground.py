"""The Playground against a real llama.cpp deployment, and deployments that outlive the window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from llmops_desktop.qt.main_window import MainWindow
from llmops_desktop.serving.feedback import feedback_rows
from llmops_desktop.serving.store import deployment
from tests.qt.windows import dispose, pid_alive

START_TIMEOUT_MS = 30_000
REPLY_TIMEOUT_MS = 30_000
SCREENSHOT = Path("/tmp/tour/16-playground.png")


def _serve(qtbot, win: MainWindow, artifact_id: int) -> int:
    page = win.deployments_page
    page.select_artifact(artifact_id)
    page.ctx_spin.setValue(512)
    page.threads_spin.setValue(1)
    with qtbot.waitSignal(page.deploy.sig_started, timeout=START_TIMEOUT_MS) as started:
        page.start_button.click()
    return started.args[0]


def test_chat_streams_measures_rates_and_exports(qtbot, gguf_artifact, window, catalog,
                                                 tmp_path: Path) -> None:
    key = _serve(qtbot, window, gguf_artifact)
    window.deployments_page.chat_button.click()
    page = window.playground_page
    assert window.current_page_id() == "playground"
    assert page.current().key == key
    page.system_edit.setPlainText("You are terse.")
    page.max_tokens_spin.setValue(16)
    page.seed_spin.setValue(7)

    page.input.setPlainText("Hello there")
    with qtbot.waitSignal(page.sig_reply_finished, timeout=REPLY_TIMEOUT_MS):
        reply_id = page.send()
    turn = page.conversation().turns[-1]
    assert turn.reply_id == reply_id and turn.state == "done" and turn.content
    view = page._views[-1]
    assert view.text.text() == turn.content
    assert "TTFT" in view.stats.text() and "tok/s" in view.stats.text(), view.stats.text()
    assert turn.stats.completion_tokens and turn.stats.completion_tokens <= 16
    assert page.input.toPlainText() == "" and page.send_button.isEnabled()

    # The conversation goes on: the second request carries the first exchange.
    page.input.setPlainText("And again?")  # sent from the keyboard this time
    with qtbot.waitSignal(page.sig_reply_finished, timeout=REPLY_TIMEOUT_MS):
        qtbot.keyClick(page.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    second = page.conversation().turns[-1].reply_id
    req = page.conversation().turns[-1].request["body"]
    assert [m["role"] for m in req["messages"]] == ["system", "user", "assistant", "user"]
    assert req["messages"][2]["content"] == turn.content

    # Thumbs up on the first reply lands in the catalog with its prompt and artifact.
    view.up.click()
    rows = feedback_rows(catalog)
    assert len(rows) == 1 and rows[0].reply_id == reply_id and rows[0].rating == 1
    assert rows[0].reply == turn.content and rows[0].prompt == "Hello there"
    assert rows[0].artifact_id == gguf_artifact and rows[0].system_prompt == "You are terse."
    assert rows[0].ttft_ms is not None and rows[0].params["seed"] == 7
    page._views[-1].down.click()
    assert [(r.reply_id, r.rating) for r in feedback_rows(catalog)] == [(reply_id, 1),
                                                                       (second, -1)]
    out = tmp_path / "feedback.jsonl"
    assert page.export_feedback(out) == 2
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["messages"][-1] == {"role": "assistant", "content": turn.content}

    # Stop: the reply ends at once, marked stopped, and the window stays usable.
    page.max_tokens_spin.setValue(300)
    stop_once = []

    def stop_on_first_piece(*_):
        if not stop_once:
            stop_once.append(1)
            page.stop_button.click()

    page.sig_reply_piece.connect(stop_on_first_piece)
    try:
        with qtbot.waitSignal(page.sig_reply_finished, timeout=REPLY_TIMEOUT_MS):
            page.send("Tell me a long story")
    finally:
        page.sig_reply_piece.disconnect(stop_on_first_piece)
    stopped = page.conversation().turns[-1]
    assert stopped.state == "stopped", stopped.error
    assert "stopped" in page._views[-1].stats.text()
    assert page.send_button.isEnabled() and not page.stop_button.isEnabled()

    # Each deployment keeps its own conversation; the first one's is still there.
    assert len(page.conversation().turns) == 6
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SCREENSHOT))


def test_kept_deployment_is_found_by_the_next_window(qtbot, home, gguf_artifact, catalog):
    first = MainWindow(home)
    qtbot.addWidget(first)
    first.show()
    key = _serve(qtbot, first, gguf_artifact)
    d = first.deployments_page.deploy.get(key)
    pid, dep_id, url = d.info["pid"], d.deployment_id, d.url

    # Closing asks; Cancel keeps the window open.
    def answer(text: str) -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox), box
        assert "serving" in box.text()
        next(b for b in box.buttons() if b.text() == text).click()

    QTimer.singleShot(100, lambda: answer("Cancel"))
    assert not first.close()
    assert first.isVisible() and pid_alive(pid)
    QTimer.singleShot(100, lambda: answer("Keep running"))
    dispose(first)
    assert pid_alive(pid) and deployment(catalog, dep_id).state == "running"

    second = MainWindow(home)
    qtbot.addWidget(second)
    second.show()
    page = second.deployments_page
    found = [x for x in page.deploy.deployments.values() if x.deployment_id == dep_id]
    assert len(found) == 1 and found[0].state == "running" and found[0].url == url
    assert page.tree.topLevelItemCount() == 1 and page.tree.topLevelItem(0).text(4) == "running"
    assert second.deploy_status.isVisible() and second.deploy_status.text() == "1 deployment serving"

    # It answers in the second window's Playground too.
    second.chat_with(found[0].key)
    play = second.playground_page
    play.max_tokens_spin.setValue(8)
    with qtbot.waitSignal(play.sig_reply_finished, timeout=REPLY_TIMEOUT_MS):
        play.send("Still there?")
    assert play.conversation().turns[-1].state == "done"

    # Stopping it from the second window ends the process and the record says so.
    page.tree.setCurrentItem(page.tree.topLevelItem(0))
    with qtbot.waitSignal(page.deploy.sig_stopped, timeout=15_000) as stopped:
        page.stop_button.click()
    assert stopped.args == [found[0].key, ""]
    qtbot.waitUntil(lambda: not pid_alive(pid), timeout=10_000)
    assert deployment(catalog, dep_id).state == "stopped"
    assert page.tree.topLevelItem(0).text(4) == "stopped"
    dispose(second)
