"""One metric of the Evaluate page's matrix as bars with error bars: a bar per artifact
(its mean) and a whisker over its 95 % interval. pyqtgraph is imported the first time
there is something to draw, so the window's start never pays for it."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QStackedWidget, QVBoxLayout, QWidget

BAR_COLOR = "#4f86e0"
HINT = "Bars with error bars appear here once an artifact has a finished run on this suite."


class MetricBars(QWidget):
    """A metric chooser above a bar chart of that metric, one bar per artifact."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[dict[str, Any]] = []
        self.plot: Any = None
        self.bars: Any = None
        self.errors: Any = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        top = QHBoxLayout()
        top.addWidget(QLabel("Metric"))
        self.metric_combo = QComboBox()
        self.metric_combo.setToolTip("The metric the bars show; whiskers are the 95 % "
                                     "bootstrap interval. Ctrl+wheel zooms.")
        self.metric_combo.currentIndexChanged.connect(lambda _i: self.redraw())
        top.addWidget(self.metric_combo, 1)
        layout.addLayout(top)
        self.stack = QStackedWidget()
        self.hint = QLabel(HINT)
        self.hint.setWordWrap(True)
        self.stack.addWidget(self.hint)
        layout.addWidget(self.stack, 1)

    def set_matrix(self, rows: list[dict[str, Any]], metrics: list[str]) -> None:
        keep = self.metric_combo.currentText()
        self.rows = rows
        self.metric_combo.blockSignals(True)
        self.metric_combo.clear()
        self.metric_combo.addItems(metrics)
        if keep in metrics:
            self.metric_combo.setCurrentText(keep)
        self.metric_combo.blockSignals(False)
        self.redraw()

    def shown(self) -> list[tuple[str, float, float, float]]:
        """(artifact, mean, low, high) of each bar of the chosen metric."""
        metric = self.metric_combo.currentText()
        return [(r["artifact"], s["mean"], s["ci_low"], s["ci_high"])
                for r in self.rows if (s := r["metrics"].get(metric))]

    def _make_plot(self) -> Any:
        if self.plot is None:
            from llmops_desktop.qt.charts import PlotWidget

            self.plot = PlotWidget(background=None)
            self.plot.setMenuEnabled(False)
            self.plot.showGrid(x=False, y=True, alpha=0.15)
            self.plot.getPlotItem().hideButtons()
            self.plot.getPlotItem().getAxis("left").enableAutoSIPrefix(False)
            self.plot.setMinimumHeight(160)
            self.stack.addWidget(self.plot)
        return self.plot

    def redraw(self) -> None:
        bars = self.shown()
        if not bars:
            self.stack.setCurrentWidget(self.hint)
            return
        import numpy as np
        import pyqtgraph as pg

        plot = self._make_plot()
        plot.clear()
        x = np.arange(len(bars), dtype=float)
        mean = np.array([b[1] for b in bars])
        low, high = mean - np.array([b[2] for b in bars]), np.array([b[3] for b in bars]) - mean
        self.bars = pg.BarGraphItem(x=x, height=mean, width=0.6, brush=BAR_COLOR)
        self.errors = pg.ErrorBarItem(x=x, y=mean, top=high, bottom=low, beam=0.2,
                                      pen=pg.mkPen("#333333", width=1.5))
        plot.addItem(self.bars)
        plot.addItem(self.errors)
        plot.getPlotItem().getAxis("bottom").setTicks(
            [[(float(i), b[0] if len(b[0]) <= 24 else b[0][:23] + "…")
              for i, b in enumerate(bars)]])
        plot.setLabel("left", self.metric_combo.currentText())
        top = max(max(b[3] for b in bars), 0.0)
        plot.setXRange(-0.6, len(bars) - 0.4, padding=0)
        plot.setYRange(min(0.0, min(b[2] for b in bars)), top * 1.08 or 1.0, padding=0)
        self.stack.setCurrentWidget(plot)
