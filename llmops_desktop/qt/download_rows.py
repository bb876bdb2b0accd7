"""The Download page's list of downloads: one row per download (a core
:class:`~llmops_desktop.acquire.session.DownloadEntry`), with total and per-file progress,
speed and time left (smoothed over the last seconds), and its buttons."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.acquire.session import DownloadEntry, DownloadSession
from llmops_desktop.qt.context import icon
from llmops_desktop.qt.formatting import human_size

ERROR_COLOR = "#d9534f"
REFRESH_MS = 250


def human_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def shareable_url(url: str) -> str:
    """The mirror's URL as colleagues should type it (a wildcard bind becomes this host)."""
    from PySide6.QtNetwork import QHostInfo

    for wildcard in ("//0.0.0.0:", "//[::]:"):
        if wildcard in url:
            return url.replace(wildcard, f"//{QHostInfo.localHostName()}:")
    return url


class DownloadRow(QFrame):
    """One download: total and per-file progress, speed, time left, and its buttons."""

    sig_action = Signal(str, str)
    """The user clicked a button: entry key and 'pause', 'resume', 'cancel', 'show' or 'clear'."""

    def __init__(self, entry: DownloadEntry, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.entry = entry
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.title = QLabel()
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.summary = QLabel()
        self.total_bar = progress_bar()
        self.total_label = QLabel()
        self.file_label = QLabel()
        self.file_bar = progress_bar()
        self.file_bar.setMaximumHeight(8)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons: dict[str, QToolButton] = {}
        self.file_label.setMinimumWidth(40)  # a long file name is cut, the row not widened
        self.file_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        top = QHBoxLayout()
        top.addWidget(self.title)
        top.addSpacing(6)
        top.addWidget(self.summary, 1)
        for action, icon_name, text, tip in (
                ("pause", "pause", "Pause", "Stop now and keep what arrived; Resume continues"),
                ("resume", "resume", "Resume", "Continue from the bytes already on disk"),
                ("show", "models", "Show", "Show the new artifact on the Models page"),
                ("cancel", "cancel", "Cancel", "Stop and delete what was downloaded"),
                ("clear", "close", "", "Remove this line")):
            button = QToolButton()
            button.setIcon(icon(icon_name))
            button.setText(text)
            button.setToolTip(tip)
            button.setAutoRaise(True)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon if text
                                      else Qt.ToolButtonStyle.ToolButtonIconOnly)
            button.clicked.connect(lambda _=False, a=action: self._on_clicked(a))
            self.buttons[action] = button
            top.addWidget(button)
        column = QVBoxLayout(self)
        column.setContentsMargins(10, 6, 8, 8)
        column.setSpacing(3)
        column.addLayout(top)
        for widget in (self.total_label, self.total_bar, self.file_label, self.file_bar,
                       self.status):
            column.addWidget(widget)
        self.update_view()

    def _on_clicked(self, action: str) -> None:
        self.sig_action.emit(self.entry.key, action)

    def update_view(self) -> None:
        e = self.entry
        self.title.setText(e.title)
        files = e.params.get("files") or e.params.get("include") or []
        what = f"{len(files)} file{'s' if len(files) != 1 else ''}" if files else "all files"
        self.summary.setText(f"@{e.commit[:10]} · {what}" if e.commit else what)
        running = e.state in ("starting", "downloading")
        total = e.total or 0
        set_fraction(self.total_bar, e.done / total if total else None, running)
        parts = [f"{human_size(e.done)} of {human_size(total)}" if total else ""]
        if e.external and total:
            parts = [f"{e.done / total * 100:.0f}%"]
        if e.state == "downloading" and total:
            rate = e.meter.rate
            if rate is not None:
                parts.append(f"{human_size(rate)}/s")
                left = e.meter.time_left(total - e.done)
                parts.append(f"{human_duration(left)} left" if left is not None else "")
        self.total_label.setText(" · ".join(p for p in parts if p))
        d = e.detail
        show_file = e.state == "downloading" and bool(d.get("file"))
        self.file_bar.setVisible(show_file)
        self.file_label.setVisible(show_file)
        if show_file:
            file_total = d.get("total") or 0
            set_fraction(self.file_bar, d.get("done", 0) / file_total if file_total else None,
                          True)
            of = f" of {human_size(file_total)}" if file_total else ""
            self.file_label.setText(f"{d['file']} · {int(d.get('index', 0)) + 1} of "
                                    f"{d.get('count', '?')} · {human_size(d.get('done', 0))}{of}")
        paused = ("Paused — Resume continues where it stopped." if e.job_id is not None else
                  "Stopped before the end (paused, or the app was closed). Resume continues it.")
        status = {"starting": "Starting…", "downloading": "" if show_file else e.message,
                  "pausing": "Pausing…", "cancelling": "Cancelling…", "paused": paused,
                  "done": f"Done: in the catalog as {e.ref}." if e.ref else "Done.",
                  "failed": f"Failed: {e.error}"}.get(e.state, "")
        if e.external and e.state == "downloading":
            status = f"Job #{e.job_id}, started outside this window: {e.message}"
        self.status.setText(status)
        self.status.setStyleSheet(f"color: {ERROR_COLOR};" if e.state == "failed" else "")
        self.status.setVisible(bool(status))
        visible = {
            "pause": e.state in ("starting", "downloading"),
            "resume": e.state in ("paused", "failed"),
            "show": e.state == "done" and e.artifact_id is not None,
            "cancel": e.state in ("starting", "downloading", "paused", "failed") and bool(e.commit),
            "clear": e.state == "done" or (e.state == "failed" and not e.commit),
        }
        for action, button in self.buttons.items():
            button.setVisible(visible[action])
        self.buttons["cancel"].setText("Discard" if e.state in ("paused", "failed") else "Cancel")
        self.buttons["cancel"].setToolTip(
            "Delete the partial files" if e.state in ("paused", "failed")
            else "Stop and delete what was downloaded")


def progress_bar() -> QProgressBar:
    bar = QProgressBar()
    bar.setRange(0, 1000)
    bar.setTextVisible(False)
    bar.setMaximumHeight(12)
    return bar


def set_fraction(bar: QProgressBar, fraction: float | None, busy: bool) -> None:
    if fraction is None and busy:
        bar.setRange(0, 0)
    else:
        bar.setRange(0, 1000)
        bar.setValue(int((fraction or 0) * 1000))


def muted_label(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    muted = label.palette().color(QPalette.ColorRole.PlaceholderText)
    label.setStyleSheet(f"color: {muted.name()};")
    return label


class DownloadsBox(QGroupBox):
    """The Downloads list: a :class:`DownloadRow` per entry of a core
    :class:`~llmops_desktop.acquire.session.DownloadSession`, kept in step with its events;
    speed and time left redrawn a few times a second while bytes arrive."""

    sig_action = Signal(str, str)
    """A row's button: entry key and action (as :attr:`DownloadRow.sig_action`)."""
    sig_changed = Signal()
    """A row appeared, changed or went, or the downloads on disk were read again."""

    def __init__(self, session: DownloadSession, parent: QWidget | None = None) -> None:
        super().__init__("Downloads", parent)
        self.session = session
        self.rows: dict[str, DownloadRow] = {}
        self.rows_widget = QWidget()
        self.rows_layout = QVBoxLayout(self.rows_widget)
        self.rows_layout.setContentsMargins(0, 0, 0, 0)
        self.no_downloads = muted_label("Nothing is downloading. Downloads that stopped before "
                                        "the end (paused, or the app was closed) show up here "
                                        "with Resume.")
        self.rows_layout.addWidget(self.no_downloads)
        self.rows_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.rows_widget)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll)
        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._on_tick)
        # The session outlives no page: plain callbacks into this box are safe.
        session.changed.connect(self._on_entry_changed)
        session.removed.connect(self._on_entry_removed)
        session.listed.connect(self.sig_changed.emit)

    def _on_entry_changed(self, entry: DownloadEntry, announce: bool = True) -> None:
        row = self.rows.get(entry.key)
        if row is None:
            row = DownloadRow(entry)
            row.sig_action.connect(self.sig_action)
            self.rows[entry.key] = row
            self.rows_layout.insertWidget(0, row)
        row.entry = entry
        row.update_view()
        self.no_downloads.setVisible(not self.rows)
        if self.session.busy and not self._timer.isActive():
            self._timer.start()
        if announce:
            self.sig_changed.emit()

    def _on_entry_removed(self, key: str) -> None:
        row = self.rows.pop(key, None)
        if row is not None:
            self.rows_layout.removeWidget(row)
            row.deleteLater()
        self.no_downloads.setVisible(not self.rows)
        self.sig_changed.emit()

    def _on_tick(self) -> None:
        running = self.session.sample()
        for entry in running:
            if entry.key in self.rows:
                self.rows[entry.key].update_view()
        if not running:
            self._timer.stop()
