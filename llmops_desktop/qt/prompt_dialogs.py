"""The "New prompt" and "Save as prompt" dialog: a name (a new prompt, or the next version of
an existing one), the version's content, and an alias to point at it.

The Playground fills it from its chat (system prompt, the last question as the template,
the sampling settings, the deployment's artifact); after saving it offers to show the
prompt on the Prompts page. Saving goes through :func:`llmops_desktop.prompts.store.create_prompt`,
whose refusals are shown in the dialog, which stays open to fix them.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import LLMOpsError
from llmops_desktop.prompts.store import create_prompt, list_prompts
from llmops_desktop.qt.context import icon
from llmops_desktop.qt.prompt_editor import PromptEditor, StatusLine, hint_label

ALIASES = ("", "candidate", "prod")  # offered; any other name may be typed


def alias_combo(tip: str) -> QComboBox:
    """An editable list of the usual aliases (prod, candidate); a custom one can be typed."""
    combo = QComboBox()
    combo.setEditable(True)
    combo.addItems(ALIASES)
    combo.lineEdit().setPlaceholderText("none")
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
    combo.setToolTip(tip)
    return combo


class PromptDialog(QDialog):
    """Store a prompt version: the first of a new prompt or the next of an existing one."""

    sig_saved = Signal(str)
    """A version was stored (NAME@N)."""
    sig_open_requested = Signal(str)
    """Show this version (NAME@N) on the Prompts page."""

    def __init__(self, catalog: Catalog, title: str, *, offer_open: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.offer_open = offer_open
        self.saved_ref = ""
        self.setWindowTitle(title)
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.resize(620, 680)
        self.latest = {r["name"]: r["latest"] for r in list_prompts(catalog)}
        self.name_combo = QComboBox()
        self.name_combo.setEditable(True)
        self.name_combo.addItems(sorted(self.latest))
        self.name_combo.setEditText("")
        self.name_combo.lineEdit().setPlaceholderText("e.g. support-bot")
        self.name_combo.setToolTip("A new name makes a new prompt; an existing one gets its "
                                   "next version (versions never change)")
        self.name_combo.editTextChanged.connect(self._show_name_hint)
        self.name_hint = hint_label()
        self.alias_combo = alias_combo("Point this alias at the new version (leave empty for "
                                       "none)")
        self.editor = PromptEditor(catalog)
        self.message = StatusLine()
        self.save_button = QPushButton(icon("tag"), "Save")
        self.save_button.setDefault(True)
        self.save_button.setToolTip("Store this version (Ctrl+S)")
        self.save_button.clicked.connect(self.save)
        self.open_button = QPushButton(icon("chat"), "Open on the Prompts page")
        self.open_button.setToolTip("Show the saved prompt, its versions and aliases")
        self.open_button.clicked.connect(self._on_open_clicked)
        self.open_button.hide()
        self.close_button = QPushButton("Cancel")
        self.close_button.clicked.connect(self.reject)
        QShortcut(QKeySequence("Ctrl+S"), self).activated.connect(self.save)

        form = QFormLayout()
        form.addRow("Name", self.name_combo)
        form.addRow("", self.name_hint)
        form.addRow("Alias", self.alias_combo)
        buttons = QHBoxLayout()
        buttons.addWidget(self.message, 1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.editor, 1)
        layout.addLayout(buttons)
        self._show_name_hint("")

    def save(self) -> str:
        """Store the version; returns NAME@N, or "" when the core refused (said in the
        dialog)."""
        if self.saved_ref:
            return ""
        if not self.name_combo.currentText().strip():
            self.message.say("Give the prompt a name (letters, digits, '.', '_' or '-'), or "
                             "pick an existing prompt to add a version to it.", error=True)
            self.name_combo.setFocus()
            return ""
        try:
            v = create_prompt(self.catalog, self.name_combo.currentText().strip(),
                              alias=self.alias_combo.currentText().strip() or None,
                              **self.editor.values())
        except LLMOpsError as exc:
            self.message.say(str(exc), error=True)
            return ""
        self.saved_ref = v.ref
        alias = self.alias_combo.currentText().strip()
        self.message.say(f"Saved as {v.ref}" + (f"; {alias} points at it." if alias else "."))
        self.sig_saved.emit(v.ref)
        if not self.offer_open:
            self.accept()
            return v.ref
        self.save_button.setEnabled(False)
        self.close_button.setText("Close")
        self.open_button.show()
        self.open_button.setFocus()
        return v.ref

    def _on_open_clicked(self) -> None:
        self.sig_open_requested.emit(self.saved_ref)
        self.accept()

    def _show_name_hint(self, text: str) -> None:
        name = text.strip()
        if not name:
            self.name_hint.setText("Type a new name, or pick a prompt to add a version to.")
        elif name in self.latest:
            self.name_hint.setText(f"Saves {name}@{self.latest[name] + 1}, the next version "
                                   f"of {name}.")
        else:
            self.name_hint.setText(f"Makes the new prompt {name} (version 1).")


def save_as_prompt_dialog(catalog: Catalog, page: Any) -> PromptDialog:
    """The dialog filled from the Playground ``page``: its system prompt, the chat's last
    question as the template (fill in {{variables}} by hand), its sampling settings and
    response schema, and the deployment's artifact. InvalidInputError when the page's
    schema box is not JSON."""
    sampling = page.settings_box.sampling()
    session, deployment = page.conversation(), page.current()
    questions = [t.content for t in (session.turns if session else []) if t.role == "user"]
    template = questions[-1] if questions else page.input.toPlainText().strip()
    dialog = PromptDialog(catalog, "Save as prompt", offer_open=True, parent=page)
    dialog.editor.load(
        system_prompt=page.settings_box.system(), template=template,
        params={"temperature": sampling.temperature, "top_p": sampling.top_p,
                "max_tokens": sampling.max_tokens, "seed": sampling.seed},
        response_schema=sampling.json_schema,
        artifact_ref=deployment.request.artifact_ref if deployment is not None else "")
    dialog.editor.template_edit.setFocus()
    return dialog
