"""The Monitor page's toolbar (time window, custom range, pause, follow, export buttons) and
its exports: every panel as one PNG, every charted series as CSV.

Nothing here imports pyqtgraph: the charts are reached through the page's panels, which
exist only once the page was shown.
"""

from __future__ import annotations

import csv
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QDateTime, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDateTimeEdit,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QToolButton,
)

from llmops_desktop.qt.context import icon

if TYPE_CHECKING:
    from llmops_desktop.qt.pages.monitor import MonitorPage

WINDOWS: list[tuple[str, float]] = [("1 min", 60), ("15 min", 900), ("1 h", 3600),
                                    ("24 h", 86400), ("Custom range…", 0)]


def _tool_button(icon_name: str, text: str, tooltip: str) -> QToolButton:
    button = QToolButton()
    button.setIcon(icon(icon_name))
    button.setText(text)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setToolTip(tooltip)
    return button


def build_toolbar(page: MonitorPage) -> QHBoxLayout:
    """The row above the charts; its widgets become the page's attributes."""
    bar = QHBoxLayout()
    bar.addWidget(QLabel("Show:"))
    page.window_combo = QComboBox()
    for label, seconds in WINDOWS:
        page.window_combo.addItem(label, seconds)
    page.window_combo.setToolTip("How much time the charts show. 24 h and a custom range "
                                 "come from the history kept in the catalog (10-second "
                                 "averages).")
    page.window_combo.currentIndexChanged.connect(page._on_window_changed)
    bar.addWidget(page.window_combo)
    now = QDateTime.currentDateTime()
    page.from_edit = QDateTimeEdit(now.addSecs(-3600))
    page.to_edit = QDateTimeEdit(now)
    page.show_range_button = QPushButton("Show")
    page.show_range_button.clicked.connect(page._on_show_range)
    for w in (page.from_edit, page.to_edit):
        w.setCalendarPopup(True)
        w.setDisplayFormat("yyyy-MM-dd HH:mm")
    page.range_widgets = [QLabel("from"), page.from_edit, QLabel("to"), page.to_edit,
                          page.show_range_button]
    for w in page.range_widgets:
        bar.addWidget(w)
        w.hide()
    page.pause_button = _tool_button("pause", "Pause",
                                     "Freeze the charts (sampling and history carry on)")
    page.pause_button.setCheckable(True)
    page.pause_button.toggled.connect(page._on_pause)
    page.follow_button = _tool_button("refresh", "Follow live",
                                      "Undo zooming (mouse wheel or drag on a chart zooms and "
                                      "pans its time axis)")
    page.follow_button.clicked.connect(page._on_follow)
    page.png_button = _tool_button("export", "PNG…", "Save the charts as a picture")
    page.png_button.clicked.connect(page._on_export_png)
    page.csv_button = _tool_button("export", "CSV…",
                                   "Save every charted figure over the shown time as CSV")
    page.csv_button.clicked.connect(page._on_export_csv)
    bar.addStretch(1)
    page.status_label = QLabel("Starting the monitor…")
    page.status_label.setStyleSheet("color: gray")
    page.status_label.setSizePolicy(QSizePolicy.Policy.Ignored,
                                    QSizePolicy.Policy.Preferred)  # never widens the window
    bar.addWidget(page.status_label)
    for w in (page.pause_button, page.follow_button, page.png_button, page.csv_button):
        bar.addWidget(w)
    return bar


# ---- export -------------------------------------------------------------------------------------

def ask_export_png(page: MonitorPage) -> None:
    """PNG…: ask where, then save the charts there."""
    path, _ = QFileDialog.getSaveFileName(page, "Save the charts as PNG",
                                          str(Path.home() / "monitor.png"),
                                          "PNG image (*.png)")
    if path:
        if page.export_png(path):
            page.ctx.events.sig_info.emit(f"Charts saved to {path}")
        else:
            page.banner.show_error(f"Could not write {path}.")


def ask_export_csv(page: MonitorPage) -> None:
    """CSV…: ask where, then save the figures there."""
    path, _ = QFileDialog.getSaveFileName(page, "Save the figures as CSV",
                                          str(Path.home() / "monitor.csv"),
                                          "CSV (*.csv)")
    if path:
        try:
            rows = page.export_csv(path)
        except OSError as exc:
            page.banner.show_error(f"Could not write {path}: {exc}")
            return
        page.ctx.events.sig_info.emit(f"{rows} figures saved to {path}")


def export_png(page: MonitorPage, path: str | Path) -> bool:
    """Every panel, as shown, in one picture (charts out of sight drawn first)."""
    for chart in page.charts():
        if not chart.paused:
            chart.refresh(force=True)
    return page.content.grab().save(str(path), "PNG")


def export_csv(page: MonitorPage, path: str | Path) -> int:
    """Every charted series over the shown time; returns the number of rows."""
    from llmops_desktop.monitor.series import describe, metric_of

    rows = 0
    seen: set[str] = set()
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["time_utc", "unix_time", "panel", "series", "label", "unit",
                      "value"])
        for panel in page.all_panels():
            for chart in panel.each_chart():
                for key, (t, v) in chart.data().items():
                    if key in seen:
                        continue
                    seen.add(key)
                    spec = next(s for s in chart.specs if s.key == key)
                    unit = metric_of(key).unit
                    label = describe(key) if key.startswith("sys.core.") else spec.label
                    for ti, vi in zip(t.tolist(), v.tolist()):
                        if vi != vi:  # NaN: no figure at that time
                            continue
                        out.writerow([datetime.fromtimestamp(ti, timezone.utc).isoformat(
                            timespec="milliseconds"), f"{ti:.3f}", panel.title(), key,
                            f"{chart.title}: {label}", unit, f"{vi:.6g}"])
                        rows += 1
    return rows
