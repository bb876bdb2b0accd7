"""The Quantize dialog: pick targets for one artifact, see what they cost, run, compare.

Everything shown before Start is cheap and live: estimates from the parent's
metadata (``estimate``), the core's own checks (``QuantizeRequest.check``). What touches the
disk (free space, the parent's tensor count, bitsandbytes support) is probed once, in
a thread. Start submits one "quantize" job through the JobController; the dialog
follows that job's progress events (tensor by tensor) and, when it ends, lists the
variants it made with their perplexity against the parent's. The dialog is not modal:
the window stays usable, and closing the dialog leaves the job running.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Artifact
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.jobs.events import Progress
from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.forms import SpecForm, path_override
from llmops_desktop.qt.formatting import human_count, human_size
from llmops_desktop.qt.job_model import ERROR_COLOR
from llmops_desktop.qt.quantize_targets import (
    TargetList,
    needs_intermediate,
    probe,
)
from llmops_desktop.qt.variants_view import variant_item, variants_tree
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.quantize.task import QuantizeRequest
from llmops_desktop.quantize.variants import variant_table

WARN_COLOR = "#c77c02"
FORM_FIELDS = ("eval_text", "threads", "keep_intermediate", "evaluate")
OVERRIDES = {"eval_text": path_override(
    folder=False, title="Evaluation text", filter="Text files (*.txt *.md);;All files (*)",
    placeholder="the held-out text shipped with the app (heldout-en.txt)")}


class QuantizeDialog(QDialog):
    """Quantize one artifact to one or more targets, and show what came of it."""

    sig_started = Signal(int)
    """The quantize job was started (job id)."""
    sig_finished = Signal(int, str)
    """The dialog's job ended and its outcome is shown (job id, final state)."""
    sig_confirmation_requested = Signal(str)
    """Start needs the user's confirmation first (the message shown)."""
    sig_check_failed = Signal(str)
    """Start was refused (the message shown)."""
    sig_probed = Signal()
    """Free space, tensor count and bitsandbytes support are known."""
    sig_show_variants_requested = Signal(int)
    """The user asked to see the parent's Variants tab (artifact id)."""
    sig_serve_requested = Signal(int)
    """The user asked to serve a variant the job made, now (its artifact id)."""

    def __init__(self, ctx: AppContext, artifact: Artifact, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.artifact = artifact
        self.job_id: int | None = None
        self.running = False
        self._cancelling = False
        self.free_bytes: int | None = None
        self.tensor_total: int | None = None
        self.result_rows: list[dict[str, Any]] = []
        self._pending: QuantizeRequest | None = None
        self.setWindowTitle(f"Quantize {artifact.ref}")
        self.setWindowIcon(icon("quantize"))
        self.setMinimumWidth(780)

        header = QLabel(f"Quantize <b>{artifact.ref}</b>")
        font = header.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        header.setFont(font)
        self.summary = QLabel(self._summary_text())
        self.summary.setWordWrap(True)

        self.targets = TargetList(artifact)
        self.targets.sig_checked_changed.connect(self._on_checked_changed)
        self.totals_label = QLabel()
        self.totals_label.setWordWrap(True)

        self.options = SpecForm(QuantizeRequest, names=FORM_FIELDS, overrides=OVERRIDES)
        self.options.set_value("threads", ctx.settings.default_threads)
        self.eval_edit = self.options.input("eval_text")
        self.threads_spin = self.options.input("threads")
        self.keep_check = self.options.input("keep_intermediate")
        if artifact.kind != "hf":
            self.keep_check.setEnabled(False)
            self.keep_check.setToolTip("Only a Hugging Face model goes through an F16 "
                                       "intermediate; this one is a GGUF already.")
        self.options.sig_changed.connect(self._on_options_changed)

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        self.confirm_box = self._build_confirm_box()
        self.progress_box = self._build_progress_box()
        self.results_box = self._build_results_box()

        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.back_button = self.buttons.addButton("Choose targets",
                                                  QDialogButtonBox.ButtonRole.ActionRole)
        self.back_button.setToolTip("Back to the targets, to make more variants")
        self.back_button.clicked.connect(lambda: self.pages.setCurrentIndex(0))
        self.start_button = self.buttons.addButton("Start", QDialogButtonBox.ButtonRole.ActionRole)
        self.start_button.setIcon(icon("quantize"))
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self._on_start_clicked)
        self.buttons.rejected.connect(self.reject)

        # Two pages in the same space: what to make, then how it goes and what came of it.
        choose = QWidget()
        choose_layout = QVBoxLayout(choose)
        choose_layout.setContentsMargins(0, 0, 0, 0)
        choose_layout.addWidget(self.targets, 1)
        choose_layout.addWidget(self.totals_label)
        choose_layout.addWidget(self.options)
        run = QWidget()
        run_layout = QVBoxLayout(run)
        run_layout.setContentsMargins(0, 0, 0, 0)
        run_layout.addWidget(self.progress_box, 1)
        run_layout.addWidget(self.results_box, 1)
        self.pages = QStackedWidget()
        self.pages.addWidget(choose)
        self.pages.addWidget(run)
        self.pages.currentChanged.connect(lambda _: self._update_buttons())

        layout = QVBoxLayout(self)
        layout.addWidget(header)
        layout.addWidget(self.summary)
        layout.addWidget(self.pages, 1)
        layout.addWidget(self.error_label)
        layout.addWidget(self.confirm_box)
        layout.addWidget(self.buttons)
        self.resize(840, 620)

        jobs = ctx.jobs
        jobs.sig_job_progress_event.connect(self._on_job_progress_event)
        jobs.sig_job_log.connect(self._on_job_log)
        jobs.sig_job_finished.connect(self._on_job_finished)
        self._update_totals()
        folder = ctx.home.models_dir
        run_in_thread(lambda: probe(artifact, folder), self._on_probed,
                      lambda exc: self._on_probed({}), receiver=self)

    # ---- building -------------------------------------------------------------------------

    def _summary_text(self) -> str:
        a = self.artifact
        md = a.metadata
        kind = {"hf": "Hugging Face model", "gguf": "GGUF file", "lora": "LoRA adapter"}.get(
            a.kind, a.kind)
        parts = [kind, str(md.get("architecture") or md.get("model_type") or "")]
        if md.get("parameters"):
            parts.append(f"{human_count(md['parameters'])} parameters")
        if md.get("quantization") or md.get("dtype"):
            parts.append(str(md.get("quantization") or md.get("dtype")))
        parts.append(human_size(a.size_bytes))
        return " · ".join(p for p in parts if p)

    def _build_confirm_box(self) -> QFrame:
        box = QFrame()
        box.setObjectName("confirmBox")
        box.setStyleSheet(f"#confirmBox {{ border: 1px solid {WARN_COLOR}; border-radius: 4px; "
                          "background: rgba(199, 124, 2, 30); }")
        self.confirm_label = QLabel()
        self.confirm_label.setWordWrap(True)
        self.confirm_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.confirm_button = QPushButton("Quantize anyway")
        self.confirm_button.clicked.connect(self._on_confirm_clicked)
        back = QPushButton("Change targets")
        back.clicked.connect(self._clear_messages)
        warn = QLabel()
        warn.setPixmap(icon("info").pixmap(20, 20))
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(back)
        row.addWidget(self.confirm_button)
        text = QVBoxLayout()
        text.addWidget(self.confirm_label)
        text.addLayout(row)
        layout = QHBoxLayout(box)
        layout.addWidget(warn, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(text, 1)
        box.hide()
        return box

    def _build_progress_box(self) -> QGroupBox:
        box = QGroupBox("Progress")
        self.stage_label = QLabel()
        self.tensor_label = QLabel()
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.tensor_label.setFont(mono)
        self.tensor_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 0)
        self.cancel_button = QPushButton(icon("cancel"), "Cancel job")
        self.cancel_button.setToolTip("Stop the job; variants it has finished stay in the "
                                      "catalog, the one in progress is thrown away")
        self.cancel_button.clicked.connect(self.cancel_job)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(500)
        self.log_view.setMinimumHeight(72)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        bar_row = QHBoxLayout()
        bar_row.addWidget(self.progress_bar, 1)
        bar_row.addWidget(self.cancel_button)
        layout = QVBoxLayout(box)
        layout.addWidget(self.stage_label)
        layout.addWidget(self.tensor_label)
        layout.addLayout(bar_row)
        layout.addWidget(self.log_view, 1)
        return box

    def _build_results_box(self) -> QGroupBox:
        box = QGroupBox("Variants made")
        self.results_tree = variants_tree()
        self.results_tree.headerItem().setText(4, "Change vs parent")
        self.results_note = QLabel()
        self.results_note.setWordWrap(True)
        self.show_variants_button = QPushButton(icon("variants"), "Show in Variants tab")
        self.show_variants_button.clicked.connect(
            lambda: self.sig_show_variants_requested.emit(self.artifact.id))
        self.serve_button = QPushButton(icon("deploy"), "Serve this")
        self.serve_button.setToolTip("Serve the variant just made with the suggested settings; "
                                     "the Deployments page shows it, and Chat opens the "
                                     "Playground once it runs")
        self.serve_button.clicked.connect(self._on_serve_clicked)
        self.serve_button.hide()
        self.serve_id: int | None = None
        row = QHBoxLayout()
        row.addWidget(self.results_note, 1)
        row.addWidget(self.show_variants_button)
        row.addWidget(self.serve_button)
        layout = QVBoxLayout(box)
        layout.addWidget(self.results_tree)
        layout.addLayout(row)
        box.hide()
        return box

    # ---- public ---------------------------------------------------------------------------

    def target_names(self) -> list[str]:
        return self.targets.names()

    def target_item(self, name: str) -> QTreeWidgetItem:
        return self.targets.item_of(name)

    def is_available(self, name: str) -> bool:
        return self.targets.is_available(name)

    def set_checked(self, names: list[str], checked: bool = True) -> None:
        self.targets.set_checked(names, checked)

    def checked_targets(self) -> list[str]:
        return self.targets.checked()

    def estimates(self) -> dict[str, tuple[str, str]]:
        return self.targets.estimates()

    def request(self, targets: list[str], *, force: bool = False) -> QuantizeRequest:
        """What the dialog's options ask for (not yet checked)."""
        values = self.options.values()
        values["keep_intermediate"] &= self.artifact.kind == "hf"
        return QuantizeRequest(artifact_id=self.artifact.id, targets=tuple(targets), force=force,
                               **values)

    def cancel_job(self) -> None:
        if self.job_id is None or not self.running or self._cancelling:
            return
        self._cancelling = True
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Cancelling…")
        self.stage_label.setText("Cancelling: stopping the job's processes…")
        self.ctx.jobs.cancel(self.job_id)

    # ---- before the start -----------------------------------------------------------------

    def _on_probed(self, found: dict[str, Any]) -> None:
        self.free_bytes = found.get("free")
        self.tensor_total = found.get("tensors")
        self.targets.apply_bnb_reasons(found.get("bnb", {}))
        self.targets.apply_layout(found.get("layout"))
        self._update_totals()
        self.sig_probed.emit()

    def _on_checked_changed(self) -> None:
        self._clear_messages()
        self._update_totals()

    def _update_buttons(self) -> None:
        choosing = self.pages.currentIndex() == 0
        self.start_button.setVisible(choosing)
        self.start_button.setEnabled(bool(self.checked_targets()) and not self.running)
        self.back_button.setVisible(not choosing and not self.running)

    def _update_totals(self) -> None:
        targets = self.checked_targets()
        self._update_buttons()
        if not targets:
            how = ("from the parent's tensors, as llama.cpp quantizes each"
                   if self.targets.layout is not None
                   else "from the parameter count and typical bits per weight")
            self.totals_label.setText(f"Tick one or more targets. Sizes and memory are "
                                      f"estimates {how}.")
            self.totals_label.setStyleSheet("")
            return
        tl = self.targets
        sizes = {t: {"size_bytes": tl.size_of(t), "memory_bytes": tl.memory_of(t)}
                 for t in targets}
        total = sum(e["size_bytes"] for e in sizes.values())
        extra = 0.0
        note = ""
        if needs_intermediate(self.artifact, targets):
            if "F16" not in targets:
                extra = tl.size_of("F16")
                kept = self.keep_check.isChecked()
                note = (f" plus the F16 intermediate ({human_size(extra)}, "
                        + ("kept)" if kept else "removed afterwards)"))
        biggest, figures = max(sizes.items(), key=lambda kv: kv[1]["memory_bytes"])
        memory = human_size(figures["memory_bytes"])
        if len(targets) == 1:
            text = (f"1 variant: about {human_size(total)} on disk{note}. It needs about "
                    f"{memory} of memory to run.")
        else:
            text = (f"{len(targets)} variants: about {human_size(total)} on disk{note}. "
                    f"The largest, {biggest}, needs about {memory} of memory to run.")
        needed = total + extra
        if self.free_bytes is not None:
            text += f" {human_size(self.free_bytes)} free in the store."
        self.totals_label.setText(text)
        short = self.free_bytes is not None and needed * 1.05 > self.free_bytes
        self.totals_label.setStyleSheet(f"color: {ERROR_COLOR};" if short else "")
        if short:
            self.totals_label.setText(text + " Not enough space: free some, or pick fewer "
                                             "or smaller targets.")

    def _clear_messages(self) -> None:
        self.error_label.hide()
        self.error_label.setText("")
        self.confirm_box.hide()
        self._pending = None

    def _show_error(self, message: str) -> None:
        self.confirm_box.hide()
        self.error_label.setText(message)
        self.error_label.show()
        self.sig_check_failed.emit(message)

    def _on_options_changed(self) -> None:
        self._clear_messages()
        self._update_totals()

    def _on_start_clicked(self) -> None:
        self._clear_messages()
        targets = self.checked_targets()
        if not targets:
            self._show_error("Tick at least one target.")
            return
        catalog = self.ctx.catalog
        try:
            request = self.request(targets).check(catalog)
        except InvalidInputError as exc:
            try:  # refused only without force: ask, rather than refuse
                forced = self.request(targets, force=True).check(catalog)
            except InvalidInputError as hard:
                self._show_error(str(hard))
                return
            self._pending = forced
            message = str(exc).replace("pass --force if you really want this",
                                       "choose Quantize anyway if you really want this")
            self.confirm_label.setText(message)
            self.confirm_box.show()
            self.sig_confirmation_requested.emit(message)
            return
        self._start(request)

    def _on_confirm_clicked(self) -> None:
        request = self._pending
        self.confirm_box.hide()
        if request is not None:
            self._start(request)

    # ---- running --------------------------------------------------------------------------

    def _start(self, request: QuantizeRequest) -> None:
        try:
            job = self.ctx.jobs.start(request)
        except Exception as exc:  # noqa: BLE001 - shown inline
            self._show_error(f"The quantize job could not start: {exc}")
            return
        self.job_id = job.id
        self._set_running(True)
        how = [", ".join(request.targets), f"{request.threads} threads",
               Path(request.eval_text).name if request.eval_text else "shipped text"]
        if not request.evaluate:
            how[2] = "no perplexity"
        if request.keep_intermediate:
            how.insert(1, "keeping the F16")
        self.progress_box.setTitle(f"Job #{job.id}: " + " · ".join(how))
        self.stage_label.setText("Starting…")
        self._set_tensor_text("")
        self.progress_bar.setRange(0, 0)
        self.progress_bar.setFormat("%p%")
        self.log_view.clear()
        self.sig_started.emit(job.id)

    def _set_running(self, running: bool) -> None:
        self.running = running
        self._cancelling = False
        self.cancel_button.setVisible(running)
        self.cancel_button.setEnabled(running)
        self.cancel_button.setText("Cancel job")
        if running:
            self.results_box.hide()
            self.pages.setCurrentIndex(1)
        self._update_buttons()

    def _on_job_progress_event(self, job_id: int, event: object) -> None:
        if job_id != self.job_id or not isinstance(event, Progress) or self._cancelling:
            return
        message = event.message
        total = event.total
        if event.unit == "tensors":
            if message.startswith("converting "):
                stage, tensor = "Converting the Hugging Face weights to GGUF", message[11:]
                total = total or self.tensor_total
            elif ": " in message:
                target, tensor = message.split(": ", 1)
                stage = f"Quantizing to {target}"
            else:
                stage, tensor = message, ""
            self.stage_label.setText(stage)
            counted = f"tensor {int(event.done)}" + (f" of {int(total)}" if total else "")
            self._set_tensor_text(f"{counted}: {tensor}" if tensor else counted)
        elif message.startswith("measuring perplexity of "):
            label = message[len("measuring perplexity of "):]
            label = self.artifact.ref if label == "parent" else label
            self.stage_label.setText(f"Measuring the perplexity of {label} on the held-out text")
            self._set_tensor_text("")
        else:
            self.stage_label.setText(message[:1].upper() + message[1:] if message else "Working…")
            self._set_tensor_text("")
        if total and event.done <= total:
            if event.unit == "tensors":
                self.progress_bar.setRange(0, int(total))
                self.progress_bar.setValue(int(event.done))
                self.progress_bar.setFormat("%v / %m tensors")
            else:
                self.progress_bar.setRange(0, 1000)
                self.progress_bar.setValue(int(event.done / total * 1000))
                self.progress_bar.setFormat("%p%")
        else:
            self.progress_bar.setRange(0, 0)

    def _set_tensor_text(self, text: str) -> None:
        self.tensor_label.setText(text)
        self.tensor_label.setVisible(bool(text))

    def _on_job_log(self, job_id: int, line: str) -> None:
        if job_id == self.job_id and not line.startswith("result: "):
            self.log_view.appendPlainText(line)

    def _on_job_finished(self, job_id: int, state: str) -> None:
        if job_id != self.job_id or not self.running:
            return
        job = self.ctx.catalog.job(job_id)
        result = job.result or {}
        made = [int(i) for i in result.get("artifact_ids") or []]
        if state != "succeeded":
            made = [a.id for a in self.ctx.catalog.artifacts() if a.job_id == job_id]
        self._set_running(False)
        if state == "succeeded" or self.progress_bar.maximum() == 0:
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(1 if state == "succeeded" else 0)
        self.progress_bar.setFormat("done" if state == "succeeded" else state)
        self._set_tensor_text("")
        if state == "succeeded":
            noun = "variant" if len(made) == 1 else "variants"
            self.stage_label.setText(f"Job #{job_id} finished: {len(made)} {noun} made.")
        elif state == "cancelled":
            kept = (f" The {len(made)} variant(s) finished before the cancel stay in the catalog."
                    if made else " Nothing from this run was kept.")
            self.stage_label.setText(f"Job #{job_id} was cancelled." + kept)
        else:
            self.stage_label.setText(f"Job #{job_id} {state}.")
            self._show_error(f"Quantizing failed: {job.error or state}")
        self._show_results(made)
        bar = self.log_view.verticalScrollBar()
        bar.setValue(bar.maximum())
        self.sig_finished.emit(job_id, state)

    def _show_results(self, made: list[int]) -> None:
        self.results_tree.clear()
        self.result_rows = []
        if not made:
            self.results_box.hide()
            return
        rows = variant_table(self.ctx.catalog, self.artifact.id)
        wanted = {self.artifact.id, *made}
        self.result_rows = [r for r in rows if r["artifact_id"] in wanted]
        for row in self.result_rows:
            self.results_tree.addTopLevelItem(
                variant_item(row, base=row["artifact_id"] == self.artifact.id))
        base = next((r for r in self.result_rows if r["artifact_id"] == self.artifact.id), None)
        if base is not None and base.get("perplexity") is not None:
            self.results_note.setText(
                f"Perplexity on the same held-out text; {self.artifact.ref} measures "
                f"{base['perplexity']:.2f} (lower is better). The variants are in the catalog "
                f"under {self.artifact.ref}.")
        else:
            self.results_note.setText(f"The variants are in the catalog under "
                                      f"{self.artifact.ref}.")
        self._offer_serving(made)
        self.results_box.show()

    def _offer_serving(self, made: list[int]) -> None:
        """'Serve this' for the smallest GGUF made (the quickest to a first reply)."""
        ggufs = []
        for artifact_id in made:
            try:
                a = self.ctx.catalog.artifact(artifact_id)
            except Exception:  # noqa: BLE001 - removed meanwhile
                continue
            if a.kind == "gguf" and a.state == "ready" and a.metadata.get("format") != "lora-gguf":
                ggufs.append(a)
        best = min(ggufs, key=lambda a: a.size_bytes) if ggufs else None
        self.serve_id = best.id if best is not None else None
        self.serve_button.setVisible(best is not None)
        if best is not None:
            self.serve_button.setText(f"Serve this ({best.params.get('target') or best.ref})")
            self.serve_button.setDefault(True)

    def _on_serve_clicked(self) -> None:
        """Serve the variant; the dialog's work is done, so it closes (the window, on the
        Deployments page, comes forward)."""
        if self.serve_id is not None:
            self.sig_serve_requested.emit(self.serve_id)
            self.close()

    def results_texts(self) -> list[list[str]]:
        out = []
        for i in range(self.results_tree.topLevelItemCount()):
            item = self.results_tree.topLevelItem(i)
            out.append([item.text(c) for c in range(item.columnCount())])
        return out

    # ---- closing --------------------------------------------------------------------------

    def reject(self) -> None:
        if self.running:
            self.ctx.events.sig_info.emit(
                f"Quantize job #{self.job_id} goes on in the background; the Jobs page shows it.")
        super().reject()
