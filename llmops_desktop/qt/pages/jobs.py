"""The Jobs page: every job with its state and progress, the selected one's log, Cancel.

Jobs started anywhere (this window, the CLI, an earlier window) show up: the
controller polls the catalog, and the log tail reads the job's log file.
"""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSettings, Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Job
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.formatting import CANCELLING, job_state_label, local_time, params_text
from llmops_desktop.qt.job_model import (
    ERROR_COLOR,
    JOB_ROLE,
    PROGRESS_COLUMN,
    JobTableModel,
    ProgressDelegate,
    job_summary,
)

TAIL_BYTES = 64 * 1024
TAIL_MS = 500


class JobsPage(Page):
    """Follow and cancel long work."""

    page_id = "jobs"
    title = "Jobs"
    icon_name = "jobs"
    tooltip = "Imports and other long work: progress, logs, cancel"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.model = JobTableModel(ctx.jobs, self)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setItemDelegateForColumn(PROGRESS_COLUMN, ProgressDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 10)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(5, QHeaderView.ResizeMode.Stretch)
        for column, width in enumerate((44, 64, 200, 90, 130, 200, 130)):
            if column != 5:
                self.table.setColumnWidth(column, width)
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.model.modelReset.connect(self._on_model_reset)

        self.header = QLabel("No job selected")
        font = self.header.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.header.setFont(font)
        self.params_label = QLabel()
        self.params_label.setWordWrap(True)
        self.params_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton(icon("cancel"), "Cancel job")
        self.cancel_button.setToolTip("Stop the job's process; nothing half-done is kept")
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.open_log_button = QPushButton(icon("file"), "Open log file")
        self.open_log_button.clicked.connect(self._on_open_log_clicked)
        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.open_log_button)
        buttons.addStretch(1)
        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        self.log_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        mono = QFont("monospace")
        mono.setStyleHint(QFont.StyleHint.Monospace)
        self.log_view.setFont(mono)
        self.log_view.setPlaceholderText("The selected job's log appears here.")
        details = QWidget()
        dlayout = QVBoxLayout(details)
        dlayout.setContentsMargins(0, 6, 0, 0)
        dlayout.addWidget(self.header)
        dlayout.addWidget(self.params_label)
        dlayout.addWidget(self.error_label)
        dlayout.addLayout(buttons)
        dlayout.addWidget(self.log_view, 1)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(details)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.splitter)

        self._job_id: int | None = None
        self._log_offset = 0
        self._tail_timer = QTimer(self)
        self._tail_timer.setInterval(TAIL_MS)
        self._tail_timer.timeout.connect(self._read_log)
        ctx.jobs.sig_jobs_changed.connect(self._on_jobs_changed)
        ctx.jobs.sig_job_started.connect(self.select_job)
        self._show_job(None)
        if self.model.rowCount():
            self.table.selectRow(0)

    # ---- public ---------------------------------------------------------------------------

    def select_job(self, job_id: int) -> bool:
        row = self.model.row_of(job_id)
        if row is None:
            self.ctx.jobs.poll()
            row = self.model.row_of(job_id)
        if row is None:
            return False
        flags = (QItemSelectionModel.SelectionFlag.ClearAndSelect
                 | QItemSelectionModel.SelectionFlag.Rows)
        self.table.selectionModel().setCurrentIndex(self.model.index(row, 0), flags)
        return True

    def selected_job(self) -> Job | None:
        return self._current_job()

    def refresh(self) -> None:
        self.ctx.jobs.poll()
        self._read_log()

    def on_shown(self) -> None:
        self.ctx.jobs.poll()

    def save_state(self, state: QSettings) -> None:
        state.setValue("jobs/splitter", self.splitter.saveState())

    def restore_state(self, state: QSettings) -> None:
        if (value := state.value("jobs/splitter")) is not None:
            self.splitter.restoreState(value)

    # ---- slots ----------------------------------------------------------------------------

    def _current_job(self) -> Job | None:
        if self._job_id is None:
            return None
        row = self.model.row_of(self._job_id)
        return self.model.job_at(row) if row is not None else None

    def _on_current_changed(self, current: QModelIndex, previous: QModelIndex) -> None:
        job = current.data(JOB_ROLE) if current.isValid() else None
        self._show_job(job)

    def _on_model_reset(self) -> None:
        if self._job_id is not None:
            row = self.model.row_of(self._job_id)
            if row is not None:
                self.table.selectionModel().setCurrentIndex(
                    self.model.index(row, 0), QItemSelectionModel.SelectionFlag.ClearAndSelect
                    | QItemSelectionModel.SelectionFlag.Rows)

    def _on_jobs_changed(self) -> None:
        self._update_details(self._current_job())

    def _show_job(self, job: Job | None) -> None:
        new_id = job.id if job else None
        if new_id != self._job_id:
            self._job_id = new_id
            self._log_offset = 0
            self.log_view.clear()
        self._update_details(job)
        self._read_log()
        if job is not None:
            self._tail_timer.start()
        else:
            self._tail_timer.stop()

    def _update_details(self, job: Job | None) -> None:
        if job is None:
            self.header.setText("No job selected")
            self.params_label.setText("")
            self.error_label.setText("")
            self.cancel_button.setEnabled(False)
            self.open_log_button.setEnabled(False)
            return
        cancelling = self.ctx.jobs.is_cancelling(job.id)
        state = CANCELLING if cancelling and not job.state.finished else job_state_label(
            job.state)
        self.header.setText(f"Job #{job.id} · {job.kind} · {job_summary(job)} — {state}")
        when = [f"{label} {local_time(ts)}" for label, ts in (
            ("queued", job.created_at), ("started", job.started_at),
            ("finished", job.finished_at)) if ts]
        self.params_label.setText(params_text(job.params) + "\n" + ", ".join(when).capitalize())
        self.error_label.setText(job.error or "")
        self.error_label.setVisible(bool(job.error))
        self.cancel_button.setEnabled(not job.state.finished and not cancelling)
        self.open_log_button.setEnabled(bool(job.log_path and job.log_path.exists()))

    def _read_log(self) -> None:
        job = self._current_job()
        if job is None or job.log_path is None:
            return
        try:
            with open(job.log_path, "rb") as fh:
                size = fh.seek(0, 2)
                if size < self._log_offset:
                    self._log_offset = 0
                start = max(self._log_offset, size - TAIL_BYTES) if self._log_offset == 0 \
                    else self._log_offset
                fh.seek(start)
                data = fh.read()
        except OSError:
            return
        if not job.state.finished:
            data = data[:data.rfind(b"\n") + 1]  # whole lines only; the rest comes next tick
        if not data:
            if job.state.finished:
                self._tail_timer.stop()
            return
        self._log_offset = start + len(data)
        text = data.decode("utf-8", errors="replace").rstrip("\n")
        self.log_view.appendPlainText(text)
        bar = self.log_view.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _on_cancel_clicked(self) -> None:
        job = self._current_job()
        if job is not None and not job.state.finished:
            self.ctx.jobs.cancel(job.id)
            self._update_details(job)

    def _on_open_log_clicked(self) -> None:
        job = self._current_job()
        if job is not None and job.log_path is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(job.log_path)))

