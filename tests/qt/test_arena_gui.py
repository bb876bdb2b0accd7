"""The Playground's blind arena against two real llama.cpp deployments, and the ratings view."""

from __future__ import annotations


import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt

from llmops_desktop.evaluate.arena import battles
from llmops_desktop.qt.arena_ratings import ArenaRatingsView
from llmops_desktop.serving.feedback import find_request
from tests.gateway_fixtures import two_models
from tests.qt.test_playground import _serve

REPLY_TIMEOUT_MS = 60_000


def test_blind_pick_is_stored_with_the_right_winner_and_rated(qtbot, window, catalog,
                                                             demo_gguf) -> None:
    alpha, beta = two_models(catalog, demo_gguf)
    page = window.show_page("playground")
    page.mode_combo.setCurrentIndex(page.mode_combo.findData("arena"))
    panel = page.arena_panel
    assert panel.isVisible() and not page.chat_area.isVisible()
    assert "needs two running deployments" in panel.status.text()
    assert not panel.ask_button.isEnabled() and not panel.ask("Hello")
    keys = {alpha.id: _serve(qtbot, window, alpha.id), beta.id: _serve(qtbot, window, beta.id)}
    window.show_page("playground")
    assert panel.ask_button.isEnabled()
    panel.combos["a"].setCurrentIndex(panel.combos["a"].findData(keys[beta.id]))
    panel.combos["b"].setCurrentIndex(panel.combos["b"].findData(keys[beta.id]))
    assert not panel.ask("Hello") and "two different" in panel.status.text()
    panel.combos["a"].setCurrentIndex(panel.combos["a"].findData(keys[alpha.id]))
    panel.combos["b"].setCurrentIndex(panel.combos["b"].findData(keys[beta.id]))
    page.max_tokens_spin.setValue(12)
    page.temperature_spin.setValue(1.0)

    panel.prompt_edit.setPlainText("Hello there")
    panel.prompt_edit.setFocus()
    with qtbot.waitSignal(panel.sig_replies_finished, timeout=REPLY_TIMEOUT_MS):
        qtbot.keyClick(panel.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    column_a, column_b = panel.columns["A"], panel.columns["B"]
    for column in (column_a, column_b):  # a reply each, unlabelled and without its figures
        assert column.turn is not None and column.turn.state == "done", column.turn
        assert column.text.text() == column.turn.content != ""
        assert column.title.text() == f"<b>{column.label}</b>" and column.stats.text() == ""
        assert alpha.ref not in column.title.text() and beta.ref not in column.title.text()
    assert column_a.turn is not column_b.turn
    assert all(b.isEnabled() for b in panel.pick_buttons.values())

    with qtbot.waitSignal(panel.sig_picked, timeout=5000) as picked:  # B is better, Alt+B
        qtbot.keyClick(panel.prompt_edit, Qt.Key.Key_B, Qt.KeyboardModifier.AltModifier)
    stored = battles(catalog)
    assert [b.id for b in stored] == [picked.args[0]]
    battle = stored[0]
    # Who wrote what B showed, by the request log of the deployment that answered it.
    response_b = column_b.turn.stats.response_id
    qtbot.waitUntil(lambda: find_request(catalog, response_b) is not None, timeout=10_000)
    author_b = find_request(catalog, response_b)["artifact_id"]
    loser_id = alpha.id if author_b == beta.id else beta.id
    assert battle.winner in ("a", "b")
    assert battle.side(battle.winner).artifact_id == author_b
    assert battle.side("b" if battle.winner == "a" else "a").artifact_id == loser_id
    assert battle.side(battle.winner).reply == column_b.text.text()
    assert battle.side(battle.winner).response_id == response_b
    assert battle.prompt == "Hello there" and battle.params["max_tokens"] == 12
    assert (battle.a.artifact_id, battle.b.artifact_id) == (alpha.id, beta.id)
    # Revealed: each column now names its model, and picking again stores nothing.
    refs = {alpha.id: alpha.ref, beta.id: beta.ref}
    assert refs[author_b] in column_b.title.text()
    assert refs[loser_id] in column_a.title.text() and "TTFT" in column_a.stats.text()
    assert not any(b.isEnabled() for b in panel.pick_buttons.values())
    assert panel.pick("A") is None and len(battles(catalog)) == 1

    page = window.show_page("evaluate")  # the ratings are the Evaluate page's Arena tab
    view = page.arena
    assert isinstance(view, ArenaRatingsView)
    with qtbot.waitSignal(view.sig_refreshed, timeout=30_000):
        page.tabs.setCurrentWidget(view)
    rows = view.model.texts()
    assert [r[0] for r in rows] == [refs[author_b], refs[loser_id]]
    assert rows[0][3:] == ["1", "1", "0", "0"] and rows[1][3:] == ["1", "0", "1", "0"]
    assert int(rows[0][1]) > 1000 > int(rows[1][1])
