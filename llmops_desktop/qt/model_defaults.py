""""Save as this model's defaults" under the Deployments page's form.

The form's settings (all but address, port and name) are kept for the chosen artifact in
the catalog (:mod:`llmops_desktop.serving.model_settings`); choosing that model again
fills the form with them instead of the suggested ones, and the gateway starts the model
with them when a request loads it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from llmops_desktop.errors import LLMOpsError
from llmops_desktop.qt.context import AppContext
from llmops_desktop.serving.model_settings import (
    clear_model_settings,
    model_settings,
    save_model_settings,
)


class ModelDefaultsBar(QWidget):
    """Save, apply and forget the chosen model's saved serve settings."""

    def __init__(self, ctx: AppContext, form: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx, self.form = ctx, form
        self._applied_for: int | None = None
        self.save_button = QPushButton("Save as this model's defaults")
        self.save_button.setToolTip(
            "Keep these settings (all but address, port and name) for this model: the form "
            "shows them whenever it is chosen, and the gateway starts it with them")
        self.save_button.clicked.connect(self.save)
        self.forget_button = QPushButton("Forget saved defaults")
        self.forget_button.setToolTip("Go back to the settings suggested for this model and "
                                      "machine")
        self.forget_button.clicked.connect(self.forget)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setStyleSheet("color: palette(mid);")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.save_button)
        layout.addWidget(self.forget_button)
        layout.addWidget(self.label, 1)
        form.sig_artifact_changed.connect(self._on_artifact_changed)
        self._show(None)

    def artifact_id(self) -> int | None:
        value = self.form.artifact_combo.currentData()
        return int(value) if value is not None else None

    def apply_saved(self) -> bool:
        """Fill the form with the chosen model's saved settings; whether it has any."""
        artifact_id = self.artifact_id()
        saved = model_settings(self.ctx.catalog, artifact_id) if artifact_id else None
        if saved:
            for part in (self.form.main_form, self.form.tuning_form, self.form.advanced_form):
                part.set_values(saved)
        self._show(saved)
        return bool(saved)

    def save(self) -> bool:
        artifact_id = self.artifact_id()
        if artifact_id is None:
            return False
        try:
            kept = save_model_settings(self.ctx.catalog, artifact_id, self.form.serve_values())
        except LLMOpsError as exc:
            self.ctx.events.sig_error.emit(f"Not saved: {exc}")
            return False
        self._show(kept, saved_now=True)
        return True

    def forget(self) -> None:
        artifact_id = self.artifact_id()
        if artifact_id is not None and clear_model_settings(self.ctx.catalog, artifact_id):
            self.form.apply_defaults()
            self._show(None)

    def _show(self, saved: dict[str, Any] | None, *, saved_now: bool = False) -> None:
        has_model = self.artifact_id() is not None
        self.save_button.setEnabled(has_model)
        self.forget_button.setVisible(bool(saved))
        if not saved:
            self.label.setText("")
            return
        shown = ", ".join(f"{k} {v}" for k, v in sorted(saved.items()) if v is not None)
        self.label.setText(("Saved as this model's defaults" if saved_now else
                            "This model's saved defaults") + f": {shown or 'as suggested'}.")

    def _on_artifact_changed(self, artifact_id: object) -> None:
        if artifact_id != self._applied_for:  # another model: its own saved settings
            self._applied_for = artifact_id if isinstance(artifact_id, int) else None
            self.apply_saved()
