"""The Evaluate page: suites, evaluation runs as jobs, and their results side by side.

Tabs: **Suites** (versions, import, preview), **Run** (artifacts × a suite version as an
``eval`` job, the same typed request ``llmops eval`` submits) and **Results** (the
artifacts × metrics matrix with 95 % intervals, bars with error bars, two artifacts
compared with paired tests and their flipped items, CSV and HTML export through
``evaluate.report``) and **Arena** (Bradley-Terry ratings from the Playground's blind
side-by-side picks, :mod:`.arena_ratings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.qt.arena_ratings import ArenaRatingsView
from llmops_desktop.qt.context import AppContext, Page
from llmops_desktop.qt.eval_chart import MetricBars
from llmops_desktop.qt.eval_compare import CompareView
from llmops_desktop.qt.eval_matrix import MatrixModel, suite_matrix
from llmops_desktop.qt.eval_run_form import RunForm
from llmops_desktop.qt.eval_suites_view import SuitesView
from llmops_desktop.qt.workers import run_in_thread

TAB_SUITES, TAB_RUN, TAB_RESULTS = 0, 1, 2


class EvaluatePage(Page):
    page_id = "evaluate"
    title = "Evaluate"
    icon_name = "variants"
    tooltip = "Benchmark suites, evaluation runs, and artifacts compared with intervals"

    sig_matrix_loaded = Signal(int)
    """The Results matrix was (re)read (the number of artifacts in it)."""
    sig_exported = Signal(str)
    """A CSV or HTML report was written (its path)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.rows: list[dict[str, Any]] = []
        self.metrics: list[str] = []
        layout = QVBoxLayout(self)
        self.tabs = QTabWidget()
        self.suites = SuitesView(ctx.home, ctx.catalog)
        self.suites.sig_imported.connect(lambda _id: self.reload())
        self.tabs.addTab(self.suites, "Suites")
        self.run_form = RunForm(ctx)
        self.suites.sig_selected.connect(self._on_suite_chosen)
        self.tabs.addTab(self.run_form, "Run")
        self.tabs.addTab(self._build_results(), "Results")
        self.arena = ArenaRatingsView(ctx)
        self.tabs.addTab(self.arena, "Arena")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        layout.addWidget(self.tabs)
        ctx.jobs.sig_job_finished.connect(self._on_job_finished)

    def _build_results(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        top = QHBoxLayout()
        top.addWidget(QLabel("Suite"))
        self.results_suite = QComboBox()
        self.results_suite.setToolTip("The suite version whose runs the matrix shows")
        self.results_suite.currentIndexChanged.connect(lambda _i: self.load_matrix())
        top.addWidget(self.results_suite, 1)
        self.csv_button = QPushButton("Export CSV…")
        self.csv_button.setToolTip("The matrix as CSV: artifact, run, metric, mean, interval, n")
        self.csv_button.clicked.connect(lambda: self.export_csv())
        self.html_button = QPushButton("Export HTML report…")
        self.html_button.setToolTip("A self-contained HTML report: the matrix, bars with error "
                                    "bars, the paired tests against A and the flipped items "
                                    "(Ctrl+Shift+E)")
        self.html_button.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.html_button.clicked.connect(lambda: self.export_html())
        top.addWidget(self.csv_button)
        top.addWidget(self.html_button)
        v.addLayout(top)
        self.results_status = QLabel()
        self.results_status.setWordWrap(True)
        v.addWidget(self.results_status)
        split = QSplitter(Qt.Orientation.Vertical)
        self.matrix = MatrixModel(self)
        self.matrix_view = QTableView()
        self.matrix_view.setModel(self.matrix)
        self.matrix_view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.matrix_view.setToolTip("Each cell: mean [95 % bootstrap interval] of the latest "
                                    "finished run")
        self.matrix_view.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(self.matrix_view)
        self.chart = MetricBars()
        upper.addWidget(self.chart)
        upper.setSizes([600, 400])
        split.addWidget(upper)
        self.compare = CompareView(self.ctx.home)
        split.addWidget(self.compare)
        split.setSizes([300, 400])
        v.addWidget(split, 1)
        self.results_split = split
        return w

    def _on_tab_changed(self, index: int) -> None:
        if self.tabs.widget(index) is self.arena:
            self.arena.refresh()  # picks arrive from the Playground while the page is away

    # ---- data -------------------------------------------------------------------------------

    def on_shown(self) -> None:
        self.reload()

    def refresh(self) -> None:
        self.reload()

    def reload(self) -> None:
        from llmops_desktop.evaluate.suites import list_suites

        self.suites.reload()
        self.run_form.reload()
        keep = self.results_suite.currentData()
        self.results_suite.blockSignals(True)
        self.results_suite.clear()
        for v in list_suites(self.ctx.catalog):
            self.results_suite.addItem(v.ref, v.id)
        if keep is not None and self.results_suite.findData(keep) >= 0:
            self.results_suite.setCurrentIndex(self.results_suite.findData(keep))
        elif self.results_suite.count():
            self.results_suite.setCurrentIndex(self.results_suite.count() - 1)
        self.results_suite.blockSignals(False)
        self.load_matrix()

    def select_results_suite(self, version_id: int) -> None:
        index = self.results_suite.findData(version_id)
        if index >= 0:
            self.results_suite.setCurrentIndex(index)

    def load_matrix(self) -> None:
        """The chosen suite version's matrix, as the catalog stored it."""
        version_id = self.results_suite.currentData()
        if version_id is None:
            self.rows, self.metrics = [], []
            self.results_status.setText("No suites yet: import one on the Suites tab.")
        else:
            self.rows, self.metrics = suite_matrix(self.ctx.catalog, int(version_id))
            carried = sum(1 for r in self.rows if r["run_id"] is None)
            self.results_status.setText(
                f"{len(self.rows)} artifact{'' if len(self.rows) == 1 else 's'} with a "
                f"finished run on "
                f"{self.results_suite.currentText()}"
                + (f" ({carried} measured elsewhere, from packages)" if carried else "")
                if self.rows else
                f"No finished run on {self.results_suite.currentText()} yet: start one on the "
                "Run tab.")
        self.matrix.set_matrix(self.rows, self.metrics)
        self.chart.set_matrix(self.rows, self.metrics)
        here = self.measured_here()
        self.compare.set_artifacts(self.results_suite.currentText(), here)
        self.csv_button.setEnabled(bool(self.rows))
        self.html_button.setEnabled(bool(here))
        self.sig_matrix_loaded.emit(len(self.rows))

    def measured_here(self) -> list[str]:
        """The matrix's artifacts whose run was made here: runs carried in packages have no
        per-item results, so no paired tests and no report."""
        return [r["artifact"] for r in self.rows if r["run_id"] is not None]

    def _on_suite_chosen(self, version_id: int) -> None:
        from llmops_desktop.evaluate.suites import resolve_suite

        self.run_form.select_suite(resolve_suite(self.ctx.catalog, version_id).ref)
        self.select_results_suite(version_id)

    def _on_job_finished(self, job_id: int, state: str) -> None:
        try:
            job = self.ctx.catalog.job(job_id)
        except LookupError:
            return
        if job.kind != "eval":
            return
        self.reload()
        suite = (job.result or {}).get("suite") or job.params.get("suite")
        if suite:
            index = self.results_suite.findText(str(suite))
            if index >= 0:
                self.results_suite.setCurrentIndex(index)
        if job_id in self.run_form.job_ids:
            self.run_form.status.setText(f"job #{job_id} {state}" + (
                "; the Results tab shows it." if state == "succeeded" else
                f": {job.error}" if job.error else "."))
            if state == "succeeded":
                self.tabs.setCurrentIndex(TAB_RESULTS)

    # ---- export -----------------------------------------------------------------------------

    def _ask_path(self, title: str, suffix: str, path: str | None) -> str | None:
        if path is not None:
            return path
        default = f"{self.results_suite.currentText().replace('@', '-v')}.{suffix}"
        chosen, _ = QFileDialog.getSaveFileName(self, title, default,
                                                f"{suffix.upper()} (*.{suffix})")
        return chosen or None

    def export_csv(self, path: str | None = None) -> str | None:
        """Write the matrix as ``llmops eval compare --csv`` does."""
        from llmops_desktop.evaluate.report import comparison_csv

        path = self._ask_path("Export the matrix as CSV", "csv", path)
        if not path or not self.rows:
            return None
        try:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(comparison_csv({"matrix": self.rows, "metrics": self.metrics}))
        except OSError as exc:
            self.results_status.setText(f"Cannot write {path}: {exc.strerror or exc}. Choose "
                                        "another place.")
            return None
        self.results_status.setText(f"wrote {path}")
        self.sig_exported.emit(path)
        return path

    def export_html(self, path: str | None = None) -> None:
        """The self-contained HTML report of every artifact in the matrix, A first (off the
        GUI thread: the paired tests resample)."""
        path = self._ask_path("Export an HTML report", "html", path)
        here = self.measured_here()
        if not path or not here:
            return
        refs = self.compare.order() if len(here) > 1 else here
        suite, home = self.results_suite.currentText(), self.ctx.home
        self.html_button.setEnabled(False)
        self.results_status.setText(f"writing {path} …")

        def work() -> str:
            from llmops_desktop.evaluate.compare import compare_runs
            from llmops_desktop.evaluate.report import comparison_html

            with Catalog.open(home) as cat:
                page = comparison_html(compare_runs(cat, refs, suite))
            Path(path).write_text(page, encoding="utf-8")
            return path

        def done(written: str) -> None:
            self.html_button.setEnabled(True)
            self.results_status.setText(f"wrote {written}")
            self.sig_exported.emit(written)

        def failed(exc: BaseException) -> None:
            self.html_button.setEnabled(True)
            self.results_status.setText(f"Cannot write the report: {exc}")

        run_in_thread(work, done, failed, receiver=self)

    # ---- state ------------------------------------------------------------------------------

    def save_state(self, state: QSettings) -> None:
        state.setValue("evaluate/results_split", self.results_split.saveState())
        state.setValue("evaluate/tab", self.tabs.currentIndex())

    def restore_state(self, state: QSettings) -> None:
        split = state.value("evaluate/results_split")
        if split is not None:
            self.results_split.restoreState(split)
        tab = state.value("evaluate/tab")
        if tab is not None:
            self.tabs.setCurrentIndex(int(tab))
