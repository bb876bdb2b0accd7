"""The Prompts page on a real catalog, and Save as prompt from the Playground against a real
llama.cpp deployment of the demo model."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from llmops_desktop.prompts.store import aliases, resolve_prompt, versions
from llmops_desktop.qt.pages.prompts import PromptsPage
from llmops_desktop.qt.prompt_dialogs import PromptDialog
from tests.qt.test_playground import REPLY_TIMEOUT_MS, _serve

SCREENSHOT = Path("/tmp/tour/prompts-page.png")


def _dialog() -> PromptDialog:
    dialog = QApplication.activeModalWidget()
    assert isinstance(dialog, PromptDialog), dialog
    return dialog


def test_create_version_diff_and_move_alias(qtbot, window, catalog) -> None:
    page = window.show_page("prompts")
    assert isinstance(page, PromptsPage)
    assert page.table.rowCount() == 0 and page.empty_label.isVisibleTo(page)

    # Ctrl+N: a new prompt, refused in plain words without a template, then stored.
    qtbot.keyClick(page.table, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    dialog = _dialog()
    dialog.save_button.click()
    assert "Give the prompt a name" in dialog.message.text()
    dialog.name_combo.setEditText("support-bot")
    dialog.save_button.click()
    assert "needs a message template" in dialog.message.text() and dialog.isVisible()
    dialog.editor.system_edit.setPlainText("You help customers of {{company}}.")
    dialog.editor.template_edit.setPlainText("Answer briefly: {{question}}")
    dialog.editor.temperature_spin.setValue(0.2)
    assert "company, question" in dialog.editor.variables_label.text()
    dialog.save_button.click()
    assert not dialog.isVisible()
    v1 = resolve_prompt(catalog, "support-bot@1")[0]
    assert v1.template == "Answer briefly: {{question}}" and v1.params == {"temperature": 0.2}
    assert page.table.rowCount() == 1 and page.table.item(0, 0).text() == "support-bot"
    assert page.version is not None and page.version.ref == "support-bot@1"

    # An edited copy saved with Ctrl+S is version 2; version 1 is unchanged.
    page.editor.template_edit.setPlainText("Answer in one sentence: {{question}}")
    page.editor.max_tokens_spin.setValue(64)
    qtbot.keyClick(page.editor.template_edit, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert [v.version for v in versions(catalog, "support-bot")] == [1, 2]
    v2 = resolve_prompt(catalog, "support-bot@2")[0]
    assert v2.template == "Answer in one sentence: {{question}}"
    assert v2.params == {"temperature": 0.2, "max_tokens": 64}
    assert resolve_prompt(catalog, "support-bot@1")[0] == v1
    assert page.table.item(0, 1).text() == "2" and page.version.ref == "support-bot@2"
    # Saving the same content again is refused in words, and nothing is stored.
    assert page.save_new_version() == ""
    assert "same content" in page.message.text()
    assert len(versions(catalog, "support-bot")) == 2

    # Compare: the CLI's diff, with the change on each side.
    page.tabs.setCurrentWidget(page.compare)
    text = page.compare.compare(1, 2)
    assert "-template: Answer briefly: {{question}}" in text
    assert "+template: Answer in one sentence: {{question}}" in text
    assert "+max_tokens: 64" in text
    assert "Answer briefly" in page.compare.left.toPlainText()
    assert "Answer briefly" not in page.compare.right.toPlainText()
    assert "one sentence" in page.compare.right.toPlainText()
    page.compare.mode_combo.setCurrentIndex(page.compare.mode_combo.findData("unified"))
    assert page.compare.unified.toPlainText() == text

    # Move prod to version 1, then to version 2; split prod 90 / candidate 10.
    panel = page.alias_panel
    panel.alias_combo.setCurrentText("prod")
    panel.version_combo.setCurrentIndex(panel.version_combo.findData(1))
    panel.move_button.click()
    assert aliases(catalog, "support-bot") == {"prod": (1, 0.0)}
    assert page.table.item(0, 2).text() == "prod → 1"
    panel.version_combo.setCurrentIndex(panel.version_combo.findData(2))
    panel.weight_spin.setValue(90)
    panel.move_button.click()
    panel.alias_combo.setCurrentText("candidate")
    panel.version_combo.setCurrentIndex(panel.version_combo.findData(1))
    panel.weight_spin.setValue(10)
    panel.move_button.click()
    assert aliases(catalog, "support-bot") == {"candidate": (1, 10.0), "prod": (2, 90.0)}
    assert resolve_prompt(catalog, "support-bot@prod")[0].version == 2
    assert "prod 90% (version 2)" in panel.split_label.text()
    assert panel.aliases_table.rowCount() == 2
    # A bad alias name is refused by the core and said on the page.
    panel.alias_combo.setCurrentText("no good")
    assert not panel.move_alias()
    assert "not allowed" in page.message.text()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(SCREENSHOT))


def test_save_as_prompt_from_the_playground(qtbot, gguf_artifact, window, catalog) -> None:
    _serve(qtbot, window, gguf_artifact)
    window.deployments_page.chat_button.click()
    play = window.playground_page
    play.system_edit.setPlainText("You are terse.")
    play.temperature_spin.setValue(0.3)
    play.max_tokens_spin.setValue(16)
    play.seed_spin.setValue(7)
    with qtbot.waitSignal(play.sig_reply_finished, timeout=REPLY_TIMEOUT_MS):
        play.send("What is the capital of France?")

    dialog = play.save_as_prompt()
    assert dialog is not None and dialog.isVisible()
    editor = dialog.editor
    assert editor.template_edit.toPlainText() == "What is the capital of France?"
    assert editor.system_edit.toPlainText() == "You are terse."
    artifact_ref = catalog.artifact(gguf_artifact).ref
    assert editor.artifact_ref() == artifact_ref
    editor.template_edit.setPlainText("What is the capital of {{country}}?")
    dialog.name_combo.setEditText("capitals")
    dialog.alias_combo.setCurrentText("candidate")
    assert dialog.save() == "capitals@1"
    v = resolve_prompt(catalog, "capitals@candidate")[0]
    assert v.system_prompt == "You are terse." and v.variables == ["country"]
    assert v.template == "What is the capital of {{country}}?"
    assert v.params == {"temperature": 0.3, "top_p": 0.95, "max_tokens": 16, "seed": 7}
    assert v.artifact_ref == artifact_ref

    # The dialog offers the Prompts page, which opens on the new version.
    assert dialog.open_button.isVisible()
    dialog.open_button.click()
    assert window.current_page_id() == "prompts"
    page = window.pages["prompts"]
    assert page.version is not None and page.version.ref == "capitals@1"
    assert page.table.item(0, 3).text() == artifact_ref

    # Served by name, the version's requests show in its row of the usage table.
    d = play.current()
    client = openai.OpenAI(base_url=d.url + "/v1", api_key=d.request.api_key or "none")
    reply = client.chat.completions.create(model="prompt:capitals@candidate", messages=[],
                                           extra_body={"variables": {"country": "Italy"}})
    assert reply.choices[0].message.content is not None
    usage = page.alias_panel.usage_table

    def counted() -> bool:
        page.refresh()
        return usage.rowCount() == 1 and usage.item(0, 2).text() == "1"

    qtbot.waitUntil(counted, timeout=REPLY_TIMEOUT_MS)
    assert usage.item(0, 0).text() == "1" and usage.item(0, 1).text() == "candidate"

    # Saving again from the chat under the same name is the next version.
    second = play.save_as_prompt()
    assert second is not None and second.name_combo.findText("capitals") >= 0
    second.name_combo.setEditText("capitals")
    assert "capitals@2" in second.name_hint.text()
    assert second.save() == "capitals@2"
    assert resolve_prompt(catalog, "capitals@2")[0].template == "What is the capital of France?"
    second.close()
