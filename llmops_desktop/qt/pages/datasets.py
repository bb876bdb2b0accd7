"""The Datasets page: import files as dataset versions, look at their rows and statistics.

Import (with the detected shape and a column mapping the user may change), a preview of
the rows, a token-length histogram for a chosen model's tokenizer (computed off the GUI
thread), duplicates and empty rows, the bad rows with their line numbers, and the
train/validation split; "From feedback…" makes a version from rated replies and arena picks
(:mod:`.feedback_dataset_dialog`). Every step calls the same core code the CLI does.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.datasets.shapes import SHAPE_LABELS
from llmops_desktop.qt.context import AppContext, Page
from llmops_desktop.qt.datasets_empty import SAMPLE_NAME, EmptyDatasets, sample_dataset_path
from llmops_desktop.qt.feedback_dataset_dialog import FeedbackDatasetDialog
from llmops_desktop.qt.workers import run_in_thread

PREVIEW_ROWS = 100


class DatasetsPage(Page):
    page_id = "datasets"
    title = "Datasets"
    icon_name = "file"
    tooltip = "Fine-tuning data: import, rows, token lengths, bad rows, split"

    sig_imported = Signal(int)
    """A dataset version was imported (its id)."""
    sig_stats_ready = Signal(object)
    """Statistics were computed (the stats dict)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.current_id: int | None = None
        self.last_stats: dict[str, Any] | None = None
        self.hist_item: Any = None
        layout = QVBoxLayout(self)
        layout.addWidget(self._build_import())
        split = QSplitter(Qt.Orientation.Horizontal)
        self.list = QTreeWidget()
        self.list.setHeaderLabels(["Dataset", "Rows", "Shape", "Train/val", "sha256"])
        self.list.setRootIsDecorated(False)
        self.list.currentItemChanged.connect(self._on_current_changed)
        self.list_stack = QStackedWidget()
        self.empty = EmptyDatasets()
        self.empty.sig_sample_requested.connect(self.import_sample)
        self.list_stack.addWidget(self.empty)
        self.list_stack.addWidget(self.list)
        split.addWidget(self.list_stack)
        self.tabs = QTabWidget()
        self.rows_view = QPlainTextEdit(readOnly=True)
        self.rows_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.tabs.addTab(self.rows_view, "Rows")
        self.tabs.addTab(self._build_stats(), "Statistics")
        self.bad_view = QPlainTextEdit(readOnly=True)
        self.tabs.addTab(self.bad_view, "Bad rows")
        self.tabs.addTab(self._build_split(), "Split")
        split.addWidget(self.tabs)
        split.setStretchFactor(1, 2)
        layout.addWidget(split, 1)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.reload()

    # ---- building ---------------------------------------------------------------------------

    def _build_import(self) -> QWidget:
        box = QGroupBox("Import a JSONL, JSON, CSV or Parquet file")
        form = QFormLayout(box)
        row = QHBoxLayout()
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("a .jsonl, .json, .csv or .parquet file")
        self.path_edit.editingFinished.connect(self.inspect_path)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse)
        row.addWidget(self.path_edit, 1)
        row.addWidget(browse)
        form.addRow("File", row)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("default: the file's name")
        form.addRow("Name", self.name_edit)
        self.shape_combo = QComboBox()
        self.shape_combo.addItem("recognise from the columns", None)
        for shape, label in SHAPE_LABELS.items():
            self.shape_combo.addItem(label, shape)
        self.shape_combo.setToolTip("What the rows hold; recognised from the column names "
                                    "unless you choose.")
        form.addRow("Shape", self.shape_combo)
        self.mapping_edit = QLineEdit()
        self.mapping_edit.setPlaceholderText("e.g. prompt=question, completion=answer")
        self.mapping_edit.setToolTip("Which column holds each field when the names differ: "
                                     "FIELD=COLUMN, comma-separated.")
        form.addRow("Column mapping", self.mapping_edit)
        self.columns_label = QLabel()
        form.addRow("", self.columns_label)
        opts = QHBoxLayout()
        self.keep_good = QCheckBox("Keep the good rows and record the bad ones")
        self.keep_good.setToolTip("Off: a file with bad rows is refused and they are listed "
                                  "with their line numbers.")
        self.validation_spin = QDoubleSpinBox(minimum=0.0, maximum=0.9, singleStep=0.05,
                                              value=0.1)
        self.validation_spin.setToolTip("Fraction of rows held out for validation")
        self.seed_spin = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.import_button = QPushButton("Import")
        self.import_button.clicked.connect(self.start_import)
        opts.addWidget(self.keep_good)
        opts.addWidget(QLabel("Validation"))
        opts.addWidget(self.validation_spin)
        opts.addWidget(QLabel("Seed"))
        opts.addWidget(self.seed_spin)
        opts.addStretch(1)
        opts.addWidget(self.import_button)
        self.feedback_button = QPushButton("From feedback…")
        self.feedback_button.setToolTip("Make a dataset version from rated replies and arena "
                                        "picks (as 'llmops feedback to-dataset' does)")
        self.feedback_button.clicked.connect(lambda: self.open_feedback_dialog())
        opts.addWidget(self.feedback_button)
        form.addRow(opts)
        return box

    def open_feedback_dialog(self) -> FeedbackDatasetDialog:
        dialog = FeedbackDatasetDialog(self.ctx, self)
        dialog.sig_made.connect(self._on_imported)
        dialog.open()
        return dialog

    def _on_imported(self, version_id: int) -> None:
        self.reload()
        self.select_version(version_id)
        self.sig_imported.emit(version_id)

    def import_sample(self) -> None:
        """Import the bundled sample as the user would a file of theirs."""
        self.path_edit.setText(str(sample_dataset_path()))
        self.name_edit.setText(SAMPLE_NAME)
        self.shape_combo.setCurrentIndex(max(0, self.shape_combo.findData("chat")))
        self.start_import()

    def _build_stats(self) -> QWidget:
        w = QWidget()
        v = QVBoxLayout(w)
        row = QHBoxLayout()
        self.model_combo = QComboBox()
        self.model_combo.setToolTip("Count tokens with this model's tokenizer (chat template "
                                    "applied, as training sees the rows)")
        self.max_len_spin = QSpinBox(minimum=8, maximum=1_000_000, value=1024)
        self.max_len_spin.setToolTip("Also count the rows longer than this")
        self.stats_button = QPushButton("Compute")
        self.stats_button.clicked.connect(self.compute_stats)
        row.addWidget(QLabel("Tokenizer of"))
        row.addWidget(self.model_combo, 1)
        row.addWidget(QLabel("Max length"))
        row.addWidget(self.max_len_spin)
        row.addWidget(self.stats_button)
        v.addLayout(row)
        self.plot: Any = None  # made when first shown: pyqtgraph stays out of the start
        self.plot_box = QVBoxLayout()
        v.addLayout(self.plot_box, 1)
        self.stats_label = QLabel()
        self.stats_label.setWordWrap(True)
        v.addWidget(self.stats_label)
        return w

    def _build_split(self) -> QWidget:
        w = QWidget()
        form = QFormLayout(w)
        self.split_fraction = QDoubleSpinBox(minimum=0.0, maximum=0.9, singleStep=0.05,
                                             value=0.1)
        self.split_seed = QSpinBox(minimum=0, maximum=2**31 - 1)
        self.split_label = QLabel()
        apply = QPushButton("Apply split")
        apply.clicked.connect(self.apply_split)
        form.addRow("Validation fraction", self.split_fraction)
        form.addRow("Seed", self.split_seed)
        form.addRow("", apply)
        form.addRow("", self.split_label)
        return w

    # ---- data -------------------------------------------------------------------------------

    def on_shown(self) -> None:
        self.reload()

    def refresh(self) -> None:
        self.reload()

    def reload(self) -> None:
        from llmops_desktop.datasets.store import list_datasets

        keep = self.current_id
        self.list.clear()
        for d in list_datasets(self.ctx.catalog):
            for v in d.versions:
                item = QTreeWidgetItem([v.ref, str(v.rows), v.shape,
                                        f"{v.split.get('train_rows', v.rows)}/"
                                        f"{v.split.get('validation_rows', 0)}", v.sha256[:12]])
                item.setData(0, Qt.ItemDataRole.UserRole, v.id)
                self.list.addTopLevelItem(item)
                if v.id == keep:
                    self.list.setCurrentItem(item)
        self.list_stack.setCurrentIndex(1 if self.list.topLevelItemCount() else 0)
        current = self.model_combo.currentData()
        self.model_combo.clear()
        for a in self.ctx.catalog.artifacts():
            if a.kind in ("hf", "lora"):
                self.model_combo.addItem(a.ref, a.id)
        if current is not None:
            self.model_combo.setCurrentIndex(max(0, self.model_combo.findData(current)))

    def select_version(self, version_id: int) -> None:
        for i in range(self.list.topLevelItemCount()):
            item = self.list.topLevelItem(i)
            if item.data(0, Qt.ItemDataRole.UserRole) == version_id:
                self.list.setCurrentItem(item)
                return

    def _on_current_changed(self, item: QTreeWidgetItem | None, _prev: object) -> None:
        from llmops_desktop.datasets.store import read_rows, resolve_version

        if item is None:
            return
        self.current_id = int(item.data(0, Qt.ItemDataRole.UserRole))
        v = resolve_version(self.ctx.catalog, self.current_id)
        try:
            rows = read_rows(v, 0, PREVIEW_ROWS)
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            rows = []
            self.status.setText(str(exc))
        self.rows_view.setPlainText("\n".join(f"[{i}] {json.dumps(r, ensure_ascii=False)}"
                                              for i, r in enumerate(rows)))
        self._show_bad_rows(v.metadata.get("bad_rows", []), kept=True)
        md = v.metadata
        self.stats_label.setText(f"{v.rows} rows; {md.get('duplicates', 0)} duplicates; "
                                 f"{md.get('empty_rows', 0)} empty rows; "
                                 f"{len(md.get('bad_rows', []))} bad rows recorded")
        self.split_fraction.setValue(float(v.split.get("validation_fraction", 0.1)))
        self.split_seed.setValue(int(v.split.get("seed", 0)))
        self.split_label.setText(f"{v.split.get('train_rows')} train / "
                                 f"{v.split.get('validation_rows')} validation")

    def _show_bad_rows(self, bad: list[dict[str, Any]], *, kept: bool) -> None:
        head = ("Recorded at import (left out of the version):" if kept else
                "The file was refused; fix these rows or tick 'Keep the good rows':")
        lines = [f"line {b['line']}: {b['reason']}" for b in bad]
        self.bad_view.setPlainText(head + "\n" + "\n".join(lines) if lines else "No bad rows.")
        self.tabs.setTabText(2, f"Bad rows ({len(lines)})" if lines else "Bad rows")

    # ---- actions ----------------------------------------------------------------------------

    def _on_browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a dataset", "",
                                              "Data (*.jsonl *.ndjson *.json *.csv *.tsv "
                                              "*.parquet);;All files (*)")
        if path:
            self.path_edit.setText(path)
            self.inspect_path()

    def inspect_path(self) -> None:
        """Show the columns and the recognised shape of the chosen file (off the GUI thread)."""
        from llmops_desktop.datasets.store import inspect_file

        path = self.path_edit.text().strip()
        if not path:
            return

        def done(info: dict[str, Any]) -> None:
            shape = info.get("shape")
            self.columns_label.setText(
                f"{info['format']}; columns: {', '.join(info['columns'])}; "
                + (f"recognised as {SHAPE_LABELS[shape]}" if shape else
                   "shape not recognised: map the columns"))
            if shape and not self.mapping_edit.text():
                self.mapping_edit.setText(", ".join(f"{k}={v}" for k, v in info["mapping"].items()
                                                    if k != v))

        run_in_thread(lambda: inspect_file(path), done,
                      lambda exc: self.columns_label.setText(str(exc)), receiver=self)

    def start_import(self) -> None:
        from llmops_desktop.datasets.store import BadRowsError, import_dataset

        path = self.path_edit.text().strip()
        if not path:
            self.status.setText("Choose a file to import.")
            return
        mapping = [m.strip() for m in self.mapping_edit.text().split(",") if m.strip()]
        kwargs = {"name": self.name_edit.text().strip() or None,
                  "shape": self.shape_combo.currentData(), "mapping": mapping or None,
                  "keep_good_rows": self.keep_good.isChecked(),
                  "validation": self.validation_spin.value(), "seed": self.seed_spin.value()}
        home = self.ctx.home
        self.import_button.setEnabled(False)
        self.status.setText(f"importing {path} …")

        def work() -> int:
            with Catalog.open(home) as cat:
                return import_dataset(cat, path, **kwargs).id

        def done(version_id: int) -> None:
            self.import_button.setEnabled(True)
            self.status.setText("imported")
            self._on_imported(version_id)

        def failed(exc: BaseException) -> None:
            self.import_button.setEnabled(True)
            self.status.setText(str(exc))
            if isinstance(exc, BadRowsError):
                self._show_bad_rows([b.to_json() for b in exc.bad_rows], kept=False)
                self.tabs.setCurrentIndex(2)

        run_in_thread(work, done, failed, receiver=self)

    def compute_stats(self) -> None:
        """Token lengths with the chosen model's tokenizer, off the GUI thread."""
        from llmops_desktop.datasets.stats import dataset_stats, load_tokenizer, tokenizer_dir
        from llmops_desktop.datasets.store import resolve_version

        if self.current_id is None:
            self.status.setText("Choose a dataset first.")
            return
        model_id = self.model_combo.currentData()
        home, version_id, max_len = self.ctx.home, self.current_id, self.max_len_spin.value()
        self.stats_button.setEnabled(False)
        self.stats_label.setText("counting tokens …")

        def work() -> dict[str, Any]:
            with Catalog.open(home) as cat:
                version = resolve_version(cat, version_id)
                tok = load_tokenizer(tokenizer_dir(cat, model_id)) if model_id else None
            return dataset_stats(version, tokenizer=tok, max_len=max_len)

        def failed(exc: BaseException) -> None:
            self.stats_button.setEnabled(True)
            self.stats_label.setText(str(exc))

        run_in_thread(work, self._on_stats, failed, receiver=self)

    def _make_plot(self) -> Any:
        if self.plot is None:
            import pyqtgraph as pg
            from llmops_desktop.qt.charts import PlotWidget  # zooms on Ctrl+wheel only

            self.plot = PlotWidget(background="w")
            self.plot.setLabel("bottom", "tokens per row")
            self.plot.setLabel("left", "rows")
            self.plot_box.addWidget(self.plot)
        return self.plot

    def showEvent(self, event: Any) -> None:
        self._make_plot()
        super().showEvent(event)

    def _on_stats(self, stats: dict[str, Any]) -> None:
        import pyqtgraph as pg

        self.stats_button.setEnabled(True)
        self.last_stats = stats
        self._make_plot().clear()
        hist = stats.get("histogram")
        if hist and hist["counts"]:
            edges = hist["edges"]
            self.hist_item = pg.BarGraphItem(
                x0=edges[:-1], x1=edges[1:], height=hist["counts"], brush="#4f86e0")
            self.plot.addItem(self.hist_item)
        text = (f"{stats['rows']} rows; {stats['duplicates']} duplicates; "
                f"{stats['empty_rows']} empty rows; {stats['bad_rows']} bad rows recorded")
        if "tokens" in stats:
            t = stats["tokens"]
            text += (f"\ntokens: min {t['min']}, p50 {t['p50']}, p90 {t['p90']}, p99 {t['p99']}, "
                     f"max {t['max']}; {stats.get('rows_over_max_len', 0)} rows longer than "
                     f"{stats.get('max_len')}")
        self.stats_label.setText(text)
        self.sig_stats_ready.emit(stats)

    def apply_split(self) -> None:
        from llmops_desktop.datasets.store import set_split

        if self.current_id is None:
            return
        v = set_split(self.ctx.catalog, self.current_id, self.split_fraction.value(),
                      self.split_seed.value())
        self.split_label.setText(f"{v.split['train_rows']} train / "
                                 f"{v.split['validation_rows']} validation")
        self.reload()
