"""The Fine-tune page's charts: loss, learning rate, tokens/s and memory of one job, read
from its run folder's ``metrics.jsonl`` (one line per step, written by the training loop).
A DPO job adds its reward margin (training and validation) and the chosen and rejected
replies' log-probabilities (TRL's metrics, :data:`llmops_desktop.finetune.dpo.METRICS`);
those two charts are shown only while the followed job has such points.

Reading the file (not the job's output) makes the charts the same for a job this window
started and for one found running when the window opens again. pyqtgraph is imported when
the charts are first shown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

CHARTS = (("loss", "Loss", ("loss", "val_loss")),
          ("reward", "Reward margin (chosen − rejected)", ("reward_margin", "val_reward_margin")),
          ("logps", "Log-probability of the replies", ("logps_chosen", "logps_rejected")),
          ("lr", "Learning rate", ("lr",)),
          ("speed", "Tokens/s", ("tokens_per_s",)),
          ("memory", "Memory (MB)", ("gpu_memory_mb", "ram_mb")))
PREFERENCE_CHARTS = ("reward", "logps")  # shown for a DPO job only
VALIDATION_SERIES = ("val_loss", "val_reward_margin")  # a point every few steps: dots
COLORS = {"loss": "#4f86e0", "val_loss": "#e0864f", "lr": "#2e9e5b", "tokens_per_s": "#8e6cc9",
          "gpu_memory_mb": "#c0392b", "ram_mb": "#7f8c8d", "reward_margin": "#4f86e0",
          "val_reward_margin": "#e0864f", "logps_chosen": "#2e9e5b", "logps_rejected": "#c0392b"}


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class TrainingCharts(QGroupBox):
    """Which job the charts follow, the charts, and what the job came to."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Progress", parent)
        self.points: list[dict[str, Any]] = []
        self.offset = 0
        self.curves: dict[str, Any] = {}
        self.plots: dict[str, Any] = {}
        self.preference = False  # the followed job is a DPO run (its charts are shown)
        w = QWidget()
        v = QVBoxLayout(w)
        head = QHBoxLayout()
        self.job_combo = QComboBox()
        self.job_combo.setToolTip("The fine-tune job the charts follow")
        self.eta_label = QLabel()
        head.addWidget(QLabel("Job"))
        head.addWidget(self.job_combo, 1)
        head.addWidget(self.eta_label)
        v.addLayout(head)
        self.chart_grid = QGridLayout()
        v.addLayout(self.chart_grid, 1)
        self.result_label = QLabel()
        self.result_label.setWordWrap(True)
        v.addWidget(self.result_label)
        QVBoxLayout(self).addWidget(w)

    def make_plots(self) -> None:
        """The charts, made when first shown (pyqtgraph stays out of the window's start)."""
        if self.plots:
            return
        import pyqtgraph as pg
        from llmops_desktop.qt.charts import PlotWidget  # zooms on Ctrl+wheel only

        for key, title, series in CHARTS:
            plot = PlotWidget(background="w", title=title)
            plot.addLegend(offset=(-5, 5))
            plot.setLabel("bottom", "step")
            for s in series:
                self.curves[s] = plot.plot([], [], pen=pg.mkPen(COLORS[s], width=2),
                                           symbol="o" if s in VALIDATION_SERIES else None,
                                           symbolSize=5, name=s.replace("_", " "))
            self.plots[key] = plot
        self._arrange()
        self.redraw()

    def _arrange(self) -> None:
        """Two charts a row, the DPO ones only for a DPO job."""
        shown = [key for key, _, _ in CHARTS if self.preference or key not in PREFERENCE_CHARTS]
        for key, plot in self.plots.items():
            self.chart_grid.removeWidget(plot)
            plot.setVisible(key in shown)
        for i, key in enumerate(shown):
            self.chart_grid.addWidget(self.plots[key], i // 2, i % 2)

    def reset(self) -> None:
        self.points, self.offset = [], 0
        for curve in self.curves.values():
            curve.setData([], [])
        self.result_label.clear()
        self.redraw()

    def read(self, path: Path) -> bool:
        """Read the lines the job added since the last look (a small read); True if any."""
        try:
            with open(path, encoding="utf-8") as fh:
                if path.stat().st_size < self.offset:  # rewritten by a resume
                    self.offset, self.points = 0, []
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return False
        complete, _, _ = chunk.rpartition("\n")
        if not complete:
            return False
        self.offset += len(complete.encode("utf-8")) + 1
        for line in complete.splitlines():
            try:
                self.points.append(json.loads(line))
            except ValueError:
                continue
        self.redraw()
        return True

    def redraw(self) -> None:
        preference = any("reward_margin" in p for p in self.points)
        if preference != self.preference:
            self.preference = preference
            self._arrange()
        for series, curve in self.curves.items():
            xs = [p["step"] for p in self.points if p.get(series) is not None]
            ys = [p[series] for p in self.points if p.get(series) is not None]
            curve.setData(xs, ys)
        last = self.points[-1] if self.points else {}
        if "eta_s" in last:
            self.eta_label.setText(f"step {last['step']}, time left {eta_text(last['eta_s'])}")

    def loss_points(self) -> list[tuple[int, float]]:
        return self.series("loss")

    def series(self, name: str) -> list[tuple[int, float]]:
        """(step, value) of one metric of the followed job (``reward_margin``, ...)."""
        return [(p["step"], p[name]) for p in self.points if p.get(name) is not None]
