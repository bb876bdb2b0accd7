"""The Evaluate page's Suites tab: suites and their versions, "Import suite…", and a preview
of a version's first items.

Import calls ``evaluate.suites.import_suite`` (what ``llmops suite import`` does) off the
GUI thread; a file with bad rows is refused and the rows are listed by line in a dialog,
as the Datasets page lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.paths import Home
from llmops_desktop.qt.workers import run_in_thread

PREVIEW_ITEMS = 10
PREVIEW_CHARS = 600
BAD_ROWS_SHOWN = 200
COLUMNS = ["Suite", "Kinds", "Items", "Layout", "sha256", "Created"]
FILE_FILTER = "Suites (*.jsonl *.ndjson *.json *.csv *.tsv *.parquet);;All files (*)"
EMPTY_HINT = ("No suites yet. Import a JSONL, JSON, CSV or Parquet file of multiple-choice, "
              "generation or judged items (MMLU, ARC, HellaSwag, TruthfulQA and GSM8K exports "
              "are recognised as they are).")


def kinds_text(kinds: dict[str, int]) -> str:
    names = {"mc": "multiple choice", "gen": "generation", "judged": "judged"}
    return ", ".join(f"{n} {names.get(k, k)}" for k, n in sorted(kinds.items()))


def item_preview(item: dict[str, Any]) -> str:
    """One item in a line or three a person can read."""
    if item.get("kind") == "mc":
        choices = item.get("choices") or []
        answer = item.get("answer")
        gold = choices[answer] if isinstance(answer, int) and 0 <= answer < len(choices) else "?"
        text = (f"{item.get('context', '')}\n    choices: {' | '.join(map(str, choices))}"
                f"\n    answer: {gold}")
    elif item.get("messages"):
        text = " / ".join(f"{m.get('role')}: {m.get('content')}" for m in item["messages"])
    else:
        text = str(item.get("prompt", ""))
    if item.get("references"):
        text += f"\n    references: {' | '.join(map(str, item['references']))}"
    if item.get("rubric"):
        text += f"\n    rubric: {item['rubric']}"
    if item.get("metrics"):
        text += f"\n    metrics: {', '.join(map(str, item['metrics']))}"
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS] + "…"


class SuitesView(QWidget):
    """The suite versions in a tree (suite → versions), import controls and a preview."""

    sig_imported = Signal(int)
    """A suite version was imported (its id)."""
    sig_selected = Signal(int)
    """The user chose a suite version (its id)."""

    def __init__(self, home: Home, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.catalog = catalog
        self.current_id: int | None = None
        self.bad_rows_box: QMessageBox | None = None
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("suite name (default: the file's name)")
        self.name_edit.setToolTip("A new name starts a suite; an existing one adds its next "
                                  "version.")
        self.keep_good = QCheckBox("Keep the good rows")
        self.keep_good.setToolTip("Off: a file with bad rows is refused and they are listed "
                                  "with their line numbers. On: the good rows are imported "
                                  "and the bad ones recorded in the version.")
        self.import_button = QPushButton("Import suite…")
        self.import_button.setToolTip("Import a JSONL, JSON, CSV or Parquet file as a new suite "
                                      "version (Ctrl+I)")
        self.import_button.setShortcut(QKeySequence("Ctrl+I"))
        self.import_button.clicked.connect(lambda: self.import_file())
        row.addWidget(QLabel("Name"))
        row.addWidget(self.name_edit, 1)
        row.addWidget(self.keep_good)
        row.addWidget(self.import_button)
        layout.addLayout(row)
        split = QSplitter(Qt.Orientation.Vertical)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.currentItemChanged.connect(self._on_current_changed)
        split.addWidget(self.tree)
        self.preview = QPlainTextEdit(readOnly=True)
        self.preview.setPlaceholderText("Choose a suite version to see its first items.")
        split.addWidget(self.preview)
        split.setStretchFactor(1, 1)
        layout.addWidget(split, 1)
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

    def reload(self) -> None:
        from llmops_desktop.evaluate.suites import list_suites

        keep = self.current_id
        self.tree.clear()
        parents: dict[str, QTreeWidgetItem] = {}
        for v in list_suites(self.catalog):
            parent = parents.get(v.name)
            if parent is None:
                parent = parents[v.name] = QTreeWidgetItem([v.name])
                self.tree.addTopLevelItem(parent)
            item = QTreeWidgetItem([f"{v.ref}", kinds_text(v.kinds), str(v.items), v.layout,
                                    v.sha256[:12], v.created_at[:19].replace("T", " ")])
            item.setData(0, Qt.ItemDataRole.UserRole, v.id)
            item.setToolTip(4, v.sha256)
            item.setToolTip(0, f"imported from {v.source}")
            parent.addChild(item)
            if v.id == keep:
                self.tree.setCurrentItem(item)
        self.tree.expandAll()
        for col in range(len(COLUMNS)):
            self.tree.resizeColumnToContents(col)
        if not parents:
            self.status.setText(EMPTY_HINT)
        elif self.status.text() == EMPTY_HINT:
            self.status.clear()

    def select_version(self, version_id: int) -> bool:
        for i in range(self.tree.topLevelItemCount()):
            parent = self.tree.topLevelItem(i)
            for j in range(parent.childCount()):
                if parent.child(j).data(0, Qt.ItemDataRole.UserRole) == version_id:
                    self.tree.setCurrentItem(parent.child(j))
                    return True
        return False

    def _on_current_changed(self, item: QTreeWidgetItem | None, _prev: object) -> None:
        from llmops_desktop.evaluate.suites import iter_items, resolve_suite

        version_id = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        if version_id is None:
            return
        self.current_id = int(version_id)
        v = resolve_suite(self.catalog, self.current_id)
        try:
            items = [it for _, it in zip(range(PREVIEW_ITEMS), iter_items(v))]
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            items = []
            self.status.setText(str(exc))
        head = [f"{v.ref}: {v.items} items ({kinds_text(v.kinds)}), layout {v.layout}",
                f"sha256 {v.sha256}", f"source {v.source}"]
        head += [f"passes when {t['metric']} >= " + (str(t["min"]) if "min" in t else
                                                      f"parent's - {t['max_drop']}")
                 for t in v.thresholds]
        bad = v.metadata.get("bad_rows") or []
        if bad:
            head.append(f"{len(bad)} bad rows were left out at import: "
                        + ", ".join(f"line {b['line']}" for b in bad[:20]))
        body = [f"[{i}] {item_preview(it)}" for i, it in enumerate(items)]
        more = [f"… and {v.items - len(items)} more"] if v.items > len(items) else []
        self.preview.setPlainText("\n".join(head + [""] + body + more))
        self.sig_selected.emit(self.current_id)

    def import_file(self, path: str | None = None) -> None:
        """Import ``path`` (asked for with a file dialog when not given) as a suite version."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Import an evaluation suite", "",
                                                  FILE_FILTER)
            if not path:
                return
        name = self.name_edit.text().strip() or Path(path).stem
        keep_good, home = self.keep_good.isChecked(), self.home
        self.import_button.setEnabled(False)
        self.status.setText(f"importing {path} as {name} …")

        def work() -> int:
            from llmops_desktop.evaluate.suites import import_suite

            with Catalog.open(home) as cat:
                return import_suite(cat, path, name=name, keep_good_rows=keep_good).id

        def done(version_id: int) -> None:
            self.import_button.setEnabled(True)
            self.name_edit.clear()
            self.reload()
            self.select_version(version_id)
            self.status.setText(f"imported {self.tree.currentItem().text(0)}")
            self.sig_imported.emit(version_id)

        def failed(exc: BaseException) -> None:
            from llmops_desktop.evaluate.errors import SuiteBadRowsError

            self.import_button.setEnabled(True)
            self.status.setText(str(exc))
            if isinstance(exc, SuiteBadRowsError):
                self.show_bad_rows(Path(path).name, exc.bad_rows)

        run_in_thread(work, done, failed, receiver=self)

    def show_bad_rows(self, filename: str, bad: list[dict[str, Any]]) -> QMessageBox:
        """The refused file's bad rows by line, in a window-modal box that does not block."""
        lines = [f"line {b['line']}: {b['reason']}" for b in bad[:BAD_ROWS_SHOWN]]
        if len(bad) > BAD_ROWS_SHOWN:
            lines.append(f"… and {len(bad) - BAD_ROWS_SHOWN} more")
        box = QMessageBox(QMessageBox.Icon.Warning, "Bad rows",
                          f"{filename}: {len(bad)} rows are not items, so nothing was imported. "
                          "Fix them, or tick 'Keep the good rows' to import the rest and record "
                          "these in the version.", QMessageBox.StandardButton.Ok, self)
        box.setDetailedText("\n".join(lines))
        box.setInformativeText("\n".join(lines[:8]) + ("\n…" if len(lines) > 8 else ""))
        box.open()
        self.bad_rows_box = box
        return box

    def preview_text(self) -> str:
        return self.preview.toPlainText()
