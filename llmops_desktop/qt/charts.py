"""Live time-series charts (pyqtgraph) fed from the monitor's ring buffers.

A :class:`LiveChart` draws some series of a :class:`~llmops_desktop.monitor.series.
SeriesStore` over a moving time window (or a fixed range), on its own QTimer: at most
10 redraws a second (5 on a 1-minute window, fewer for longer ones), and only when
the store has new samples (so at the sampling rate, 2 a second by default); one every
:data:`INACTIVE_REDRAW_S` while its window is not the active one; none while hidden,
minimized, scrolled out of sight or paused. Older points than the rings
hold come from the catalog's history (:meth:`LiveChart.set_history`). Hovering shows
each series' value at that time; Ctrl+wheel and drag zoom and pan the time axis
(pyqtgraph's own; the plain wheel scrolls the page the chart sits on), after which the chart stays where the user put it until
:meth:`follow` is called. :class:`MiniChart` is the compact form other pages embed.

A redraw costs one paint of the chart, and a cheap one (what a busy server shares its
cores with): the value axis is cached as a pixmap and its range only changes when the
data outgrow a round ceiling (counts and rates start at 0, never below), only
horizontal grid lines are drawn (vertical ones would be re-drawn at every step of the
moving window), thin pens, curves clipped to the view and downsampled, and the view's
transform is settled before the paint (pyqtgraph would otherwise paint twice).

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
from PySide6.QtGui import QColor, QFont, QHideEvent, QPen, QShowEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QGraphicsItem,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

MAX_REDRAW_HZ = 10.0
INACTIVE_REDRAW_S = 2.0  # while the window is not the active one, a redraw this often
PALETTE = ("#4f86e0", "#e0864f", "#2e9e5b", "#c0392b", "#8e6cc9", "#b58900", "#17a2b8",
           "#7f8c8d")


class PlotWidget(pg.PlotWidget):
    """pyqtgraph's plot, zooming on Ctrl+wheel only: the plain wheel goes on to the page
    (a scroll area), so scrolling past a chart never zooms it by accident."""

    def wheelEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(event)
            return
        # the view's own scroll-area plumbing swallows an ignored wheel event, so hand it
        # to the nearest scrolling page explicitly
        page = self.parentWidget()
        while page is not None and not isinstance(page, QAbstractScrollArea):
            page = page.parentWidget()
        if page is None:
            event.ignore()
        else:
            QApplication.sendEvent(page.verticalScrollBar(), event)


@dataclass(frozen=True)
class SeriesSpec:
    """One curve: the store's key, its label, and how to show it (``scale`` turns the
    stored unit into the chart's, e.g. bytes to GB)."""

    key: str
    label: str
    color: str = ""
    scale: float = 1.0
    dashed: bool = False
    width: float = 1.0  # wider pens cost the raster engine several times more


def redraw_interval_ms(window_s: float) -> int:
    """Redraw often enough for a smooth scroll (a pixel or so a step on a 1-minute
    window), never more than 10 times a second, at least every 2 s."""
    return int(1000 * min(2.0, max(1.0 / MAX_REDRAW_HZ, window_s / 300.0)))


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value``."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if step * power >= value * (1 - 1e-9):
            return step * power
    return 10.0 * power


def value_range(values: Sequence[np.ndarray], floor: float | None = 0.0
                ) -> tuple[float, float]:
    """A stable y range for these values: from ``floor`` (0 for counts and rates; lower
    only if a value is) up to a round ceiling a little above the largest; (0, 1) when
    there is nothing to show."""
    finite = [v[np.isfinite(v)] for v in values if len(v)]
    finite = [v for v in finite if len(v)]
    if not finite:
        return (floor if floor is not None else 0.0), (floor if floor is not None else 0.0) + 1
    lo = min(float(v.min()) for v in finite)
    hi = max(float(v.max()) for v in finite)
    if floor is not None and lo >= floor:
        bottom = floor
    else:
        bottom = -nice_ceiling(-lo * 1.05) if lo < 0 else 0.0
    top = nice_ceiling(hi * 1.05) if hi > 0 else (0.0 if bottom < 0 else 1.0)
    if top - bottom <= 0:
        top = bottom + 1
    return bottom, top


def _format(value: float, unit: str) -> str:
    if value is None or math.isnan(value):
        return "–"
    digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:.{digits}f}{'' if unit == '%' else ' '}{unit}"


class LiveChart(QWidget):
    """A titled chart of one or more series from a SeriesStore."""

    def __init__(self, title: str, unit: str, specs: Sequence[SeriesSpec], store: Any = None,
                 *, window_s: float = 60.0, y_range: tuple[float, float] | None = None,
                 y_floor: float | None = 0.0, compact: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.unit = unit
        self.specs = list(specs)
        self.store = store
        self.window_s = window_s
        self.fixed_range: tuple[float, float] | None = None
        self.y_range = y_range  # fixed; else from the data, never below y_floor unless they are
        self.y_floor = y_floor
        self.paused = False
        self.user_zoomed = False
        self.history: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._drawn_version = -1
        self._drawn_at = -math.inf  # time.monotonic() of the last redraw
        self._shown_y: tuple[float, float] | None = None
        self._setting_range = False
        self.redraws = 0

        axis = {"bottom": pg.DateAxisItem(orientation="bottom")}
        self.plot = PlotWidget(axisItems=axis, background=None)
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.showGrid(x=False, y=True, alpha=0.15)
        item = self.plot.getPlotItem()
        item.hideButtons()
        # the value axis (and its grid) changes only with the y range: keep it as a pixmap
        item.getAxis("left").setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        view = item.getViewBox()
        view.sigRangeChangedManually.connect(self._on_user_zoom)
        view.disableAutoRange()
        self._set_y(*(y_range or value_range([], y_floor)))
        self.curves: dict[str, Any] = {}
        for i, spec in enumerate(self.specs):
            self._add_curve(spec, i)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.title_label = QLabel()
        self.readout = QLabel()
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        if compact:  # small scales, no title or hover read-out
            font = QFont(self.font())
            font.setPointSizeF(max(6.0, font.pointSizeF() * 0.75))
            for side in ("left", "bottom"):
                axis_item = item.getAxis(side)
                axis_item.setStyle(tickFont=font, tickLength=-3, tickTextOffset=2)
            item.getAxis("left").setWidth(34)
            item.getAxis("bottom").setHeight(16)
            self.plot.setMinimumHeight(60)
            self.plot.setMaximumHeight(96)
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
        self._set_x()  # an empty chart still shows its time span, never 1970's first second

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
        self._set_x()
        self.refresh()

    def set_range(self, t0: float, t1: float) -> None:
        """Show a fixed range (history); no scrolling."""
        self.fixed_range = (t0, t1)
        self.user_zoomed = False
        self._drawn_version = -1
        self._set_x()
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
        self._set_x()
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

    def refresh(self, *, force: bool = False) -> None:
        """Redraw when there is something new to see; ``force``: now, seen or not (a
        picture of the page)."""
        if not force:
            # (the plot's viewport: the chart's own region excludes the opaque plot in it)
            if (self.paused or not self.isVisible()
                    or self.plot.viewport().visibleRegion().isEmpty()):
                return  # scrolled out of sight: the next tick after it comes back draws it
            window = self.window()
            if window.isMinimized():
                return
            version = self.store.version if self.store is not None else 0
            if version == self._drawn_version:
                return  # nothing new: the window moves on with the next sample
            if (not window.isActiveWindow()
                    and time.monotonic() - self._drawn_at < INACTIVE_REDRAW_S):
                return  # another window has the user's attention: a slow pace is enough
        self._draw()

    def _draw(self) -> None:
        self._drawn_version = self.store.version if self.store is not None else 0
        self._drawn_at = time.monotonic()
        t0, t1 = self.span()
        # a little before the window, so the line enters from the edge
        margin = (t1 - t0) * 0.05
        shown = []
        for spec in self.specs:
            t, v = self.series_data(spec.key, t0 - margin, t1)
            if spec.scale != 1:
                v = v * spec.scale
            self.curves[spec.key].setData(t, v)
            shown.append(v)
        self.redraws += 1
        if self.y_range is None:
            self._set_y(*value_range(shown, self.y_floor))
        self._set_x(t0, t1)
        # settle the view's transform now: pyqtgraph defers it to the paint, which then
        # moves the items and asks for a second paint of the whole chart
        self.plot.getPlotItem().getViewBox().prepareForPaint()

    def _set_x(self, t0: float | None = None, t1: float | None = None) -> None:
        if self.user_zoomed:
            return
        if t0 is None or t1 is None:
            t0, t1 = self.span()
        self._setting_range = True
        try:
            self.plot.setXRange(t0, t1, padding=0)
        finally:
            self._setting_range = False

    def _set_y(self, lo: float, hi: float) -> None:
        if (lo, hi) == self._shown_y:
            return  # the same scale: the cached axis is drawn as it was
        self._shown_y = (lo, hi)
        self.plot.setYRange(lo, hi + (hi - lo) * 0.03, padding=0)

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
