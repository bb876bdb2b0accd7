"""An artifact's variants side by side: a table (perplexity, and KL divergence and top-1
agreement against the parent) and a small size-vs-perplexity chart.

Used by the details pane's Variants tab. It reads ``variant_table`` only while it is
shown (a hidden tab just remembers that it is stale), and pyqtgraph is imported the
first time there is something to plot, so the window's cold start never pays for it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QPalette, QResizeEvent, QShowEvent
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QSplitter,
    QStackedWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import NotFoundError
from llmops_desktop.qt.formatting import human_size
from llmops_desktop.quantize.variants import variant_table

COLUMNS: list[tuple[str, str]] = [
    ("Type", "Quantization type, or the weights' dtype"),
    ("Size", "Size on disk"),
    ("Bits/weight", "Weight bytes × 8 ÷ parameters (embeddings and metadata included)"),
    ("Perplexity", "Perplexity on the held-out text, through llama.cpp (lower is better)"),
    ("Change", "Perplexity change against the model these details are for "
               "(only where both were measured on the same text)"),
    ("KL div.", "Mean KL divergence of the variant's next-token distribution from its "
                "parent's, per token over the whole vocabulary, on the same held-out text and "
                "token ids (as llama-perplexity --kl-divergence; lower is closer, 0 is identical)"),
    ("Top-1", "Share of positions where the variant's most likely next token is the "
              "parent's (higher is closer, 100 % is identical)"),
    ("Artifact", "The variant in the catalog (double-click to show it)"),
]
NUMERIC = {1, 2, 3, 4, 5, 6}
COL_KL, COL_TOP1, COL_REF = 5, 6, 7
ACCENT = QColor("#4f86e0")
POINT = QColor("#8a99b3")
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
HINT = ("No perplexity measured yet. Quantize this model (right-click it, or Ctrl+Shift+Q) to "
        "make variants; each is measured on the same held-out text and compared here.")


def format_perplexity(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.2f}" if value >= 100 else f"{value:.3f}"


def format_change(change: float | None, *, is_base: bool = False) -> str:
    if is_base:
        return "base"
    if change is None:
        return "—"
    percent = change * 100
    return "0.00 %" if abs(percent) < 0.005 else f"{percent:+.2f} %"


def format_kl(value: float | None) -> str:
    if value is None:
        return "—"
    return "0" if value == 0 else (f"{value:.4f}" if value >= 0.001 else f"{value:.2e}")


def format_agreement(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.2f} %"


def kl_tooltip(row: dict[str, Any]) -> str:
    """The KL divergence's interval and spread, and what it was measured against."""
    if row.get("kl_divergence") is None:
        return "Not measured (made before this was measured, or not a GGUF variant)"
    lo, hi = row.get("kl_ci95") or (None, None)
    lines = [f"Mean KL divergence {row['kl_divergence']:.6g}"
             + (f" (95 % interval {lo:.6g}–{hi:.6g})" if lo is not None else "")]
    if row.get("kl_median") is not None:
        lines.append(f"Median {row['kl_median']:.6g}, 99th percentile {row['kl_p99']:.6g}")
    if row.get("kl_reference"):
        lines.append(f"Against {row['kl_reference']} over {row.get('kl_tokens') or '?'} tokens")
    return "\n".join(lines)


def top1_tooltip(row: dict[str, Any]) -> str:
    if row.get("top1_agreement") is None:
        return "Not measured"
    lo, hi = row.get("top1_ci95") or (None, None)
    return (f"Same most likely token at {row['top1_agreement'] * 100:.3f} % of positions"
            + (f" (95 % interval {lo * 100:.2f}–{hi * 100:.2f} %)" if lo is not None else "")
            + (f" against {row['kl_reference']}" if row.get("kl_reference") else ""))


def variant_item(row: dict[str, Any], *, base: bool) -> QTreeWidgetItem:
    """One row of a variants table (also used by the Quantize dialog's results)."""
    bits = row.get("bits_per_weight")
    item = QTreeWidgetItem([
        str(row["type"]), human_size(row["size_bytes"]), f"{bits:.2f}" if bits else "—",
        format_perplexity(row.get("perplexity")),
        format_change(row.get("perplexity_change"), is_base=base),
        format_kl(row.get("kl_divergence")), format_agreement(row.get("top1_agreement")),
        row["ref"]])
    item.setData(0, Qt.ItemDataRole.UserRole, row["artifact_id"])
    item.setToolTip(0, f"#{row['artifact_id']} {row['ref']} ({row['kind']})")
    item.setToolTip(COL_REF, f"artifact #{row['artifact_id']}, {row['kind']}")
    item.setToolTip(1, f"{row['size_bytes']:,} bytes")
    if row.get("perplexity") is not None:
        item.setToolTip(3, f"{row['perplexity']:.6f}")
    item.setToolTip(COL_KL, kl_tooltip(row))
    item.setToolTip(COL_TOP1, top1_tooltip(row))
    for column in NUMERIC:
        item.setTextAlignment(column, _RIGHT)
    if base:
        font = item.font(0)
        font.setBold(True)
        for column in range(len(COLUMNS)):
            item.setFont(column, font)
    return item


def variants_tree() -> QTreeWidget:
    tree = QTreeWidget()
    tree.setHeaderLabels([name for name, _ in COLUMNS])
    for column, (_, tip) in enumerate(COLUMNS):
        tree.headerItem().setToolTip(column, tip)
        if column in NUMERIC:
            tree.headerItem().setTextAlignment(column, _RIGHT)
    tree.setRootIsDecorated(False)
    tree.setAlternatingRowColors(True)
    tree.setUniformRowHeights(True)
    tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    tree.header().setStretchLastSection(True)
    tree.header().setSectionResizeMode(COL_REF, QHeaderView.ResizeMode.Stretch)
    return tree


class VariantsView(QWidget):
    """The variants of one artifact (itself and everything derived from it)."""

    sig_artifact_activated = Signal(int)
    """The user double-clicked a variant, or clicked its point on the chart (artifact id)."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.artifact_id: int | None = None
        self.rows: list[dict[str, Any]] = []
        self.plot: Any = None  # a pyqtgraph PlotWidget, made when first needed
        self._stale = False
        self._splitter_moved = False
        self.table = variants_tree()
        self.table.itemDoubleClicked.connect(self._on_item_double_clicked)
        self.hint = QLabel(HINT)
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setEnabled(False)  # drawn in the palette's muted text colour
        self.chart_stack = QStackedWidget()
        self.chart_stack.addWidget(self.hint)
        self.chart_stack.setMinimumHeight(200)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.chart_stack)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setChildrenCollapsible(False)
        splitter.splitterMoved.connect(lambda *_: setattr(self, "_splitter_moved", True))
        self.splitter = splitter
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    # ---- public ---------------------------------------------------------------------------

    def set_artifact(self, artifact_id: int | None) -> None:
        """Show this artifact's variants (read now if the tab is shown, else when it is)."""
        self.artifact_id = artifact_id
        self._stale = True
        if self.isVisible():
            self.refresh()

    def refresh(self) -> None:
        """Re-read the variants from the catalog and redraw."""
        self._stale = False
        try:
            self.rows = (variant_table(self.catalog, self.artifact_id)
                         if self.artifact_id is not None else [])
        except NotFoundError:
            self.rows = []
        self.table.clear()
        for row in self.rows:
            mine = row["artifact_id"] == self.artifact_id
            item = variant_item(row, base=mine and row.get("parent_id") is None)
            if mine:  # this model, in bold; only a root (no parent) calls itself "base"
                font = item.font(0)
                font.setBold(True)
                for column in range(len(COLUMNS)):
                    item.setFont(column, font)
            self.table.addTopLevelItem(item)
        self._draw_chart()
        self._fit_table()

    def _fit_table(self) -> None:
        """Give the table the height of its rows (up to half the tab), the chart the rest,
        unless the user has placed the splitter."""
        total = self.splitter.height()
        if self._splitter_moved or total < 300:
            return
        rows = max(3, self.table.topLevelItemCount())
        row_height = self.table.sizeHintForRow(0) if self.table.topLevelItemCount() else 20
        scrollbar = self.table.horizontalScrollBar().sizeHint().height()
        wanted = (self.table.header().height() + rows * max(row_height, 16)
                  + 2 * self.table.frameWidth() + scrollbar)
        wanted = min(wanted, total // 2)
        self.splitter.setSizes([wanted, total - wanted - self.splitter.handleWidth()])

    def table_texts(self) -> list[list[str]]:
        """Every cell of the table, row by row (for tests and the tour)."""
        out = []
        for i in range(self.table.topLevelItemCount()):
            item = self.table.topLevelItem(i)
            out.append([item.text(c) for c in range(len(COLUMNS))])
        return out

    # ---- chart ----------------------------------------------------------------------------

    def _ensure_plot(self) -> Any:
        if self.plot is not None:
            return self.plot
        import pyqtgraph as pg  # lazily: only once a Variants tab has something to plot
        from llmops_desktop.qt.charts import PlotWidget  # zooms on Ctrl+wheel only

        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        plot = PlotWidget(background=palette.color(QPalette.ColorRole.Base))
        plot.setMenuEnabled(False)
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.showGrid(x=True, y=True, alpha=0.15)
        for side in ("left", "bottom"):
            axis = plot.getAxis(side)
            axis.setTextPen(text)
            axis.setPen(pg.mkPen(palette.color(QPalette.ColorRole.Mid)))
        plot.setLabel("left", "Perplexity", color=text.name())
        plot.getViewBox().setDefaultPadding(0.12)
        self.chart_stack.addWidget(plot)
        self.plot = plot
        return plot

    def _draw_chart(self) -> None:
        points = [r for r in self.rows if r.get("perplexity") is not None]
        if not points:
            self.chart_stack.setCurrentWidget(self.hint)
            return
        import pyqtgraph as pg

        plot = self._ensure_plot()
        plot.clear()
        text = self.palette().color(QPalette.ColorRole.Text)
        points.sort(key=lambda r: r["size_bytes"])
        # Sizes in the unit the tables use (human_size: KB, MB, GB, powers of 1000), not
        # pyqtgraph's own SI prefixes ("kB"), so one spelling shows everywhere.
        biggest = max(float(r["size_bytes"]) for r in points)
        scale, unit = next(((f, u) for f, u in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"),
                                                 (1e3, "KB")) if biggest >= f), (1.0, "B"))
        plot.setLabel("bottom", f"Size on disk ({unit})",
                      color=self.palette().color(QPalette.ColorRole.Text).name())
        xs = [float(r["size_bytes"]) / scale for r in points]
        ys = [float(r["perplexity"]) for r in points]
        plot.plot(xs, ys, pen=pg.mkPen(POINT, width=1.2, style=Qt.PenStyle.DashLine))
        spots = []
        for r, x, y in zip(points, xs, ys):
            mine = r["artifact_id"] == self.artifact_id
            color = ACCENT if mine else POINT
            spots.append({"pos": (x, y), "data": r["artifact_id"], "size": 12 if mine else 9,
                          "brush": pg.mkBrush(color), "pen": pg.mkPen(color.darker(130))})
            label = pg.TextItem(str(r["type"]), color=text if mine else text.lighter(140),
                                anchor=(0.5, 1.25))
            label.setPos(x, y)
            plot.addItem(label)
        scatter = pg.ScatterPlotItem(spots=spots, hoverable=True, tip=self._tip)
        scatter.sigClicked.connect(self._on_points_clicked)
        plot.addItem(scatter)
        # Room for the labels above the points and beside the outermost ones.
        x_span = (max(xs) - min(xs)) or max(xs) * 0.2 or 1.0
        y_span = (max(ys) - min(ys)) or max(ys) * 0.01 or 1.0
        plot.setXRange(min(xs) - 0.1 * x_span, max(xs) + 0.1 * x_span, padding=0)
        plot.setYRange(min(ys) - 0.12 * y_span, max(ys) + 0.3 * y_span, padding=0)
        self.chart_stack.setCurrentWidget(plot)

    def _tip(self, x: float, y: float, data: object) -> str:
        row = next((r for r in self.rows if r["artifact_id"] == data), None)
        if row is None:
            return ""
        kl = (f"\nKL divergence {format_kl(row['kl_divergence'])}, top-1 agreement "
              f"{format_agreement(row.get('top1_agreement'))}"
              if row.get("kl_divergence") is not None else "")
        return (f"{row['ref']} ({row['type']})\n{human_size(row['size_bytes'])}, perplexity "
                f"{format_perplexity(row['perplexity'])}, "
                f"{format_change(row['perplexity_change'], is_base=self._is_base(row))}{kl}")

    def _is_base(self, row: dict[str, Any]) -> bool:
        return row["artifact_id"] == self.artifact_id and row.get("parent_id") is None

    # ---- slots ----------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self.refresh()
        else:
            self._fit_table()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_table()

    def _on_item_double_clicked(self, item: QTreeWidgetItem, column: int) -> None:
        artifact_id = item.data(0, Qt.ItemDataRole.UserRole)
        if isinstance(artifact_id, int) and artifact_id != self.artifact_id:
            self.sig_artifact_activated.emit(artifact_id)

    def _on_points_clicked(self, item: object, points: list[Any], *_: object) -> None:
        if points and isinstance(points[0].data(), int) and points[0].data() != self.artifact_id:
            self.sig_artifact_activated.emit(points[0].data())
