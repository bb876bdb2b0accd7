"""The Monitor page's panels: one per GPU (or one saying why there is none), the system,
and one per deployment. Each is a group of :class:`~llmops_desktop.qt.charts.LiveChart`
over the sampler's rings, and a line of current figures updated from each sample.

Import lazily (it imports pyqtgraph through the charts).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.qt.charts import LiveChart, SeriesSpec
from llmops_desktop.qt.formatting import human_size

MB = 1e-6
GB = 1e-9
MAX_CORE_LINES = 32


def _num(value: float | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value) + unit


class Panel(QGroupBox):
    """A titled group of charts in a grid, with a line of current figures above."""

    columns = 2

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.charts: list[LiveChart] = []
        self.info = QLabel()
        self.info.setWordWrap(True)
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(16)
        layout = QVBoxLayout(self)
        layout.addWidget(self.info)
        layout.addLayout(self.grid)

    def add_chart(self, chart: LiveChart) -> LiveChart:
        n = len(self.charts)
        self.grid.addWidget(chart, n // self.columns, n % self.columns)
        self.charts.append(chart)
        return chart

    def each_chart(self) -> Iterator[LiveChart]:
        yield from self.charts


class GpuPanel(Panel):
    def __init__(self, index: int, name: str, store: Any, window_s: float) -> None:
        super().__init__(f"GPU {index}: {name}")
        self.index = index
        p = f"gpu.{index}."
        self.add_chart(LiveChart("Utilisation and memory", "%", [
            SeriesSpec(p + "util", "utilisation"), SeriesSpec(p + "mem_pct", "memory")],
            store, window_s=window_s, y_range=(0, 100)))
        self.add_chart(LiveChart("Temperature", "°C", [SeriesSpec(p + "temp", "temperature",
                                                                  "#c0392b")],
                                 store, window_s=window_s))
        self.add_chart(LiveChart("Power", "W", [
            SeriesSpec(p + "power", "draw", "#b58900"),
            SeriesSpec(p + "power_limit", "limit", "#7f8c8d", dashed=True, width=1.0)],
            store, window_s=window_s))
        self.add_chart(LiveChart("SM clock", "MHz", [SeriesSpec(p + "sm_clock", "SM clock",
                                                                "#8e6cc9")],
                                 store, window_s=window_s))

    def update_from(self, g: Any) -> None:
        if g.error:
            self.info.setText(g.error)
            return
        ours = [f"{p.owner}: {human_size(p.used_bytes) if p.used_bytes is not None else '?'}"
                for p in g.processes or () if p.owner]
        others = [p for p in g.processes or () if not p.owner]
        procs = ("; our processes: " + ", ".join(ours)) if ours else ""
        if others:
            procs += f"; {len(others)} other process(es)"
        self.info.setText(
            f"{_num(g.util_pct, unit='%')} busy · memory {human_size(g.mem_used)} of "
            f"{human_size(g.mem_total)} · {_num(g.temp_c, unit=' °C')} · "
            f"{_num(g.power_w)} of {_num(g.power_limit_w)} W · "
            f"SM {_num(g.sm_clock_mhz, unit=' MHz')}{procs}")


class NoGpuPanel(QGroupBox):
    """Says that there is no GPU to monitor, and why."""

    def __init__(self, diagnosis: Any) -> None:
        super().__init__("GPUs")
        self.setObjectName("noGpuPanel")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        QVBoxLayout(self).addWidget(self.label)
        self.update_from(diagnosis)

    def update_from(self, diagnosis: Any) -> None:
        self.reason = diagnosis.reason if diagnosis is not None else "starting"
        if diagnosis is None:
            self.label.setText("Looking for NVIDIA GPUs…")
        else:
            self.label.setText(f"<b>No NVIDIA GPU can be monitored</b> ({diagnosis.reason}). "
                               f"{diagnosis.message}<br>Everything else on this page works "
                               "without one; 'llmops doctor' says the same in a terminal.")

    def text(self) -> str:
        return self.label.text()


class SystemPanel(Panel):
    def __init__(self, store: Any, cores: int, window_s: float) -> None:
        super().__init__("System")
        core_specs = [SeriesSpec(f"sys.core.{i}", f"core {i}", "#b8c2d1")
                      for i in range(cores)] if cores <= MAX_CORE_LINES else []
        self.add_chart(LiveChart("CPU", "%", [*core_specs, SeriesSpec("sys.cpu", "all cores",
                                                                      "#4f86e0", width=1.6)],
                                 store, window_s=window_s, y_range=(0, 100)))
        self.add_chart(LiveChart("Memory", "%", [SeriesSpec("sys.ram_pct", "RAM"),
                                                 SeriesSpec("sys.swap_pct", "swap")],
                                 store, window_s=window_s, y_range=(0, 100)))
        self.add_chart(LiveChart("Disk", "MB/s", [
            SeriesSpec("sys.disk_read", "read", scale=MB),
            SeriesSpec("sys.disk_write", "write", scale=MB)], store, window_s=window_s))
        self.add_chart(LiveChart("Network", "MB/s", [
            SeriesSpec("sys.net_rx", "in", scale=MB),
            SeriesSpec("sys.net_tx", "out", scale=MB)], store, window_s=window_s))
        self.processes = QTreeWidget()
        self.processes.setRootIsDecorated(False)
        self.processes.setHeaderLabels(["Our jobs and servers", "PID", "CPU", "Memory (RSS)",
                                        "Threads"])
        self.processes.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.processes.setMaximumHeight(110)
        self.processes.setToolTip("CPU is of one core and includes child processes")
        self.layout().addWidget(self.processes)

    def update_from(self, sample: Any) -> None:
        s = sample.system
        self.info.setText(
            f"CPU {s.cpu_pct:.0f}% over {len(s.per_core)} cores · RAM {human_size(s.ram_used)} "
            f"of {human_size(s.ram_total)} ({s.ram_pct:.0f}%) · swap {s.swap_pct:.0f}% · "
            f"disk {_num(s.disk_read_bps * MB, '{:.1f}')} / "
            f"{_num(s.disk_write_bps * MB, '{:.1f}')} MB/s · network "
            f"{_num(s.net_rx_bps * MB, '{:.2f}')} / {_num(s.net_tx_bps * MB, '{:.2f}')} MB/s")
        rows = [(p.label, str(p.pid), f"{p.cpu_pct:.0f}%", human_size(p.rss), str(p.threads))
                for p in sample.processes] or [("(none running)", "", "", "", "")]
        current = [tuple(self.processes.topLevelItem(i).text(c) for c in range(5))
                   for i in range(self.processes.topLevelItemCount())]
        if rows != current:
            self.processes.clear()
            for row in rows:
                QTreeWidgetItem(self.processes, list(row))


class DeploymentPanel(Panel):
    """A deployment's requests, TTFT, latency, tokens/s and queue."""

    columns = 3

    sig_key_requested = Signal(int)
    """The user wants to enter this deployment's API key (its id)."""

    def __init__(self, dep_id: int, name: str, store: Any, window_s: float) -> None:
        super().__init__(f"Deployment: {name}")
        self.dep_id = dep_id
        self.name = name
        self.status = ""
        p = f"dep.{dep_id}."
        self.add_chart(LiveChart("Requests", "/s", [
            SeriesSpec(p + "req_rate", "requests"),
            SeriesSpec(p + "errors", "errors", "#c0392b")], store, window_s=window_s))
        self.add_chart(LiveChart("Time to first token", "ms", [
            SeriesSpec(p + "ttft_p50", "p50"), SeriesSpec(p + "ttft_p95", "p95", "#e0864f")],
            store, window_s=window_s))
        self.add_chart(LiveChart("Latency", "ms", [
            SeriesSpec(p + "lat_p50", "p50"), SeriesSpec(p + "lat_p95", "p95", "#e0864f")],
            store, window_s=window_s))
        self.add_chart(LiveChart("Tokens/s", "tok/s", [SeriesSpec(p + "tok_s", "generated",
                                                                  "#2e9e5b")],
                                 store, window_s=window_s))
        self.add_chart(LiveChart("Queue", "requests", [
            SeriesSpec(p + "queue", "waiting"), SeriesSpec(p + "running", "generating",
                                                           "#2e9e5b")],
            store, window_s=window_s))
        self.add_chart(LiveChart("Server process", "%", [
            SeriesSpec(p + "proc_cpu", "CPU (of one core)", "#8e6cc9")],
            store, window_s=window_s))
        self.key_button = QPushButton("Enter API key…")
        self.key_button.setToolTip("This server was started with an API key, and its /metrics "
                                   "need it. The key is kept in memory only.")
        self.key_button.clicked.connect(lambda: self.sig_key_requested.emit(self.dep_id))
        self.key_button.hide()
        row = QHBoxLayout()
        row.addWidget(self.key_button)
        row.addStretch(1)
        self.layout().insertLayout(1, row)

    def update_from(self, d: Any, proc: Any = None) -> None:
        self.status = d.status
        self.key_button.setVisible(d.status == "needs-key")
        if d.status != "ok":
            self.info.setText(f"{d.url} · <b>{d.status}</b>: {d.message}")
            return
        extra = f" · server CPU {proc.cpu_pct:.0f}%, RSS {human_size(proc.rss)}" if proc else ""
        self.info.setText(
            f"{d.url} · {_num(d.req_rate, '{:.2f}')} req/s · TTFT p50/p95 "
            f"{_num(d.ttft_p50_ms)}/{_num(d.ttft_p95_ms)} ms · latency p50/p95 "
            f"{_num(d.lat_p50_ms)}/{_num(d.lat_p95_ms)} ms · {_num(d.tok_s, '{:.1f}')} tok/s · "
            f"errors {_num(d.error_rate_pct, unit='%')} · queue {_num(d.queue)}{extra} "
            f"(last {_num(d.window_s)} s)")
