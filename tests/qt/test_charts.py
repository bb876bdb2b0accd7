"""Live charts: scales a user can read (counts and rates from 0, an empty chart's time
axis on the window it shows, small charts with scales), and redraws that cost one paint,
fewer while the window is not the active one."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QEvent, QObject  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

from llmops_desktop.monitor.series import SeriesStore  # noqa: E402
from llmops_desktop.qt.charts import (  # noqa: E402
    LiveChart,
    MiniChart,
    SeriesSpec,
    nice_ceiling,
    value_range,
)


def test_value_range_starts_at_zero_and_ends_on_a_round_ceiling():
    assert value_range([]) == (0.0, 1.0)
    assert value_range([np.zeros(5)]) == (0.0, 1.0)
    assert value_range([np.array([np.nan, np.nan])]) == (0.0, 1.0)
    assert value_range([np.array([0.0, 0.3]), np.array([0.1])]) == (0.0, 0.5)
    assert value_range([np.array([3.0, 97.0])]) == (0.0, 200.0)
    assert value_range([np.array([-3.0, 4.0])]) == (-5.0, 5.0)  # data below 0: shown
    assert [nice_ceiling(x) for x in (0.9, 1.0, 1.2, 2.2, 4.0, 7.0, 42.0)] == \
        [1.0, 1.0, 2.0, 2.5, 5.0, 10.0, 50.0]


def _store(values: dict[str, list[float]]) -> SeriesStore:
    store = SeriesStore(1000)
    now = time.time()
    n = max(len(v) for v in values.values())
    for i in range(n):
        store.add(now - n + i + 1, {k: v[i] for k, v in values.items() if i < len(v)})
    return store


def _show(qtbot, chart: QWidget) -> QWidget:
    holder = QWidget()
    qtbot.addWidget(holder)
    chart.setParent(holder)
    holder.resize(640, 260)
    holder.show()
    holder.activateWindow()
    qtbot.waitExposed(holder)
    return holder


def test_a_rate_of_zero_has_no_negative_axis_and_an_empty_chart_shows_its_window(qtbot):
    store = _store({"dep.1.req_rate": [0.0] * 20})
    chart = LiveChart("Requests", "/s", [SeriesSpec("dep.1.req_rate", "requests"),
                                         SeriesSpec("dep.1.errors", "errors")], store)
    holder = _show(qtbot, chart)  # noqa: F841 - kept alive
    qtbot.waitUntil(lambda: chart.redraws >= 1, timeout=5000)
    (x0, x1), (y0, y1) = chart.plot.viewRange()
    assert y0 == 0.0 and y1 > 0
    assert abs(x1 - time.time()) < 30 and abs((x1 - x0) - 60) < 1
    empty = LiveChart("Queue", "requests", [SeriesSpec("dep.9.queue", "waiting")], None)
    qtbot.addWidget(empty)  # never shown, never drawn: still on the window's time span
    (x0, x1), (y0, _) = empty.plot.viewRange()
    assert abs(x1 - time.time()) < 30 and y0 == 0.0


def test_small_charts_have_scales(qtbot):
    store = _store({"dep.1.tok_s": [12.0, 14.0, 13.0]})
    mini = MiniChart([SeriesSpec("dep.1.tok_s", "tokens/s")], store)
    holder = _show(qtbot, mini)  # noqa: F841 - kept alive
    qtbot.waitUntil(lambda: mini.redraws >= 1, timeout=5000)
    item = mini.plot.getPlotItem()
    assert item.getAxis("left").isVisible() and item.getAxis("bottom").isVisible()
    assert mini.plot.viewRange()[1] == [0.0, 20.0 * 1.03]


class _Paints(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def test_a_redraw_is_one_paint_and_an_inactive_window_redraws_slowly(qtbot):
    store = _store({"sys.cpu": [10.0] * 30})
    chart = LiveChart("CPU", "%", [SeriesSpec("sys.cpu", "all cores")], store,
                      y_range=(0, 100))
    holder = _show(qtbot, chart)
    qtbot.waitUntil(lambda: chart.redraws >= 1, timeout=5000)
    qtbot.wait(300)
    paints = _Paints()
    chart.plot.viewport().installEventFilter(paints)
    before = chart.redraws
    for i in range(4):
        store.add(time.time(), {"sys.cpu": 20.0 + i})
        chart.refresh()
        qtbot.wait(50)
    assert chart.redraws - before == 4 and paints.count == 4
    if holder.isActiveWindow():  # a second window takes the focus
        other = QWidget()
        qtbot.addWidget(other)
        other.show()
        other.activateWindow()
        qtbot.waitUntil(lambda: not holder.isActiveWindow(), timeout=5000)
        before = chart.redraws
        for i in range(4):
            store.add(time.time(), {"sys.cpu": 30.0 + i})
            chart.refresh()
        assert chart.redraws - before <= 1


def _wheel(widget: QWidget, ctrl: bool) -> None:
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    pos = QPointF(widget.width() / 2, widget.height() / 2)
    glob = QPointF(widget.mapToGlobal(QPoint(int(pos.x()), int(pos.y()))))
    mods = Qt.KeyboardModifier.ControlModifier if ctrl else Qt.KeyboardModifier.NoModifier
    event = QWheelEvent(pos, glob, QPoint(0, 0), QPoint(0, -120), Qt.MouseButton.NoButton,
                        mods, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_the_wheel_over_a_chart_scrolls_the_page_and_ctrl_wheel_zooms(qtbot):
    """A page of charts in a scroll area: the plain wheel over a chart scrolls the page and
    leaves the chart's time axis alone; Ctrl+wheel zooms the chart."""
    from PySide6.QtWidgets import QScrollArea, QVBoxLayout

    store = _store({"cpu": [float(i % 7) for i in range(60)]})
    area = QScrollArea()
    qtbot.addWidget(area)
    page = QWidget()
    layout = QVBoxLayout(page)
    charts = [LiveChart(f"CPU {i}", "%", [SeriesSpec("cpu", "cpu")], store) for i in range(4)]
    for chart in charts:
        chart.setMinimumHeight(300)
        layout.addWidget(chart)
    area.setWidget(page)
    area.setWidgetResizable(True)
    area.resize(500, 400)
    area.show()
    qtbot.waitExposed(area)
    chart = charts[0]
    view = chart.plot.getPlotItem().getViewBox()
    x_before = tuple(view.viewRange()[0])
    bar = area.verticalScrollBar()
    assert bar.value() == 0 and bar.maximum() > 0
    _wheel(chart.plot.viewport(), ctrl=False)
    qtbot.waitUntil(lambda: bar.value() > 0, timeout=5000)
    assert tuple(view.viewRange()[0]) == x_before
    _wheel(chart.plot.viewport(), ctrl=True)
    qtbot.waitUntil(lambda: tuple(view.viewRange()[0]) != x_before, timeout=5000)
