"""The fields of one prompt version: system prompt, template, settings, schema, artifact.

Used read-only-ish on the Prompts page (an edited copy becomes the next version; a stored
version never changes) and in the "New prompt" / "Save as prompt" dialog. ``{{variables}}``
are highlighted as they are typed and listed under the template.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QSyntaxHighlighter, QTextCharFormat, QTextDocument
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.prompts.store import PromptVersion
from llmops_desktop.prompts.templates import VARIABLE, variables

NO_ARTIFACT = "(any model)"


def hint_label(text: str = "") -> QLabel:
    """A quiet, wrapping line of explanation."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: palette(mid);")
    return label


class StatusLine(QLabel):
    """What the last action did: green when it worked, red (the core's words) when not."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

    def say(self, text: str, *, error: bool = False) -> None:
        self.setStyleSheet("color: #c62828;" if error else "color: #2e7d32;")
        self.setText(text)


class VariableHighlighter(QSyntaxHighlighter):
    """Shows each ``{{name}}`` of a template in bold colour."""

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)
        self.style = QTextCharFormat()
        self.style.setForeground(QColor("#1565c0"))
        self.style.setBackground(QColor("#e3f2fd"))
        self.style.setFontWeight(QFont.Weight.Bold)

    def highlightBlock(self, text: str) -> None:  # noqa: N802 (Qt's name)
        for match in VARIABLE.finditer(text):
            self.setFormat(match.start(), match.end() - match.start(), self.style)


def _optional_double(low: float, high: float, step: float, tip: str) -> QDoubleSpinBox:
    """A spin box whose lowest value reads "not set" (the prompt leaves it to the request)."""
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(2)
    spin.setSpecialValueText("not set")
    spin.setValue(low)
    spin.setToolTip(tip + " (lowest value: not set, the request decides)")
    return spin


def _optional_int(low: int, high: int, tip: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSpecialValueText("not set")
    spin.setValue(low)
    spin.setToolTip(tip + " (lowest value: not set, the request decides)")
    return spin


class PromptEditor(QWidget):
    """Edit the content of a prompt version; :meth:`values` gives ``create_prompt``'s
    keyword arguments."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.system_edit = QPlainTextEdit()
        self.system_edit.setPlaceholderText("System prompt (optional; may hold {{variables}})")
        self.system_edit.setMaximumHeight(120)
        self.template_edit = QPlainTextEdit()
        self.template_edit.setPlaceholderText("The user's message, e.g. 'Answer {{customer}}'s "
                                              "question: {{question}}'")
        self.template_edit.setToolTip("Write {{name}} where a request's variable goes in; "
                                      "a request sends them as \"variables\": {…}")
        self._highlighters = [VariableHighlighter(e.document())
                              for e in (self.system_edit, self.template_edit)]
        self.variables_label = hint_label()
        for edit in (self.system_edit, self.template_edit):
            edit.textChanged.connect(self._show_variables)
        self.temperature_spin = _optional_double(-0.1, 2.0, 0.1, "Randomness, 0 to 2")
        self.top_p_spin = _optional_double(0.0, 1.0, 0.05, "Nucleus sampling, above 0 to 1")
        self.max_tokens_spin = _optional_int(0, 32768, "Longest reply in tokens")
        self.seed_spin = _optional_int(-1, 2**31 - 1, "The same seed gives the same reply")
        self.schema_edit = QPlainTextEdit()
        self.schema_edit.setPlaceholderText('Response schema (optional JSON Schema), e.g. '
                                            '{"type": "object"}')
        self.schema_edit.setMaximumHeight(80)
        self.artifact_combo = QComboBox()
        self.artifact_combo.setToolTip("The model this prompt was written for")
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("What changed in this version (optional)")
        form = QFormLayout()
        form.addRow("Temperature", self.temperature_spin)
        form.addRow("Top p", self.top_p_spin)
        form.addRow("Max tokens", self.max_tokens_spin)
        form.addRow("Seed", self.seed_spin)
        form.addRow("Written for", self.artifact_combo)
        form.addRow("Note", self.note_edit)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("System prompt"))
        layout.addWidget(self.system_edit)
        layout.addWidget(QLabel("Message template"))
        layout.addWidget(self.template_edit, 1)
        layout.addWidget(self.variables_label)
        layout.addLayout(form)
        layout.addWidget(QLabel("Response schema"))
        layout.addWidget(self.schema_edit)
        self.reload_artifacts()
        self._show_variables()

    def reload_artifacts(self, keep: str | None = None) -> None:
        keep = self.artifact_ref() if keep is None else keep
        self.artifact_combo.clear()
        self.artifact_combo.addItem(NO_ARTIFACT, "")
        for a in self.catalog.artifacts():
            self.artifact_combo.addItem(a.ref, a.ref)
        self.set_artifact(keep)

    def set_artifact(self, ref: str) -> None:
        index = self.artifact_combo.findData(ref)
        if index < 0:  # written for a model no longer here: still shown, still kept
            self.artifact_combo.addItem(ref, ref)
            index = self.artifact_combo.count() - 1
        self.artifact_combo.setCurrentIndex(index)

    def artifact_ref(self) -> str:
        return self.artifact_combo.currentData() or ""

    def load(self, *, system_prompt: str = "", template: str = "",
             params: dict[str, Any] | None = None,
             response_schema: dict[str, Any] | None = None, artifact_ref: str = "",
             note: str = "") -> None:
        params = params or {}
        self.system_edit.setPlainText(system_prompt)
        self.template_edit.setPlainText(template)
        for key, spin in self._spins().items():
            spin.setValue(params[key] if params.get(key) is not None else spin.minimum())
        self.schema_edit.setPlainText(json.dumps(response_schema, indent=2)
                                      if response_schema is not None else "")
        self.set_artifact(artifact_ref)
        self.note_edit.setText(note)

    def load_version(self, v: PromptVersion) -> None:
        """Show a stored version (its note is not carried over to the next one)."""
        self.load(system_prompt=v.system_prompt, template=v.template, params=v.params,
                  response_schema=v.response_schema, artifact_ref=v.artifact_ref)

    def values(self) -> dict[str, Any]:
        """``create_prompt``'s keyword arguments (and ``template``); InvalidInputError when
        the schema is not a JSON object."""
        params = {key: spin.value() for key, spin in self._spins().items()
                  if spin.value() != spin.minimum()}
        schema = None
        text = self.schema_edit.toPlainText().strip()
        if text:
            try:
                schema = json.loads(text)
            except ValueError as exc:
                raise InvalidInputError(f"The response schema is not valid JSON ({exc}); "
                                        "fix it or clear the box.") from None
        return {"template": self.template_edit.toPlainText(),
                "system_prompt": self.system_edit.toPlainText().strip(), "params": params,
                "response_schema": schema, "artifact_ref": self.artifact_ref(),
                "note": self.note_edit.text().strip()}

    def _spins(self) -> dict[str, QDoubleSpinBox | QSpinBox]:
        return {"temperature": self.temperature_spin, "top_p": self.top_p_spin,
                "max_tokens": self.max_tokens_spin, "seed": self.seed_spin}

    def _show_variables(self) -> None:
        names = variables(self.system_edit.toPlainText(), self.template_edit.toPlainText())
        self.variables_label.setText(
            "Variables: " + ", ".join(names) if names else
            "No variables yet: write {{name}} where a request's value goes in.")
