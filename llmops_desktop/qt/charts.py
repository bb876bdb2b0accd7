"""Live time-series charts (pyqtgraph) fed from the monitor's ring buffers.

A :class:`LiveChart` draws some series of a :class:`~llmops_desktop.monitor.series.
SeriesStore` over a moving time window (or a fixed range), on its own QTimer: at most
10 redraws a second (5 on a 1-minute window, fewer for longer ones), and only when
the store has new samples (so at the sampling rate, 2 a second by default); none while
hidden, scrolled out of sight or paused. Older points than the rings
hold come from the catalog's history (:meth:`LiveChart.set_history`). Hovering shows
each series' value at that time; the mouse wheel and drag zoom and pan the time axis
(pyqtgraph's own), after which the chart stays where the user put it until
:meth:`follow` is called. :class:`MiniChart` is the compact form other pages embed.

Import this module lazily (pyqtgraph costs the window's start ~0.7 s).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QHideEvent, QPen, QShowEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

MAX_REDRAW_HZ = 10.0
PALETTE = ("#4f86e0", "#e0864f", "#2e9e5b", "#c0392b", "#8e6cc9", "#b58900", "#17a2b8",
           "#7f8c8d")


@dataclass(frozen=True)
class SeriesSpec:
    """One curve: the store's key, its label, and how to show it (``scale`` turns the
    stored unit into the chart's, e.g. bytes to GB)."""

    key: str
    label: str
    color: str = ""
    scale: float = 1.0
    dashed: bool = False
    width: float = 1.6


def redraw_interval_ms(window_s: float) -> int:
    """Redraw often enough for a smooth scroll (a pixel or so a step on a 1-minute
    window), never more than 10 times a second, at least every 2 s."""
    return int(1000 * min(2.0, max(1.0 / MAX_REDRAW_HZ, window_s / 300.0)))


def _format(value: float, unit: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f}{'' if unit == '%' else ' '}{unit}"


class LiveChart(QWidget):
    """A titled chart of one or more series from a SeriesStore."""

    def __init__(self, title: str, unit: str, specs: Sequence[SeriesSpec], store: Any = None,
                 *, window_s: float = 60.0, y_range: tuple[float, float] | None = None,
                 compact: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self.specs = list(specs)
        self.store = store
        self.window_s = window_s
        self.fixed_range: tuple[float, float] | None = None
        self.paused = False
        self.user_zoomed = False
        self.history: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._drawn_version = -1
        self._setting_range = False
        self.redraws = 0

        axis = {"bottom": pg.DateAxisItem(orientation="bottom")}
        self.plot = pg.PlotWidget(axisItems=axis, background=None)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        item = self.plot.getPlotItem()
        item.hideButtons()
        view = item.getViewBox()
        view.sigRangeChangedManually.connect(self._on_user_zoom)
        if y_range is not None:
            self.plot.setYRange(*y_range, padding=0.02)
        else:
            view.enableAutoRange(axis="y")
            view.setAutoVisible(y=True)
        self.curves: dict[str, Any] = {}
        for i, spec in enumerate(self.specs):
            self._add_curve(spec, i)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.title_label = QLabel()
        self.readout = QLabel()
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        if compact:
            for side in ("left", "bottom"):
                item.hideAxis(side)
            self.plot.setMinimumHeight(48)
            self.plot.setMaximumHeight(72)
            self.plot.setMouseEnabled(x=False, y=False)
            self.title_label.hide()
            self.readout.hide()
        else:
            self.plot.setMinimumHeight(130)
            self.title_label.setText(f"<b>{title}</b>" + (f" ({unit})" if unit else ""))
            layout.addWidget(self.title_label)
            layout.addWidget(self.readout)
            self.cursor = pg.InfiniteLine(angle=90, movable=False,
                                          pen=pg.mkPen("#888888", width=1))
            self.cursor.hide()
            self.plot.addItem(self.cursor, ignoreBounds=True)
            self.plot.scene().sigMouseMoved.connect(self._on_mouse_moved)
        layout.addWidget(self.plot)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

        self.timer = QTimer(self)
        self.timer.setInterval(redraw_interval_ms(window_s))
        self.timer.timeout.connect(self.refresh)

    def _add_curve(self, spec: SeriesSpec, index: int) -> None:
        color = QColor(spec.color or PALETTE[index % len(PALETTE)])
        pen = QPen(color)
        pen.setWidthF(spec.width)
        pen.setCosmetic(True)
        if spec.dashed:
            pen.setStyle(Qt.PenStyle.DashLine)
        curve = self.plot.plot([], [], pen=pen, name=spec.label, connect="finite")
        curve.setClipToView(True)
        curve.setDownsampling(auto=True, method="peak")
        self.curves[spec.key] = curve

    # ---- what to show ---------------------------------------------------------------------

    def set_store(self, store: Any) -> None:
        self.store = store
        self._drawn_version = -1
        self.refresh()

    def set_series(self, specs: Sequence[SeriesSpec]) -> None:
        """Replace the curves (e.g. a deployment's per-endpoint series appeared)."""
        for curve in self.curves.values():
            self.plot.removeItem(curve)
        self.curves.clear()
        self.specs = list(specs)
        for i, spec in enumerate(self.specs):
            self._add_curve(spec, i)
        self._drawn_version = -1
        self.refresh()

    def set_window(self, seconds: float) -> None:
        """Follow the last ``seconds`` live."""
        self.window_s = seconds
        self.fixed_range = None
        self.user_zoomed = False
        self.timer.setInterval(redraw_interval_ms(seconds))
        self._drawn_version = -1
        self.refresh()

    def set_range(self, t0: float, t1: float) -> None:
        """Show a fixed range (history); no scrolling."""
        self.fixed_range = (t0, t1)
        self.user_zoomed = False
        self._drawn_version = -1
        self.refresh()

    def set_history(self, history: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Older points (from the catalog) shown before the rings' first point."""
        self.history = {s.key: history[s.key] for s in self.specs if s.key in history}
        self._drawn_version = -1
        self.refresh()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        if not paused:
            self.refresh()

    def follow(self) -> None:
        """Undo the user's zoom: back to the moving window (or the fixed range)."""
        self.user_zoomed = False
        self._drawn_version = -1
        self.refresh()

    def span(self, now: float | None = None) -> tuple[float, float]:
        if self.fixed_range is not None:
            return self.fixed_range
        now = time.time() if now is None else now
        return now - self.window_s, now

    # ---- data -------------------------------------------------------------------------------

    def series_data(self, key: str, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """History before the ring's first point, then the ring, both within [t0, t1]."""
        ring_t, ring_v = (self.store.window(key, t0, t1) if self.store is not None
                          else (np.empty(0), np.empty(0)))
        hist = self.history.get(key)
        if hist is None or not len(hist[0]):
            return ring_t, ring_v
        first = self.store.first_time(key) if self.store is not None else None
        ht, hv = hist
        keep = (ht >= t0) & (ht <= t1)
        if first is not None:
            keep &= ht < first
        return np.concatenate((ht[keep], ring_t)), np.concatenate((hv[keep], ring_v))

    def data(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every series over what the chart shows now (unscaled, the stored unit)."""
        t0, t1 = self.span()
        return {s.key: self.series_data(s.key, t0, t1) for s in self.specs}

    # ---- drawing ----------------------------------------------------------------------------

    def refresh(self) -> None:
        if self.paused or not self.isVisible() or self.visibleRegion().isEmpty():
            return  # scrolled out of sight: the next tick after it comes back draws it
        version = self.store.version if self.store is not None else 0
        if version == self._drawn_version:
            return  # nothing new: the window moves on with the next sample
        self._drawn_version = version
        t0, t1 = self.span()
        # a little before the window, so the line enters from the edge
        margin = (t1 - t0) * 0.05
        for spec in self.specs:
            t, v = self.series_data(spec.key, t0 - margin, t1)
            self.curves[spec.key].setData(t, v * spec.scale if spec.scale != 1 else v)
        self.redraws += 1
        if not self.user_zoomed:
            self._setting_range = True
            try:
                self.plot.setXRange(t0, t1, padding=0)
            finally:
                self._setting_range = False

    def _on_user_zoom(self, *_: Any) -> None:
        if not self._setting_range:
            self.user_zoomed = True

    def _on_mouse_moved(self, pos: Any) -> None:
        view = self.plot.getPlotItem().getViewBox()
        if not self.plot.sceneBoundingRect().contains(pos):
            self.cursor.hide()
            self.readout.clear()
            return
        t = view.mapSceneToView(pos).x()
        self.cursor.setPos(t)
        self.cursor.show()
        self.readout.setText(self.readout_at(t))

    def readout_at(self, t: float) -> str:
        """Each series' value nearest to time ``t``, as the hover line shows it."""
        parts = [time.strftime("%H:%M:%S", time.localtime(t))]
        span = self.span()
        for spec in self.specs:
            st, sv = self.series_data(spec.key, span[0] - self.window_s, span[1])
            if not len(st):
                continue
            i = int(np.clip(np.searchsorted(st, t), 0, len(st) - 1))
            if i > 0 and abs(st[i - 1] - t) < abs(st[i] - t):
                i -= 1
            color = spec.color or PALETTE[self.specs.index(spec) % len(PALETTE)]
            parts.append(f"<span style='color:{color}'>{spec.label}</span> "
                         f"{_format(sv[i] * spec.scale, self.unit)}")
        return " &nbsp; ".join(parts)

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        self.timer.start()
        self._drawn_version = -1
        self.refresh()

    def hideEvent(self, event: QHideEvent) -> None:  # noqa: N802 - Qt's name
        self.timer.stop()
        super().hideEvent(event)


class MiniChart(LiveChart):
    """A small live chart without axes, for embedding (a deployment's tokens/s, say)."""

    def __init__(self, specs: Sequence[SeriesSpec], store: Any = None, *,
                 window_s: float = 60.0, y_range: tuple[float, float] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__("", "", specs, store, window_s=window_s, y_range=y_range,
                         compact=True, parent=parent)
