"""The arena's ratings: one row per artifact, its Bradley-Terry rating on the Elo scale, the
95 % bootstrap interval, games, wins, losses and ties (:mod:`llmops_desktop.evaluate.arena`).

:meth:`ArenaRatingsView.refresh` reads the picks from the catalog on the GUI thread (one
query) and fits the ratings and their bootstrap on a worker thread through the pump, so a
long history never freezes the window. :class:`RatingsModel` is the thin table model; a
``QSortFilterProxyModel`` sorts it by the numbers, not the text.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QTableView, QVBoxLayout, QWidget

from llmops_desktop.evaluate.arena import Rating, battles, rate_battles
from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.pump import create_worker

_Index = QModelIndex | QPersistentModelIndex
_RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
COLUMNS = ("Artifact", "Rating", "95 % interval", "Games", "Wins", "Losses", "Ties")
TOOLTIPS = ("The artifact (or the model name of a model outside the catalog)",
            "Bradley-Terry rating on the Elo scale: the mean is 1000, and 400 points more "
            "means 10 to 1 odds of being preferred",
            "Where the rating lies with 95 % confidence (a bootstrap over the picks); two "
            "intervals that do not overlap mean the difference is real",
            "Picks this artifact took part in", "Picks it won", "Picks it lost",
            "Picks that were ties")


def cells(r: Rating) -> tuple[Any, ...]:
    """A rating's row: what each column shows and sorts by."""
    return (r.player, round(r.rating), f"[{r.ci_low:.0f}, {r.ci_high:.0f}]", r.games, r.wins,
            r.losses, r.ties)


class RatingsModel(QAbstractTableModel):
    """Rows: players, best first; columns: :data:`COLUMNS`."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.ratings: list[Rating] = []

    def set_ratings(self, ratings: list[Rating]) -> None:
        self.beginResetModel()
        self.ratings = list(ratings)
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt's API
        return 0 if parent.isValid() else len(self.ratings)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 - Qt's API
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        r, column = self.ratings[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return str(cells(r)[column])
        if role == Qt.ItemDataRole.UserRole:  # what the proxy sorts by
            return r.ci_low if column == 2 else cells(r)[column]
        if role == Qt.ItemDataRole.TextAlignmentRole and column > 0:
            return int(_RIGHT)
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"{r.player}: {r.rating:.1f}, 95 % interval [{r.ci_low:.1f}, "
                    f"{r.ci_high:.1f}]; {r.wins} won, {r.losses} lost, {r.ties} tied")
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802 - Qt's API
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or section >= len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return TOOLTIPS[section]
        return None

    def texts(self) -> list[list[str]]:
        """Every cell as shown (tests and the tour read it)."""
        return [[str(c) for c in cells(r)] for r in self.ratings]


class ArenaRatingsView(QWidget):
    """The ratings table with a line saying how many picks it rests on."""

    sig_refreshed = Signal(int)
    """New ratings are shown (how many picks they rest on)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.model = RatingsModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(Qt.ItemDataRole.UserRole)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(1, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(
            0, self.table.horizontalHeader().ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.refresh_button = QPushButton(icon("refresh"), "Refresh")
        self.refresh_button.setToolTip("Read the picks again and refit the ratings")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.refresh_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        self._pending = 0  # refreshes asked for; only the last one's result is shown

    def refresh(self) -> None:
        """Read the picks and fit the ratings off the GUI thread (``sig_refreshed``)."""
        picks = battles(self.ctx.catalog)
        self._pending += 1
        ticket = self._pending
        self.refresh_button.setEnabled(False)
        self.summary.setText(f"Fitting ratings to {len(picks)} picks…")
        create_worker(rate_battles, picks, returned=lambda r: self._on_fitted(ticket, r, picks),
                      errored=lambda exc: self._on_failed(ticket, exc), receiver=self,
                      name="llmops-arena-ratings")

    def on_shown(self) -> None:
        self.refresh()

    def _on_fitted(self, ticket: int, ratings: list[Rating], picks: list[Any]) -> None:
        if ticket != self._pending:
            return
        self.model.set_ratings(ratings)
        self.refresh_button.setEnabled(True)
        if not picks:
            self.summary.setText("No arena picks yet. In the Playground choose 'Side by side "
                                 "(blind)', ask two deployments and pick the better reply.")
        else:
            ties = sum(1 for b in picks if b.winner == "tie")
            self.summary.setText(
                f"Bradley-Terry ratings from {len(picks)} picks ({ties} ties, counted half "
                "each way) on the Elo scale; 95 % intervals from a bootstrap over the picks.")
        self.sig_refreshed.emit(len(picks))

    def _on_failed(self, ticket: int, exc: BaseException) -> None:
        if ticket != self._pending:
            return
        self.refresh_button.setEnabled(True)
        self.summary.setText(f"Could not fit the ratings: {exc}")
        self.ctx.events.sig_error.emit(f"Arena ratings: {exc}")
