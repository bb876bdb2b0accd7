"""The Fine-tune page's left column: base and dataset, the options form, the memory
estimate, the job buttons and the lines that say why Start is disabled or what happened.

The form is built from :class:`~llmops_desktop.finetune.config.FinetuneOptions` (each
field's description is its tooltip).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.finetune.config import FinetuneOptions
from llmops_desktop.qt.forms import Override, SpecForm

if TYPE_CHECKING:
    from llmops_desktop.qt.pages.finetune import FinetunePage

# Fields shown in the form, in order; the rest keep their defaults (the CLI has them all).
FORM_FIELDS = ("method", "r", "alpha", "dropout", "target_modules", "epochs", "max_steps", "lr",
               "batch_size", "grad_accum", "max_len", "packing", "gradient_checkpointing",
               "seed", "validation", "eval_steps", "save_steps", "nproc", "strategy", "name")
OVERRIDES = {"max_steps": Override(none_text="by epochs"),
             "validation": Override(none_text="dataset's split"),
             "name": Override(none_text="default: BASE-lora-DATASET")}


def build_form(page: FinetunePage) -> QScrollArea:
    """The form column, in a scroll area; its widgets become the page's attributes."""
    box = QWidget()
    v = QVBoxLayout(box)
    form = QFormLayout()
    page.base_combo = QComboBox()
    page.base_combo.setToolTip("The Hugging Face model to adapt")
    page.base_combo.currentIndexChanged.connect(page._on_base_changed)
    page.dataset_combo = QComboBox()
    page.dataset_combo.setToolTip("A dataset version (Datasets page)")
    for combo in (page.base_combo, page.dataset_combo):  # long names elide, not widen
        combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(14)
    page.base_combo.currentIndexChanged.connect(lambda _: page._update_buttons())
    page.dataset_combo.currentIndexChanged.connect(lambda _: page._update_buttons())
    form.addRow("Base model", page.base_combo)
    form.addRow("Dataset", page.dataset_combo)
    v.addLayout(form)
    page.form = SpecForm(FinetuneOptions, names=FORM_FIELDS, overrides=OVERRIDES)
    page.form.sig_changed.connect(page._schedule_estimate)
    page._inputs = {n: page.form.input(n) for n in FORM_FIELDS}
    v.addWidget(page.form)
    page.estimate_label = QLabel()
    page.estimate_label.setWordWrap(True)
    v.addWidget(page.estimate_label)
    row = QHBoxLayout()
    page.start_button = QPushButton("Start")
    page.start_button.clicked.connect(page.start)
    page.cancel_button = QPushButton("Cancel")
    page.cancel_button.clicked.connect(page.cancel)
    page.resume_button = QPushButton("Resume")
    page.resume_button.clicked.connect(page.resume)
    page.merge_button = QPushButton("Merge")
    page.merge_button.setToolTip("Merge the adapter into its base (a new HF model)")
    page.merge_button.clicked.connect(page.merge)
    for b in (page.start_button, page.cancel_button, page.resume_button, page.merge_button):
        row.addWidget(b)
    v.addLayout(row)
    page.start_reason = QLabel()  # why Start is disabled, with a way to fix it
    page.start_reason.setWordWrap(True)
    page.start_reason.linkActivated.connect(page._on_link)
    v.addWidget(page.start_reason)
    page.status = QLabel()
    page.status.setWordWrap(True)
    v.addWidget(page.status)
    v.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(box)
    # The column fits the form: it scrolls down, never sideways.
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setMinimumWidth(box.minimumSizeHint().width()
                           + scroll.verticalScrollBar().sizeHint().width() + 4)
    page.form_scroll = scroll
    return scroll


def update_estimate(page: FinetunePage) -> None:
    """Show the memory the form's run needs, red where it does not fit."""
    from llmops_desktop.finetune.memory import describe, estimate_memory

    base_id = page.base_combo.currentData()
    if base_id is None:
        page.estimate_label.setText("Import or download a Hugging Face model to fine-tune.")
        return
    base = page.ctx.catalog.artifact(base_id)
    try:
        est = estimate_memory(base.path, page.options(), metadata=base.metadata)
    except Exception as exc:  # noqa: BLE001 - the form may be half-filled
        page.estimate_label.setText(str(exc))
        return
    page.estimate = est
    color = "#c62828" if est.fits is False else "#2e7d32"
    page.estimate_label.setText(describe(est))
    page.estimate_label.setStyleSheet(f"color: {color}")
