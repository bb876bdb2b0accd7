"""A prompt's aliases and split, and what each version has served.

Aliases (``prod``, ``candidate`` or any name) point at a version and move; an alias with a
positive weight takes that share of the requests that name the prompt alone
(``prompt:NAME``), the split. Per version: requests from the request log, how many
succeeded, mean latency, and the ratings (:func:`~llmops_desktop.prompts.store.usage_by_version`).
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import LLMOpsError
from llmops_desktop.prompts.store import DEFAULT_ALIAS, aliases, set_alias, usage_by_version
from llmops_desktop.qt.context import icon
from llmops_desktop.qt.prompt_dialogs import alias_combo

KEEP_WEIGHT = -1.0  # the weight spin's "keep" value


def plain_table(headers: list[str]) -> QTableWidget:
    table = QTableWidget(0, len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    table.verticalHeader().hide()
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
    return table


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            table.setItem(r, c, QTableWidgetItem(text))


def split_text(name: str, table: dict[str, tuple[int, float]]) -> str:
    """Where a request for ``prompt:NAME`` goes, in words."""
    weighted = {a: (v, w) for a, (v, w) in table.items() if w > 0}
    total = sum(w for _, w in weighted.values())
    if weighted:
        parts = [f"{a} {w / total:.0%} (version {v})" for a, (v, w) in weighted.items()]
        return f"Requests for prompt:{name} are split: " + ", ".join(parts) + "."
    if DEFAULT_ALIAS in table:
        return (f"Requests for prompt:{name} go to {DEFAULT_ALIAS} (version "
                f"{table[DEFAULT_ALIAS][0]}); give aliases a weight to split them.")
    return (f"Requests for prompt:{name} go to the latest version; point {DEFAULT_ALIAS} at "
            "a version to fix it.")


class AliasPanel(QWidget):
    """The aliases table, the split, usage per version, and Move alias."""

    sig_changed = Signal()
    """An alias moved or its weight changed."""
    sig_error = Signal(str)
    """The core refused a change (its message)."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.name = ""
        self.aliases_table = plain_table(["Alias", "Version", "Split weight", "Share"])
        self.aliases_table.itemSelectionChanged.connect(self._on_alias_selected)
        self.split_label = QLabel()
        self.split_label.setWordWrap(True)
        self.usage_table = plain_table(["Version", "Aliases", "Requests", "Succeeded",
                                   "Mean latency", "Thumbs up", "Thumbs down"])
        self.alias_combo = alias_combo("prod, candidate, or type any alias name")
        self.alias_combo.setCurrentText(DEFAULT_ALIAS)
        self.version_combo = QComboBox()
        self.version_combo.setToolTip("The version the alias will name")
        self.version_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.weight_spin = QDoubleSpinBox()
        self.weight_spin.setRange(KEEP_WEIGHT, 1000.0)
        self.weight_spin.setDecimals(1)
        self.weight_spin.setSpecialValueText("keep")
        self.weight_spin.setValue(KEEP_WEIGHT)
        self.weight_spin.setToolTip("Split weight: requests that name no alias go to aliases "
                                    "of positive weight in proportion (e.g. prod 90, "
                                    "candidate 10); 0 takes it out of the split; 'keep' "
                                    "leaves it as it is")
        self.move_button = QPushButton(icon("tag"), "Move alias")
        self.move_button.setToolTip("Point the alias at the version (and set its weight)")
        self.move_button.clicked.connect(self.move_alias)
        form = QHBoxLayout()
        form.addWidget(QLabel("Point"))
        form.addWidget(self.alias_combo)
        form.addWidget(QLabel("at"))
        form.addWidget(self.version_combo)
        form.addWidget(QLabel("weight"))
        form.addWidget(self.weight_spin)
        form.addWidget(self.move_button)
        form.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.aliases_table, 1)
        layout.addLayout(form)
        layout.addWidget(self.split_label)
        layout.addWidget(QLabel("Served per version (from the request log and ratings)"))
        layout.addWidget(self.usage_table, 1)

    def show_prompt(self, name: str, version_numbers: list[int], selected: int) -> None:
        self.name = name
        self.version_combo.clear()
        for n in version_numbers:
            self.version_combo.addItem(f"{name}@{n}", n)
        self.version_combo.setCurrentIndex(max(0, self.version_combo.findData(selected)))
        self.reload(version_numbers)

    def reload(self, version_numbers: list[int] | None = None) -> None:
        if not self.name:
            return
        numbers = version_numbers or [self.version_combo.itemData(i)
                                      for i in range(self.version_combo.count())]
        table = aliases(self.catalog, self.name)
        total = sum(w for _, w in table.values() if w > 0)
        _fill(self.aliases_table, [
            [a, str(v), f"{w:g}", f"{w / total:.0%}" if w > 0 and total else "—"]
            for a, (v, w) in table.items()])
        self.split_label.setText(split_text(self.name, table))
        usage = usage_by_version(self.catalog, self.name)
        rows = []
        for n in reversed(numbers):
            u = usage.get(f"{self.name}@{n}", {})
            latency = u.get("mean_latency_ms")
            rows.append([str(n), ", ".join(a for a, (v, _) in table.items() if v == n),
                         str(u.get("requests") or 0), str(u.get("ok") or 0),
                         f"{latency:.0f} ms" if latency is not None else "—",
                         str(u.get("thumbs_up") or 0), str(u.get("thumbs_down") or 0)])
        _fill(self.usage_table, rows)

    def move_alias(self) -> bool:
        """Point the chosen alias at the chosen version; False when the core refused."""
        alias = self.alias_combo.currentText().strip()
        version = self.version_combo.currentData()
        weight = self.weight_spin.value()
        if not self.name or version is None:
            return False
        try:
            set_alias(self.catalog, self.name, alias, int(version),
                      weight=None if weight == KEEP_WEIGHT else weight)
        except LLMOpsError as exc:
            self.sig_error.emit(f"Could not move the alias: {exc}")
            return False
        self.weight_spin.setValue(KEEP_WEIGHT)
        self.reload()
        self.sig_changed.emit()
        return True

    def _on_alias_selected(self) -> None:
        rows = self.aliases_table.selectionModel().selectedRows()
        if not rows:
            return
        r = rows[0].row()
        self.alias_combo.setCurrentText(self.aliases_table.item(r, 0).text())
        version = int(self.aliases_table.item(r, 1).text())
        self.version_combo.setCurrentIndex(max(0, self.version_combo.findData(version)))
