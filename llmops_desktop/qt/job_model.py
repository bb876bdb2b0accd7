"""The Jobs page's table: a thin adapter over the job rows the controller polls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QApplication,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QStyleOptionViewItem,
)

from llmops_desktop.catalog import Job
from llmops_desktop.qt.formatting import CANCELLING, job_state_label, local_time, params_text
from llmops_desktop.qt.job_controller import JobController

Index = QModelIndex | QPersistentModelIndex
JOB_ROLE = Qt.ItemDataRole.UserRole + 1
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2
COLUMNS = ["ID", "Kind", "What", "State", "Progress", "Message", "Started"]
PROGRESS_COLUMN = 4
ERROR_COLOR = "#d9534f"  # readable on light and dark palettes


def job_summary(job: Job) -> str:
    """A short description of what the job works on."""
    params = job.params
    if job.kind == "import" and params.get("path"):
        return Path(str(params["path"])).name or str(params["path"])
    if job.kind == "demo":
        return f"demo model (seed {params.get('seed', 0)})"
    if job.kind == "download":
        files = params.get("files") or params.get("include") or []
        what = f" ({len(files)} files)" if files else ""
        return f"{params.get('repo_id', '?')}{what}"
    if job.kind == "quantize":
        return f"artifact #{params.get('artifact_id')} → {', '.join(params.get('targets', []))}"
    text = params_text(params, sep=", ")
    return text if len(text) <= 80 else text[:79] + "…"


class JobTableModel(QAbstractTableModel):
    """Rows are jobs, newest first; progress comes live from stdout when this window owns them."""

    def __init__(self, controller: JobController, parent: Any = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self._jobs: list[Job] = []
        controller.sig_jobs_changed.connect(self.sync)
        controller.sig_job_progress.connect(self._on_progress)
        self.sync()

    def sync(self) -> None:
        jobs = self.controller.jobs()
        if [j.id for j in jobs] == [j.id for j in self._jobs]:
            self._jobs = jobs
            if jobs:
                self.dataChanged.emit(self.index(0, 0),
                                      self.index(len(jobs) - 1, len(COLUMNS) - 1))
            return
        self.beginResetModel()
        self._jobs = jobs
        self.endResetModel()

    def job_at(self, row: int) -> Job:
        return self._jobs[row]

    def row_of(self, job_id: int) -> int | None:
        for row, job in enumerate(self._jobs):
            if job.id == job_id:
                return row
        return None

    def progress_of(self, job: Job) -> tuple[float | None, str]:
        live = self.controller.live_progress(job.id)
        if job.state.value == "succeeded":
            return 1.0, job.message
        if live is not None and not job.state.finished:
            return live
        return job.progress, job.message

    def _on_progress(self, job_id: int, fraction: object, message: str) -> None:
        row = self.row_of(job_id)
        if row is not None:
            self.dataChanged.emit(self.index(row, PROGRESS_COLUMN), self.index(row, 5))

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._jobs)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        job = self._jobs[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            fraction, message = self.progress_of(job)
            state = job_state_label(job.state)
            if self.controller.is_cancelling(job.id) and not job.state.finished:
                state = CANCELLING
            values = [str(job.id), job.kind, job_summary(job), state,
                      "" if fraction is None else f"{fraction * 100:.0f}%",
                      job.error or message, local_time(job.started_at or job.created_at)]
            return values[col]
        if role == PROGRESS_ROLE:
            return self.progress_of(job)[0]
        if role == JOB_ROLE:
            return job
        if role == Qt.ItemDataRole.ToolTipRole and col in (2, 5):
            return job.error or params_text(job.params, sep="\n")
        if role == Qt.ItemDataRole.ForegroundRole and col == 3 and job.state.value in (
                "failed", "interrupted"):
            return QColor(ERROR_COLOR)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None


class ProgressDelegate(QStyledItemDelegate):
    """Draws the progress column as a progress bar (busy stripes when the total is unknown)."""

    def paint(self, painter: Any, option: QStyleOptionViewItem, index: Index) -> None:
        fraction = index.data(PROGRESS_ROLE)
        job = index.data(JOB_ROLE)
        if fraction is None and (job is None or job.state.finished):
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(3, 4, -3, -4)
        bar.minimum, bar.maximum = 0, 1000
        bar.progress = int((fraction or 0.0) * 1000)
        bar.text = "" if fraction is None else f"{fraction * 100:.0f}%"
        bar.textVisible = True
        bar.state = option.state | QStyle.StateFlag.State_Horizontal
        style = option.widget.style() if option.widget else QApplication.style()
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, option.widget)
