""""From feedback…" on the Datasets page: rated replies and arena picks become a dataset
version, as ``llmops feedback to-dataset`` makes one (:mod:`llmops_desktop.serving.
feedback_data`).

The dialog counts what the chosen filters would give before anything is written (off the
GUI thread), so nobody makes an empty dataset or wonders where their ratings went.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QDate, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.qt.context import AppContext
from llmops_desktop.qt.workers import run_in_thread

KIND_LABELS = {
    "sft": "Supervised (SFT): liked replies and corrections",
    "preference": "Preference (DPO): liked against disliked replies, corrections against "
                  "the original, arena picks",
}


class FeedbackDatasetDialog(QDialog):
    """Name, kind and filters; a live count of the rows; Make dataset."""

    sig_made = Signal(int)
    """A dataset version was written (its id)."""
    sig_counted = Signal(str)
    """The count of what the filters give was shown (its text)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Dataset from feedback")
        self.setMinimumWidth(560)
        self._ticket = 0  # counts asked for; only the last one's answer is shown
        self._rows = 0
        form = QFormLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("e.g. support-feedback (a new version if it exists)")
        self.name_edit.textChanged.connect(self._update_ok)
        form.addRow("Dataset name", self.name_edit)
        self.kind_combo = QComboBox()
        for kind, label in KIND_LABELS.items():
            self.kind_combo.addItem(label, kind)
        self.kind_combo.setToolTip("SFT rows teach the liked answers; preference rows "
                                   "(prompt, chosen, rejected) are what DPO trains on.")
        form.addRow("Kind", self.kind_combo)
        since_row = QHBoxLayout()
        self.since_check = QCheckBox("Only ratings from")
        self.since_date = QDateEdit(QDate.currentDate().addDays(-30))
        self.since_date.setCalendarPopup(True)
        self.since_date.setDisplayFormat("yyyy-MM-dd")
        self.since_date.setEnabled(False)
        self.since_check.toggled.connect(self.since_date.setEnabled)
        since_row.addWidget(self.since_check)
        since_row.addWidget(self.since_date)
        since_row.addStretch(1)
        form.addRow("Since", since_row)
        self.prompt_combo = QComboBox()
        self.prompt_combo.setToolTip("Only replies served with this saved prompt (arena picks "
                                     "are never served with one)")
        form.addRow("Prompt", self.prompt_combo)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Only replies of this model")
        form.addRow("Model", self.model_combo)
        self.validation_spin = QDoubleSpinBox(minimum=0.0, maximum=0.9, singleStep=0.05,
                                              value=0.0)
        self.validation_spin.setToolTip("Fraction of rows held out for validation")
        form.addRow("Validation", self.validation_spin)
        self.count_label = QLabel()
        self.count_label.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.make_button = self.buttons.addButton("Make dataset",
                                                  QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.make)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.count_label)
        layout.addWidget(self.buttons)
        self._fill_choices()
        for signal in (self.kind_combo.currentIndexChanged, self.prompt_combo.currentIndexChanged,
                       self.model_combo.currentIndexChanged, self.since_check.toggled,
                       self.since_date.dateChanged):
            signal.connect(lambda *_: self.count())
        self.count()

    def _fill_choices(self) -> None:
        from llmops_desktop.prompts.store import list_prompts

        cat = self.ctx.catalog
        self.prompt_combo.addItem("any prompt or none", None)
        for p in list_prompts(cat):
            self.prompt_combo.addItem(p["name"], p["name"])
        self.model_combo.addItem("any model", None)
        rated = {r[0] for r in cat.conn.execute(
            "SELECT DISTINCT artifact_id FROM feedback WHERE artifact_id IS NOT NULL")}
        for a in cat.artifacts(state=None):
            if a.id in rated:
                self.model_combo.addItem(a.ref, a.id)

    def filters(self) -> dict[str, Any]:
        since = (self.since_date.date().toString("yyyy-MM-dd")
                 if self.since_check.isChecked() else None)
        return {"kind": self.kind_combo.currentData(), "since": since,
                "prompt": self.prompt_combo.currentData(),
                "artifact_id": self.model_combo.currentData()}

    def count(self) -> None:
        """Count the rows the filters give, off the GUI thread (``sig_counted``)."""
        from llmops_desktop.serving.feedback_data import build_rows

        self._ticket += 1
        ticket, home, filters = self._ticket, self.ctx.home, self.filters()
        self.count_label.setText("Counting…")
        self.make_button.setEnabled(False)

        def work() -> Any:
            with Catalog.open(home) as cat:
                return build_rows(cat, **filters)

        def done(built: Any) -> None:
            if ticket != self._ticket:
                return
            self._rows = len(built.rows)
            picks = f" and {len(built.battle_ids)} arena picks" if built.battle_ids else ""
            text = (f"{self._rows} rows from {len(built.feedback_ids)} rated replies{picks}."
                    if self._rows else
                    "These filters give no rows: rate replies in the Playground (👍/👎, or a "
                    "correction), with 'llmops chat', through POST /v1/feedback, or pick "
                    "winners in the Playground's blind side-by-side mode.")
            self.count_label.setText(text)
            self._update_ok()
            self.sig_counted.emit(text)

        def failed(exc: BaseException) -> None:
            if ticket == self._ticket:
                self._rows = 0
                self.count_label.setText(str(exc))
                self._update_ok()
                self.sig_counted.emit(str(exc))

        run_in_thread(work, done, failed, receiver=self)

    def _update_ok(self) -> None:
        self.make_button.setEnabled(bool(self.name_edit.text().strip()) and self._rows > 0)

    def make(self) -> None:
        """Write the dataset version (off the GUI thread); ``sig_made`` with its id."""
        from llmops_desktop.serving.feedback_data import feedback_to_dataset

        name = self.name_edit.text().strip()
        if not name:
            self.count_label.setText("Give the dataset a name.")
            return
        home, filters = self.ctx.home, self.filters()
        validation = self.validation_spin.value()
        self.make_button.setEnabled(False)
        self.count_label.setText(f"Writing {name} …")

        def work() -> int:
            with Catalog.open(home) as cat:
                return feedback_to_dataset(cat, name=name, validation=validation,
                                           **filters).id

        def done(version_id: int) -> None:
            self.sig_made.emit(version_id)
            self.accept()

        def failed(exc: BaseException) -> None:
            self.count_label.setText(str(exc))
            self._update_ok()

        run_in_thread(work, done, failed, receiver=self)
