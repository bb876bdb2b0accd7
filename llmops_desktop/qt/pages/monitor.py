"""The Monitor page: live GPU, system and deployment charts, kept as history; alerts.

The app's one sampler (:func:`~llmops_desktop.qt.monitor_controller.monitor_for`) runs
from the window's start, whether or not this page is shown, so history and alerts never
depend on where the user looks. The charts are built the first time the page is shown
(pyqtgraph is imported then) and redraw on their own timers from the sampler's rings; a
sample only updates the figures above each chart and adds or removes panels, and only
while the page is seen (every 2 s while the window is not the active one; none while it
is minimized or another page is shown: the page catches up when shown). Windows of
1 min, 15 min and 1 h follow live (earlier points than the rings hold come from the
catalog's history); 24 h and a custom range read the history off the GUI thread.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLineEdit,
    QScrollArea,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.qt.banner_overlay import OverlayHost
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.monitor_controller import monitor_for
from llmops_desktop.qt.monitor_layout import (
    WINDOWS,
    ask_export_csv,
    ask_export_png,
    build_toolbar,
    export_csv,
    export_png,
)
from llmops_desktop.qt.widgets import MessageBanner

HISTORY_REFRESH_MS = 60_000  # while a 24 h view is shown, re-read the newest history
INACTIVE_FIGURES_S = 2.0  # while the window is not the active one, figures this often


class MonitorPage(Page):
    """Live charts of GPUs, the system and deployments, with history and alerts."""

    page_id = "monitor"
    title = "Monitor"
    icon_name = "monitor"
    tooltip = "Live GPU, system and latency charts, kept as history; alerts"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.controller = monitor_for(ctx)
        self.window_s: float = 60
        self.custom_range: tuple[float, float] | None = None
        self.history: dict[str, Any] = {}
        self.gpu_panels: dict[int, Any] = {}
        self.deployment_panels: dict[int, Any] = {}
        self.system_panel: Any = None
        self.no_gpu_panel: Any = None
        self.active_alerts: dict[tuple[str, str], str] = {}
        self.notifications: list[str] = []  # what went to the desktop (or would have)
        self._tray: QSystemTrayIcon | None = None
        self._built = False
        self._history_request = 0
        self._figures_at = -math.inf  # time.monotonic() of the last figures while inactive

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(self._build_toolbar())
        self.banner = MessageBanner()  # floats over the charts: an alert never moves them
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.content = QWidget()
        self.panels = QVBoxLayout(self.content)
        self.panels.setContentsMargins(0, 0, 0, 0)
        self.panels.addStretch(1)
        self.scroll.setWidget(self.content)
        layout.addWidget(OverlayHost(self.scroll, self.banner), 1)

        self.history_timer = QTimer(self)
        self.history_timer.setInterval(HISTORY_REFRESH_MS)
        self.history_timer.timeout.connect(self._load_history)
        c = self.controller
        c.sig_started.connect(self._on_started)
        c.sig_failed.connect(self.banner.show_error)
        c.sig_sample.connect(self._on_sample)
        c.sig_alert.connect(self._on_alert)

    def _build_toolbar(self) -> QHBoxLayout:
        return build_toolbar(self)

    # ---- building the panels (first show) ----------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if not self._built:
            self._built = True
            self._build_panels()
            self._load_history()
        elif self.controller.latest is not None:
            self._on_sample(self.controller.latest)  # figures skipped while out of sight

    def _insert_panel(self, panel: QWidget, position: int | None = None) -> None:
        count = self.panels.count() - 1  # the stretch stays last
        self.panels.insertWidget(count if position is None else min(position, count), panel)

    def _build_panels(self) -> None:
        from llmops_desktop.qt.monitor_panels import NoGpuPanel, SystemPanel

        store = self.controller.store
        cores = 0
        latest = self.controller.latest
        if latest is not None:
            cores = len(latest.system.per_core)
        else:
            import os

            cores = os.cpu_count() or 1
        self.system_panel = SystemPanel(store, cores, self.window_s)
        self.no_gpu_panel = NoGpuPanel(self.controller.gpu_status)
        self._insert_panel(self.no_gpu_panel)
        self._insert_panel(self.system_panel)
        if latest is not None:
            self._on_sample(latest)

    def all_panels(self) -> list[Any]:
        panels = [*self.gpu_panels.values(), self.system_panel,
                  *self.deployment_panels.values()]
        return [p for p in panels if p is not None]

    def charts(self) -> list[Any]:
        return [c for p in self.all_panels() for c in p.each_chart()]

    # ---- sampler news ---------------------------------------------------------------------------

    def _on_started(self) -> None:
        store = self.controller.store
        for chart in self.charts():
            chart.set_store(store)
        if self.no_gpu_panel is not None:
            self.no_gpu_panel.update_from(self.controller.gpu_status)
        rate = self.controller.sampler.config.rate_hz
        self.status_label.setText(f"Sampling {rate:g}×/s")

    def _on_sample(self, sample: Any) -> None:
        if not self._built or not self.isVisible():
            return  # shown again, it takes the latest sample (showEvent)
        window = self.window()
        if window.isMinimized():
            return
        if not window.isActiveWindow():  # the user looks elsewhere: figures at a slow pace
            now = time.monotonic()
            if now - self._figures_at < INACTIVE_FIGURES_S:
                return
            self._figures_at = now
        self._sync_gpu_panels(sample)
        self._sync_deployment_panels(sample)
        self.system_panel.update_from(sample)
        if not self.pause_button.isChecked():
            self.status_label.setText(
                f"Sampling {self.controller.sampler.config.rate_hz:g}×/s · last "
                f"{time.strftime('%H:%M:%S', time.localtime(sample.t))}"
                if self.controller.sampler is not None else "")

    def _sync_gpu_panels(self, sample: Any) -> None:
        from llmops_desktop.qt.monitor_panels import GpuPanel

        if not sample.gpus:
            self.no_gpu_panel.update_from(sample.gpu)
            self.no_gpu_panel.setVisible(True)
            return
        self.no_gpu_panel.setVisible(False)
        for i, g in enumerate(sample.gpus):
            panel = self.gpu_panels.get(g.index)
            if panel is None:
                panel = self.gpu_panels[g.index] = GpuPanel(g.index, g.name,
                                                            self.controller.store,
                                                            self.window_s)
                self._configure(panel)
                self._insert_panel(panel, i)
            panel.update_from(g)

    def _sync_deployment_panels(self, sample: Any) -> None:
        from llmops_desktop.qt.monitor_panels import DeploymentPanel

        running = {d.id: d for d in sample.deployments}
        procs = {p.id: p for p in sample.processes if p.kind == "deployment"}
        wanted = set(running) | self._deployments_in_view()
        for dep_id in sorted(wanted):
            panel = self.deployment_panels.get(dep_id)
            if panel is None:
                d = running.get(dep_id)
                name = d.name if d is not None else self._history_label(f"dep.{dep_id}")
                panel = self.deployment_panels[dep_id] = DeploymentPanel(
                    dep_id, name or f"#{dep_id}", self.controller.store, self.window_s)
                panel.sig_key_requested.connect(self._on_key_requested)
                self._configure(panel)
                self._insert_panel(panel)
            if dep_id in running:
                panel.update_from(running[dep_id], procs.get(dep_id))
            elif panel.status != "stopped":
                panel.status = "stopped"
                panel.info.setText("Not running now; its figures are history.")
        for dep_id in set(self.deployment_panels) - wanted:
            panel = self.deployment_panels.pop(dep_id)
            self.panels.removeWidget(panel)
            panel.deleteLater()

    def _deployments_in_view(self) -> set[int]:
        """Deployments with figures in the time shown (from the rings or the history)."""
        t0 = (self.custom_range[0] if self.custom_range is not None
              else time.time() - self.window_s)
        ids: set[int] = set()
        for key, (t, _) in self.history.get("series", {}).items():
            parts = key.split(".")
            if parts[0] == "dep" and parts[1].isdigit() and len(t) and t[-1] >= t0:
                ids.add(int(parts[1]))
        store = self.controller.store
        for key in store.keys("dep.") if store is not None else ():
            dep_id = int(key.split(".")[1])
            if dep_id not in ids and len(store.window(key, t0)[0]):
                ids.add(dep_id)
        return ids

    def _history_label(self, prefix: str) -> str:
        labels = self.history.get("labels", {})
        label = next((v for k, v in labels.items() if k.startswith(prefix + ".") and v), "")
        return label.removeprefix("deployment ")

    def _configure(self, panel: Any) -> None:
        """A new panel takes the page's current window, range, pause and history."""
        for chart in panel.each_chart():
            if self.custom_range is not None:
                chart.set_range(*self.custom_range)
            else:
                chart.set_window(self.window_s)
            chart.set_history(self.history.get("series", {}))
            chart.set_paused(self.pause_button.isChecked())

    # ---- alerts ---------------------------------------------------------------------------------

    def _on_alert(self, event: Any) -> None:
        key = (event.rule, event.series)
        if event.state == "firing":
            self.active_alerts[key] = event.message
            self.banner.show_error("Alert: " + " ".join(self.active_alerts.values()))
            self._notify(event.message)
            if not self.isVisible():
                self.ctx.events.sig_error.emit(f"Alert: {event.message} (see the Monitor page)")
        else:
            self.active_alerts.pop(key, None)
            if self.active_alerts:
                self.banner.show_error("Alert: " + " ".join(self.active_alerts.values()))
            else:
                self.banner.show_info(event.message)

    def _notify(self, message: str) -> None:
        self.notifications.append(message)
        if not QSystemTrayIcon.isSystemTrayAvailable():
            return  # the banner says it
        if self._tray is None:
            self._tray = QSystemTrayIcon(icon("app"), self)
            self._tray.setToolTip("LLMOps Desktop")
            self._tray.show()
        self._tray.showMessage("LLMOps Desktop alert", message,
                               QSystemTrayIcon.MessageIcon.Warning, 10_000)

    # ---- the toolbar ----------------------------------------------------------------------------

    def _on_window_changed(self, index: int) -> None:
        seconds = float(self.window_combo.itemData(index))
        custom = seconds == 0
        for w in self.range_widgets:
            w.setVisible(custom)
        if custom:
            return  # "Show" applies the range
        self.custom_range = None
        self.window_s = seconds
        for chart in self.charts():
            chart.set_window(seconds)
        self._load_history()
        if seconds > 3600:
            self.history_timer.start()
        else:
            self.history_timer.stop()

    def _on_show_range(self) -> None:
        t0 = self.from_edit.dateTime().toSecsSinceEpoch()
        t1 = self.to_edit.dateTime().toSecsSinceEpoch()
        if t1 <= t0:
            self.banner.show_error("The custom range must end after it starts.")
            return
        self.show_range(float(t0), float(t1))

    def show_range(self, t0: float, t1: float) -> None:
        """Show a fixed range from history (and the rings, where they reach)."""
        self.custom_range = (t0, t1)
        self.history_timer.stop()
        for chart in self.charts():
            chart.set_range(t0, t1)
        self._load_history()

    def _on_pause(self, paused: bool) -> None:
        self.pause_button.setText("Paused" if paused else "Pause")
        self.pause_button.setIcon(icon("resume" if paused else "pause"))
        for chart in self.charts():
            chart.set_paused(paused)

    def _on_follow(self) -> None:
        for chart in self.charts():
            chart.follow()

    def _on_key_requested(self, dep_id: int) -> None:
        panel = self.deployment_panels.get(dep_id)
        key, ok = QInputDialog.getText(self, "API key", f"API key of deployment "
                                       f"{panel.name if panel else dep_id} (to read its "
                                       "figures; kept in memory only):",
                                       QLineEdit.EchoMode.Password)
        if ok and key.strip():
            self.controller.set_api_key(dep_id, key.strip())

    # ---- history --------------------------------------------------------------------------------

    def _load_history(self) -> None:
        if self.custom_range is not None:
            t0, t1 = self.custom_range
        else:
            t1 = time.time()
            t0 = t1 - self.window_s
        self._history_request += 1
        request = self._history_request
        self.controller.load_history(t0, t1, lambda data: self._on_history(request, data),
                                     lambda exc: self.banner.show_error(
                                         f"The monitor history cannot be read: {exc}"),
                                     receiver=self)

    def _on_history(self, request: int, data: dict[str, Any]) -> None:
        if request != self._history_request:
            return  # an older request answered late
        self.history = data
        for chart in self.charts():
            chart.set_history(data["series"])
        latest = self.controller.latest
        if latest is not None and self._built:
            self._sync_deployment_panels(latest)

    def refresh(self) -> None:
        self._load_history()

    # ---- export ---------------------------------------------------------------------------------

    def _on_export_png(self) -> None:
        ask_export_png(self)

    def _on_export_csv(self) -> None:
        ask_export_csv(self)

    def export_png(self, path: str | Path) -> bool:
        """Every panel, as shown, in one picture (charts out of sight drawn first)."""
        return export_png(self, path)

    def export_csv(self, path: str | Path) -> int:
        """Every charted series over the shown time; returns the number of rows."""
        return export_csv(self, path)

    # ---- state ----------------------------------------------------------------------------------

    def save_state(self, state: QSettings) -> None:
        if self.custom_range is None:
            state.setValue("monitor/window_s", self.window_s)

    def restore_state(self, state: QSettings) -> None:
        try:
            seconds = float(state.value("monitor/window_s", 60))
        except (TypeError, ValueError):
            seconds = 60.0
        for i, (_, s) in enumerate(WINDOWS):
            if s == seconds and s:
                self.window_combo.setCurrentIndex(i)
