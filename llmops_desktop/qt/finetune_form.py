"""The Fine-tune page's left column: base and dataset, the options form, the memory
estimate, the job buttons and the lines that say why Start is disabled or what happened.

The form is built from :class:`~llmops_desktop.finetune.config.FinetuneOptions` (each
field's description is its tooltip). The method decides what the rest shows: DPO's beta
and its 4-bit base only for DPO, and for DPO only the preference datasets (prompt, chosen,
rejected). "Evaluate on suites" is a list of the catalog's suite versions to tick: the run
evaluates the adapter and its base on each when it ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.fields import FieldSpec
from llmops_desktop.finetune.config import FinetuneOptions
from llmops_desktop.finetune.after_eval import suite_names
from llmops_desktop.qt.forms import Editor, Override, SpecForm

if TYPE_CHECKING:
    from llmops_desktop.qt.pages.finetune import FinetunePage

# Fields shown in the form, in order; the rest keep their defaults (the CLI has them all).
FORM_FIELDS = ("method", "four_bit", "beta", "r", "alpha", "dropout", "target_modules", "epochs", "max_steps", "lr",
               "batch_size", "grad_accum", "max_len", "packing", "gradient_checkpointing",
               "seed", "validation", "eval_steps", "save_steps", "nproc", "strategy", "name",
               "suites")
DPO_ONLY = ("four_bit", "beta")  # rows shown only for a preference method
METHOD_TEXTS = {"lora": "LoRA (supervised)", "qlora": "QLoRA (supervised, 4-bit base)",
                "dpo": "DPO (preference pairs)"}


class SuitePicker(QListWidget):
    """The catalog's suite versions, ticked to evaluate on; its value is the comma-separated
    refs ``FinetuneOptions.suites`` takes (a bare name ticks that suite's latest version)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setMaximumHeight(110)
        self.wanted: list[str] = []  # refs or names set before the list was filled
        self.itemChanged.connect(self._on_item_changed)

    def set_suites(self, versions: list[tuple[str, str, int, bool]]) -> None:
        """(ref, name, items, judged) of every suite version, the newest of a name last. A
        suite with judged items needs a judge model, which a fine-tune does not name: it is
        listed greyed out, with where to evaluate it instead."""
        wanted = set(self.wanted)
        latest = {name: ref for ref, name, _, _ in versions}
        self.blockSignals(True)
        self.clear()
        for ref, name, items, judged in versions:
            item = QListWidgetItem(f"{ref} ({items} items)")
            item.setData(Qt.ItemDataRole.UserRole, ref)
            item.setFlags(Qt.ItemFlag.ItemIsUserCheckable
                          | (Qt.ItemFlag.NoItemFlags if judged else Qt.ItemFlag.ItemIsEnabled))
            if judged:
                item.setToolTip("Has judged items, which need a judge model: evaluate it on "
                                "the Evaluate page (or 'llmops eval … --judge MODEL').")
            ticked = not judged and (ref in wanted or (name in wanted and latest[name] == ref))
            item.setCheckState(Qt.CheckState.Checked if ticked else Qt.CheckState.Unchecked)
            self.addItem(item)
        if not versions:
            hint = QListWidgetItem("No evaluation suites yet ('llmops suite import').")
            hint.setFlags(Qt.ItemFlag.NoItemFlags)
            self.addItem(hint)
        self.blockSignals(False)

    def value(self) -> str:
        refs = [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())
                if self.item(i).checkState() == Qt.CheckState.Checked
                and self.item(i).flags() & Qt.ItemFlag.ItemIsEnabled]
        return ",".join(r for r in refs if r)

    def set_value(self, text: str | None) -> None:
        self.wanted = suite_names(text or "")
        wanted = set(self.wanted)
        self.blockSignals(True)
        for i in range(self.count()):
            item = self.item(i)
            ref = item.data(Qt.ItemDataRole.UserRole)
            if ref:
                on = ref in wanted or ref.partition("@")[0] in wanted
                item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
        self.blockSignals(False)

    def _on_item_changed(self, _item: QListWidgetItem) -> None:
        self.wanted = suite_names(self.value())


def _suites_editor(spec: FieldSpec) -> Editor:
    picker = SuitePicker()
    return Editor(picker, picker, picker.value, picker.set_value, picker.itemChanged)


OVERRIDES = {"method": Override(choice_texts=METHOD_TEXTS),
             "max_steps": Override(none_text="by epochs"),
             "validation": Override(none_text="dataset's split"),
             "name": Override(none_text="default: BASE-lora-DATASET"),
             "suites": Override(editor=_suites_editor)}


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
    page.suite_picker = page._inputs["suites"]
    page._inputs["method"].currentIndexChanged.connect(page._on_method_changed)
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


def fill_datasets(page: FinetunePage) -> None:
    """The dataset versions the method trains on (DPO: preference pairs only)."""
    ds = page.dataset_combo.currentData()
    page.dataset_combo.blockSignals(True)
    page.dataset_combo.clear()
    for version in page.dataset_versions:
        if page.preference() and version.shape != "preference":
            continue
        page.dataset_combo.addItem(f"{version.ref} ({version.rows} rows, "
                                   f"{version.shape})", version.id)
    if ds is not None and page.dataset_combo.findData(ds) >= 0:
        page.dataset_combo.setCurrentIndex(page.dataset_combo.findData(ds))
    page.dataset_combo.blockSignals(False)


def apply_method(page: FinetunePage) -> None:
    """DPO shows its beta and 4-bit base, and only the preference datasets."""
    dpo = page.preference()
    for name in ("four_bit", "beta"):
        page.form.set_row_visible(name, dpo)
    page._fill_datasets()
    page._update_buttons()
    page._schedule_estimate()


def apply_base(page: FinetunePage) -> None:
    """Defaults for the base's size, and QLoRA enabled only where it can run."""
    from llmops_desktop.finetune.config import defaults_for, model_parameters
    from llmops_desktop.finetune.task import qlora_unavailable

    base_id = page.base_combo.currentData()
    if base_id is None:
        return
    base = page.ctx.catalog.artifact(base_id)
    keep_method = page.preference()  # a new base's size does not undo the DPO choice
    for name, value in defaults_for(model_parameters(base.path, base.metadata)).items():
        if not (name == "method" and keep_method):
            page.form.set_value(name, value)
    reason = qlora_unavailable(base)
    method = page._inputs["method"]
    assert isinstance(method, QComboBox)
    item = method.model().item(method.findData("qlora"))
    item.setEnabled(reason is None)
    item.setToolTip(f"Not available here: {reason}" if reason else
                    "The base in 4-bit (bitsandbytes nf4)")
    if reason is not None and method.currentData() == "qlora":
        method.setCurrentIndex(method.findData("lora"))
    four_bit = page._inputs["four_bit"]
    four_bit.setEnabled(reason is None)
    if reason is not None:
        page.form.set_value("four_bit", False)
        four_bit.setToolTip(f"Not available here: {reason}")
    else:
        four_bit.setToolTip(page.form.specs["four_bit"].description)
    page.qlora_reason = reason
    page._on_method_changed()
