"""The Fine-tune page: settings with defaults per model size, the memory estimate, live charts.

The form is built from :class:`~llmops_desktop.finetune.config.FinetuneOptions` (each
field's description is its tooltip). Start submits a "finetune" job through the window's
job controller. The charts follow a job by reading its run folder's ``metrics.jsonl``
(one line per step, written by the training loop), so they work the same for a job this
window started and for one found running when the window opens again (re-attach).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QSplitter, QVBoxLayout, QWidget

from llmops_desktop.catalog import JobState
from llmops_desktop.finetune.config import FinetuneOptions
from llmops_desktop.qt.context import AppContext, Page
from llmops_desktop.qt.finetune_charts import TrainingCharts
from llmops_desktop.qt.finetune_form import (
    apply_base,
    apply_method,
    build_form,
    fill_datasets,
    update_estimate,
)

POLL_MS = 500


class FinetunePage(Page):
    page_id = "finetune"
    title = "Fine-tune"
    icon_name = "quantize"
    tooltip = "Train a LoRA/QLoRA adapter, or DPO on preference pairs, with live charts"

    sig_points_added = Signal(int)
    """New metric points of the followed job were drawn (how many in all)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.job_id: int | None = None
        self.dataset_versions: list[Any] = []  # every dataset version, for the filter
        self.qlora_reason: str | None = None
        split = QSplitter()
        split.addWidget(self._build_form())
        split.addWidget(self._build_charts())
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(split)
        self._estimate_timer = QTimer(self, singleShot=True, interval=200)
        self._estimate_timer.timeout.connect(self.update_estimate)
        self._poll = QTimer(self, interval=POLL_MS)
        self._poll.timeout.connect(self.poll_metrics)
        self._poll.start()
        ctx.jobs.sig_job_finished.connect(self._on_job_finished)
        ctx.jobs.sig_jobs_changed.connect(self._update_buttons)
        self._on_method_changed()
        self.reload()
        self.reattach()

    # ---- building ---------------------------------------------------------------------------

    def _build_form(self) -> QWidget:
        return build_form(self)

    def _on_link(self, target: str) -> None:
        show = getattr(self.window(), "show_page", None)
        if show is not None:
            show(target)

    def start_blocked_reason(self) -> str:
        """Why Start cannot run now (empty when it can)."""
        if self.base_combo.currentData() is None:
            return ("Import a Hugging Face model to fine-tune (a GGUF file cannot be trained; "
                    "fine-tune its Hugging Face parent).")
        if self.dataset_combo.currentData() is None:
            if self.preference() and self.dataset_versions:
                return ("DPO trains on preference pairs (prompt, chosen, rejected), and no "
                        "dataset here has them. On the <a href='datasets'>Datasets</a> page, "
                        "make one from the team's ratings (Feedback to dataset, preference) "
                        "or import a JSONL with prompt, chosen and rejected columns.")
            return ("Choose a dataset first: import one on the "
                    "<a href='datasets'>Datasets</a> page.")
        return ""

    def preference(self) -> bool:
        """The chosen method trains on preference pairs (DPO)."""
        from llmops_desktop.finetune.config import PREFERENCE_METHODS

        return self.form.value("method") in PREFERENCE_METHODS

    def _build_charts(self) -> QWidget:
        self.charts = TrainingCharts()
        self.job_combo, self.eta_label = self.charts.job_combo, self.charts.eta_label
        self.result_label, self.plots = self.charts.result_label, self.charts.plots
        self.job_combo.activated.connect(lambda _i: self.follow(self.job_combo.currentData()))
        return self.charts

    @property
    def points(self) -> list[dict[str, Any]]:
        return self.charts.points

    @property
    def _curves(self) -> dict[str, Any]:
        return self.charts.curves

    def _make_plots(self) -> None:
        self.charts.make_plots()

    def showEvent(self, event: Any) -> None:
        self._make_plots()
        super().showEvent(event)

    def on_shown(self) -> None:
        self._make_plots()
        self.reload()

    def refresh(self) -> None:
        self.reload()

    def reload(self) -> None:
        from llmops_desktop.datasets.store import list_datasets
        from llmops_desktop.evaluate.suites import list_suites

        base = self.base_combo.currentData()
        self.base_combo.blockSignals(True)
        self.base_combo.clear()
        for a in self.ctx.catalog.artifacts():
            if a.kind == "hf":
                self.base_combo.addItem(a.ref, a.id)
        self.base_combo.blockSignals(False)
        self.dataset_versions = [v for d in list_datasets(self.ctx.catalog) for v in d.versions]
        self._fill_datasets()
        self.suite_picker.set_suites([(s.ref, s.name, s.items, bool(s.kinds.get("judged")))
                                      for s in list_suites(self.ctx.catalog)])
        if base is not None and self.base_combo.findData(base) >= 0:
            self.base_combo.setCurrentIndex(self.base_combo.findData(base))
        else:
            self._on_base_changed()
        self._reload_jobs()

    def _fill_datasets(self) -> None:
        fill_datasets(self)

    def _on_method_changed(self, *_: object) -> None:
        apply_method(self)

    def _reload_jobs(self) -> None:
        current = self.job_combo.currentData()
        self.job_combo.clear()
        for job in self.ctx.catalog.jobs(limit=100):
            if job.kind == "finetune":
                self.job_combo.addItem(f"#{job.id} {job.state.value}", job.id)
        target = self.job_id if self.job_id is not None else current
        if target is not None and self.job_combo.findData(target) >= 0:
            self.job_combo.setCurrentIndex(self.job_combo.findData(target))
        self._update_buttons()

    def set_base(self, artifact_id: int) -> None:
        """Preselect a base model (the Models page's "Fine-tune…")."""
        self.reload()
        index = self.base_combo.findData(artifact_id)
        if index >= 0:
            self.base_combo.setCurrentIndex(index)

    def _on_base_changed(self, *_: object) -> None:
        apply_base(self)

    def set_option(self, name: str, value: Any) -> None:
        self.form.set_value(name, value)

    def options(self) -> FinetuneOptions:
        """The form's options over the defaults of the fields it does not show."""
        return FinetuneOptions.from_dict(FinetuneOptions().to_dict() | self.form.values())

    def _schedule_estimate(self, *_: object) -> None:
        self._estimate_timer.start()

    def update_estimate(self) -> None:
        update_estimate(self)

    # ---- jobs -------------------------------------------------------------------------------

    def reattach(self) -> None:
        """Follow the newest running fine-tune (one started before this window, too)."""
        for job in self.ctx.catalog.jobs(limit=100):
            if job.kind == "finetune" and not job.state.finished:
                self.follow(job.id)
                return
        latest = next((j for j in self.ctx.catalog.jobs(limit=100) if j.kind == "finetune"), None)
        if latest is not None:
            self.follow(latest.id)

    def follow(self, job_id: int | None) -> None:
        if job_id is None:
            return
        self.job_id = int(job_id)
        self.charts.reset()
        self._reload_jobs()
        self.poll_metrics()
        self._show_result()

    def _metrics_path(self) -> Path | None:
        if self.job_id is None:
            return None
        from llmops_desktop.finetune.task import run_dir_of
        from llmops_desktop.finetune.train import METRICS_FILE

        return run_dir_of(self.ctx.home, self.job_id) / METRICS_FILE

    def poll_metrics(self) -> None:
        """Read the lines the followed job added since the last look (a small read)."""
        path = self._metrics_path()
        if path is not None and path.is_file() and self.charts.read(path):
            self.sig_points_added.emit(len(self.points))

    def loss_points(self) -> list[tuple[int, float]]:
        return self.charts.loss_points()

    def _selected_job(self) -> Any:
        if self.job_id is None:
            return None
        try:
            return self.ctx.catalog.job(self.job_id)
        except Exception:  # noqa: BLE001
            return None

    def _update_buttons(self) -> None:
        reason = self.start_blocked_reason()
        self.start_button.setEnabled(not reason)
        plain = reason.replace("<a href='datasets'>", "").replace("</a>", "")
        self.start_button.setToolTip(plain or "Start training")
        self.start_reason.setText(reason)
        self.start_reason.setVisible(bool(reason))
        job = self._selected_job()
        running = job is not None and not job.state.finished
        self.cancel_button.setEnabled(running)
        self.resume_button.setEnabled(job is not None and job.state in (
            JobState.CANCELLED, JobState.FAILED, JobState.INTERRUPTED))
        self.merge_button.setEnabled(job is not None and job.state is JobState.SUCCEEDED
                                     and bool(job.result and job.result.get("artifact_id")))

    def start(self) -> int | None:
        from llmops_desktop.finetune.task import FinetuneRequest

        base_id, ds_id = self.base_combo.currentData(), self.dataset_combo.currentData()
        if base_id is None or ds_id is None:
            self.status.setText("Choose a base model and a dataset.")
            return None
        try:
            request = FinetuneRequest(base_id=base_id, dataset_id=ds_id,
                                      options=self.options()).check(self.ctx.catalog)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.status.setText(str(exc))
            return None
        job = self.ctx.jobs.start(request)
        self.status.setText(f"started job #{job.id}")
        self.follow(job.id)
        return job.id

    def cancel(self) -> None:
        if self.job_id is not None:
            self.ctx.jobs.cancel(self.job_id)
            self.status.setText(f"cancelling job #{self.job_id}: it saves a checkpoint first")

    def resume(self) -> int | None:
        from llmops_desktop.finetune.task import FinetuneRequest

        if self.job_id is None:
            return None
        try:
            request = FinetuneRequest.resume(self.ctx.catalog, self.job_id).check(
                self.ctx.catalog)
        except Exception as exc:  # noqa: BLE001
            self.status.setText(str(exc))
            return None
        job = self.ctx.jobs.start(request)
        self.status.setText(f"resuming as job #{job.id}")
        self.follow(job.id)
        return job.id

    def merge(self) -> int | None:
        job = self._selected_job()
        if job is None or not job.result or not job.result.get("artifact_id"):
            return None
        from llmops_desktop.finetune.merge import MergeRequest

        try:
            request = MergeRequest(adapter_id=job.result["artifact_id"]).check(self.ctx.catalog)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.status.setText(str(exc))
            return None
        merge = self.ctx.jobs.start(request)
        self.status.setText(f"merging in job #{merge.id}; the merge appears on the Models page")
        return merge.id

    def _on_job_finished(self, job_id: int, state: str) -> None:
        if job_id == self.job_id:
            self.poll_metrics()
            self._show_result()
        self._reload_jobs()

    def _show_result(self) -> None:
        job = self._selected_job()
        if job is None or not job.state.finished:
            return
        if job.state is not JobState.SUCCEEDED:
            self.result_label.setText(f"job #{job.id} {job.state.value}: {job.error or ''}")
            return
        r = job.result or {}
        ppl = r.get("perplexity", {})
        text = f"adapter {r.get('ref', '')} after {r.get('steps')} steps"
        if ppl:
            text += ("; validation perplexity: base " + f"{ppl.get('base', math.nan):.3f}"
                     + f"  →  tuned {ppl.get('tuned', math.nan):.3f}")
        if r.get("final_reward_margin") is not None:
            text += f"; reward margin {r['final_reward_margin']:.3f}"
            if r.get("final_val_reward_margin") is not None:
                text += f" (validation {r['final_val_reward_margin']:.3f})"
        if r.get("suites"):
            text += (f"; evaluated with its base on {r['suites']}: the comparison is on the "
                     "adapter's page (Models)")
        self.result_label.setText(text)


def open_finetune(widget: QWidget, artifact: Any) -> FinetunePage | None:
    """The Models page's "Fine-tune…": show this page with the artifact as the base."""
    window = widget.window()
    ctx: AppContext | None = getattr(widget, "ctx", None)
    if artifact is None:
        return None
    source = hf_source(ctx, artifact) if ctx is not None and artifact.kind == "gguf" else None
    if source is not None:  # a GGUF cannot be trained: its Hugging Face weights can
        page = open_finetune(widget, source)
        if page is not None:
            page.status.setText(f"{artifact.ref} is a GGUF file, which cannot be trained; the "
                                f"base is the Hugging Face model it was made from, "
                                f"{source.ref}.")
        return page
    if artifact.kind != "hf":
        if ctx is not None:
            ctx.events.sig_error.emit(
                f"{artifact.ref} is a {artifact.kind} artifact; fine-tuning starts from a "
                "Hugging Face model (its HF parent, or a merge).")
        return None
    show = getattr(window, "show_page", None)
    if show is None:
        return None
    page = show("finetune")
    if isinstance(page, FinetunePage):
        page.set_base(artifact.id)
        return page
    return None


def hf_source(ctx: AppContext, artifact: Any) -> Any:
    """The Hugging Face model a GGUF was made from (its nearest HF ancestor), or None."""
    seen: set[int] = set()
    while artifact is not None and artifact.parent_id is not None and artifact.id not in seen:
        seen.add(artifact.id)
        try:
            artifact = ctx.catalog.artifact(artifact.parent_id)
        except Exception:  # noqa: BLE001 - the parent was removed
            return None
        if artifact.kind == "hf":
            return artifact
    return None

