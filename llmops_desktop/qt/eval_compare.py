"""Two artifacts of the Evaluate page's matrix compared: the paired tests with a plain
verdict, and the items whose pass/fail outcome flipped, side by side.

The comparison is ``evaluate.compare.compare_runs`` (what ``llmops eval compare`` prints),
computed off the GUI thread: the bootstrap resamples every metric thousands of times.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.qt.workers import run_in_thread

TEST_COLUMNS = ["Metric", "Difference (B − A)", "95 % interval", "Bootstrap p", "McNemar p",
                "Verdict"]
FLIP_COLUMNS = ["Item", "Flipped on", "Prompt", "Output A", "Output B"]
MAX_FLIPS_SHOWN = 500
PROMPT_CHARS = 300


def verdict(test: dict[str, Any]) -> str:
    return "a real difference" if test["significant"] else "not a real difference"


def _cell(text: str, tooltip: str = "") -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setToolTip(tooltip or text[:2000])
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return item


def _table(columns: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.verticalHeader().hide()
    table.setWordWrap(True)
    return table


class CompareView(QWidget):
    """A and B choosers, a Compare button, the tests and the flipped items."""

    sig_compared = Signal(object)
    """A comparison finished (the ``compare_runs`` dict)."""

    def __init__(self, home: Home, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.suite_ref = ""
        self.others: list[str] = []
        self.comparison: dict[str, Any] | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.a_combo = QComboBox()
        self.a_combo.setToolTip("The artifact compared against (for example the base model)")
        self.b_combo = QComboBox()
        self.b_combo.setToolTip("The artifact compared with A (for example its fine-tune or "
                                "a quantized variant)")
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Paired bootstrap of every metric and McNemar's test "
                                       "for pass/fail ones, on the items both ran (Ctrl+K)")
        self.compare_button.setShortcut(QKeySequence("Ctrl+K"))
        self.compare_button.clicked.connect(self.compare)
        for label, widget in (("A", self.a_combo), ("B", self.b_combo)):
            widget.currentIndexChanged.connect(lambda _i: self._update_button())
            row.addWidget(QLabel(label))
            row.addWidget(widget, 1)
        row.addWidget(self.compare_button)
        layout.addLayout(row)
        self.verdict_label = QLabel("Choose two artifacts with runs on this suite and press "
                                    "Compare.")
        self.verdict_label.setWordWrap(True)
        self.verdict_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.verdict_label)
        split = QSplitter(Qt.Orientation.Vertical)
        self.tests_table = _table(TEST_COLUMNS)
        self.tests_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        split.addWidget(self.tests_table)
        flips = QWidget()
        fv = QVBoxLayout(flips)
        fv.setContentsMargins(0, 0, 0, 0)
        self.flips_label = QLabel("Flipped items")
        fv.addWidget(self.flips_label)
        self.flips_table = _table(FLIP_COLUMNS)
        header = self.flips_table.horizontalHeader()
        for col in (2, 3, 4):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.Stretch)
        fv.addWidget(self.flips_table, 1)
        split.addWidget(flips)
        split.setStretchFactor(1, 3)
        split.setSizes([110, 330])
        layout.addWidget(split, 1)
        self._update_button()

    def set_artifacts(self, suite_ref: str, refs: list[str]) -> None:
        """The artifacts with a finished run on ``suite_ref`` (keeps A and B where it can)."""
        if suite_ref != self.suite_ref:
            self.clear()
        self.suite_ref = suite_ref
        for combo, default in ((self.a_combo, 0), (self.b_combo, 1)):
            keep = combo.currentText()
            combo.clear()
            combo.addItems(refs)
            if keep in refs:
                combo.setCurrentText(keep)
            elif len(refs) > default:
                combo.setCurrentIndex(default)
        self.others = refs
        self._update_button()

    def _update_button(self) -> None:
        a, b = self.a_combo.currentText(), self.b_combo.currentText()
        self.compare_button.setEnabled(bool(a and b and a != b and self.suite_ref))

    def clear(self) -> None:
        self.comparison = None
        self.tests_table.setRowCount(0)
        self.flips_table.setRowCount(0)
        self.flips_label.setText("Flipped items")

    def order(self) -> list[str]:
        """A, B, then every other artifact of the matrix (tested against A as well)."""
        a, b = self.a_combo.currentText(), self.b_combo.currentText()
        return [a, b] + [r for r in self.others if r not in (a, b)]

    def compare(self) -> None:
        self._update_button()
        if not self.compare_button.isEnabled():
            self.verdict_label.setText("Choose two different artifacts to compare.")
            return
        refs, suite, home = self.order()[:2], self.suite_ref, self.home
        self.compare_button.setEnabled(False)
        self.verdict_label.setText(f"comparing {refs[1]} with {refs[0]} on {suite} …")

        def work() -> dict[str, Any]:
            from llmops_desktop.evaluate.compare import compare_runs

            with Catalog.open(home) as cat:
                return compare_runs(cat, refs, suite)

        def failed(exc: BaseException) -> None:
            self._update_button()
            self.verdict_label.setText(f"Cannot compare: {exc}")

        run_in_thread(work, self.show_comparison, failed, receiver=self)

    def show_comparison(self, c: dict[str, Any]) -> None:
        self._update_button()
        self.comparison = c
        a, b = c["matrix"][0]["artifact"], c["matrix"][1]["artifact"]
        tests = [t for t in c["tests"] if t["b"] == b]
        real = [t["metric"] for t in tests if t["significant"]]
        self.verdict_label.setText(
            f"{b} against {a} on {c['suite']}: "
            + (f"a real difference on {', '.join(real)}" if real else
               "not a real difference on any metric")
            + f" (p < 0.05; McNemar's test for pass/fail metrics, else the paired bootstrap). "
              f"{len(c['flipped'])} items flipped.")
        self.tests_table.setRowCount(len(tests))
        for r, t in enumerate(tests):
            pb = t["paired_bootstrap"]
            cells = [t["metric"], f"{pb['diff']:+.4f}",
                     f"[{pb['ci_low']:+.4f}, {pb['ci_high']:+.4f}]",
                     f"{pb['p']:.4f}", f"{t['mcnemar']['p']:.4f}" if "mcnemar" in t else "—",
                     verdict(t)]
            for col, text in enumerate(cells):
                self.tests_table.setItem(r, col, _cell(text, f"over {t['items']} paired items"))
        flips = [f for f in c["flipped"] if f["b"] == b][:MAX_FLIPS_SHOWN]
        self.flips_label.setText(f"Flipped items ({len(flips)}): A is {a}, B is {b}")
        self.flips_table.setRowCount(len(flips))
        for r, f in enumerate(flips):
            prompt = f["prompt"]
            cells = [str(f["item"]), ", ".join(f["metrics"]),
                     prompt if len(prompt) <= PROMPT_CHARS else "…" + prompt[-PROMPT_CHARS:],
                     f["a_output"], f["b_output"]]
            for col, text in enumerate(cells):
                self.flips_table.setItem(r, col, _cell(text, prompt if col == 2 else ""))
        self.flips_table.resizeRowsToContents()
        self.sig_compared.emit(c)

    def flipped_rows(self) -> list[list[str]]:
        """The flipped items as shown (tests read them)."""
        t = self.flips_table
        return [[t.item(r, c).text() for c in range(t.columnCount())] for r in range(t.rowCount())]
