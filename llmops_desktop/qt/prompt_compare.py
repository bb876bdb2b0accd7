"""Compare two versions of a prompt: the unified diff ``llmops prompt diff`` prints, or the
same diff laid out side by side (the older version left, the newer right)."""

from __future__ import annotations

import html

from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QStackedWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.prompts.store import PromptVersion, diff

REMOVED, ADDED = "#ffebee", "#e8f5e9"


def side_by_side(text: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The left and right columns of a unified diff: (line, kind) with kind "same",
    "removed", "added" or "gap" (a blank line facing the other side's change)."""
    left: list[tuple[str, str]] = []
    right: list[tuple[str, str]] = []
    removed: list[str] = []
    added: list[str] = []

    def flush() -> None:
        for i in range(max(len(removed), len(added))):
            left.append((removed[i], "removed") if i < len(removed) else ("", "gap"))
            right.append((added[i], "added") if i < len(added) else ("", "gap"))
        removed.clear()
        added.clear()

    for line in text.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            flush()
            left.append((line, "hunk"))
            right.append((line, "hunk"))
        elif line.startswith("-"):
            removed.append(line[1:])
        elif line.startswith("+"):
            added.append(line[1:])
        else:
            flush()
            left.append((line[1:], "same"))
            right.append((line[1:], "same"))
    flush()
    return left, right


def _html(rows: list[tuple[str, str]]) -> str:
    colours = {"removed": REMOVED, "added": ADDED, "hunk": "#eceff1"}
    out = []
    for line, kind in rows:
        style = f" style='background:{colours[kind]}'" if kind in colours else ""
        out.append(f"<div{style}>{html.escape(line) or '&nbsp;'}</div>")
    return "<div style='white-space: pre; font-family: monospace'>" + "".join(out) + "</div>"


def _mono(wrap: bool) -> QTextBrowser:
    view = QTextBrowser()
    view.setFont(QFont("monospace"))
    view.setLineWrapMode(QTextBrowser.LineWrapMode.WidgetWidth if wrap else
                         QTextBrowser.LineWrapMode.NoWrap)  # side by side: rows stay level
    return view


class ComparePanel(QWidget):
    """Two version pickers and the diff between them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.versions: list[PromptVersion] = []
        self.text = ""  # the unified diff shown (the CLI's)
        self.a_combo, self.b_combo = QComboBox(), QComboBox()
        self.a_combo.setToolTip("The older version (left, lines in red)")
        self.b_combo.setToolTip("The newer version (right, lines in green)")
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Side by side", "side")
        self.mode_combo.addItem("Unified", "unified")
        self.mode_combo.setToolTip("Unified is what 'llmops prompt diff' prints")
        for combo in (self.a_combo, self.b_combo, self.mode_combo):
            combo.currentIndexChanged.connect(lambda _: self.show_diff())
        self.unified = _mono(True)
        self.left, self.right = _mono(False), _mono(False)
        self.left.verticalScrollBar().valueChanged.connect(
            self.right.verticalScrollBar().setValue)
        self.right.verticalScrollBar().valueChanged.connect(
            self.left.verticalScrollBar().setValue)
        pair = QWidget()
        columns = QHBoxLayout(pair)
        columns.setContentsMargins(0, 0, 0, 0)
        columns.addWidget(self.left)
        columns.addWidget(self.right)
        self.stack = QStackedWidget()
        self.stack.addWidget(pair)
        self.stack.addWidget(self.unified)
        self.summary = QLabel()
        top = QHBoxLayout()
        top.addWidget(QLabel("Compare"))
        top.addWidget(self.a_combo)
        top.addWidget(QLabel("with"))
        top.addWidget(self.b_combo)
        top.addStretch(1)
        top.addWidget(self.mode_combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addWidget(self.stack, 1)

    def set_versions(self, versions: list[PromptVersion]) -> None:
        """The prompt's versions; the newest is compared with the one before it."""
        self.versions = versions
        for combo, pick in ((self.a_combo, len(versions) - 2), (self.b_combo, len(versions) - 1)):
            combo.blockSignals(True)
            combo.clear()
            for v in versions:
                combo.addItem(v.ref, v.version)
            combo.setCurrentIndex(max(pick, 0))
            combo.blockSignals(False)
        self.show_diff()

    def compare(self, a: int, b: int) -> str:
        """Compare version ``a`` with version ``b``; returns the unified diff."""
        for combo, n in ((self.a_combo, a), (self.b_combo, b)):
            combo.blockSignals(True)
            combo.setCurrentIndex(combo.findData(n))
            combo.blockSignals(False)
        self.show_diff()
        return self.text

    def show_diff(self) -> None:
        by_number = {v.version: v for v in self.versions}
        a, b = by_number.get(self.a_combo.currentData()), by_number.get(self.b_combo.currentData())
        self.text = diff(a, b) if a is not None and b is not None else ""
        if a is None or b is None:
            self.summary.setText("No versions to compare yet.")
        elif not self.text:
            self.summary.setText(f"{a.ref} and {b.ref} are the same.")
        else:
            lines = self.text.splitlines()[2:]
            self.summary.setText(f"{sum(x.startswith('-') for x in lines)} line(s) removed, "
                                 f"{sum(x.startswith('+') for x in lines)} added.")
        self.unified.setPlainText(self.text)
        left, right = side_by_side(self.text)
        self.left.setHtml(_html(left))
        self.right.setHtml(_html(right))
        self.stack.setCurrentIndex(0 if self.mode_combo.currentData() == "side" else 1)
