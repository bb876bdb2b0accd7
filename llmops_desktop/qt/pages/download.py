"""The Download page: search a hub, open a repo, choose files, download them as a job.

Every hub request runs in a worker thread; the download itself is a "download"
job (a child process). The downloads and their states (starting, downloading,
pausing, paused, cancelling, done, failed) are a core
:class:`~llmops_desktop.acquire.session.DownloadSession`: this page feeds it the
jobs' events and the partial downloads on disk, and shows its entries as rows
(Pause, Resume, Cancel or Discard). With Offline on, the page says so and makes
no request at all. "Share as mirror" serves this catalog to
colleagues through :class:`MirrorController`.
"""


from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.acquire.download import discard_download, list_partial_downloads
from llmops_desktop.acquire.hub import HubClient, ModelSummary, RepoSnapshot
from llmops_desktop.acquire.requests import DownloadRequest
from llmops_desktop.acquire.session import DownloadEntry, DownloadSession
from llmops_desktop.errors import ConflictError
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.download_rows import DownloadsBox, muted_label
from llmops_desktop.qt.hub_widgets import RepoFilesPanel, SearchResults
from llmops_desktop.qt.mirror_box import MirrorBox
from llmops_desktop.qt.mirror_controller import MirrorController
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.secrets import get_secret, mask
from llmops_desktop.settings import save_settings

ERROR_COLOR = "#d9534f"
SEARCH_LIMIT = 50
OFFLINE_TEXT = ("<b>Offline is on.</b> The app makes no network connection at all, so it "
                "cannot search or download. The catalog, imports and the team mirror keep "
                "working.")


class DownloadPage(Page):
    """Find a model on a hub or mirror, choose its files, download them; share the catalog."""

    page_id = "download"
    title = "Download"
    icon_name = "download"
    tooltip = "Search a Hugging Face hub or a mirror, choose files, download; share as a mirror"

    sig_search_finished = Signal(int)
    """A search answered: the number of models found."""
    sig_repo_opened = Signal(str)
    """A repo's files are listed (its id)."""
    sig_lookup_failed = Signal(str)
    """A search or a repo lookup failed (the message shown on the page)."""
    sig_downloads_changed = Signal()
    """A download changed state, or the list of downloads (also paused ones on disk) did."""
    sig_settings_requested = Signal()
    """The user asked for the Settings page."""
    sig_show_artifact_requested = Signal(int)
    """Show this artifact on the Models page."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.mirror = MirrorController(ctx.home, self)
        self.downloads = DownloadSession(
            start_job=self._start_job, cancel_job=ctx.jobs.cancel,
            discard_files=self._discard_files, job_record=ctx.catalog.job)
        self.downloads.relist.connect(self.refresh_partials)
        self._snapshot_endpoint = ""
        self._search_id = 0  # newest request of each kind; older answers are dropped
        self._open_id = 0

        self.offline_box = self._build_offline_box()
        self.hub_label = muted_label()
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search models, or type a repo id such as org/name")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.returnPressed.connect(self.search)
        self.revision_edit = QLineEdit("main")
        self.revision_edit.setToolTip("Branch, tag or commit to open")
        self.revision_edit.setFixedWidth(110)
        self.search_button = QPushButton(icon("search"), "Search")
        self.search_button.clicked.connect(lambda: self.search())
        self.open_button = QPushButton(icon("folder"), "Open repo")
        self.open_button.setToolTip("List the files of the repo id typed on the left")
        self.open_button.clicked.connect(lambda: self.open_repo())
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.hide()
        search_row = QHBoxLayout()
        search_row.addWidget(self.search_edit, 1)
        search_row.addWidget(QLabel("Revision:"))
        search_row.addWidget(self.revision_edit)
        search_row.addWidget(self.search_button)
        search_row.addWidget(self.open_button)

        self.browse_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.browse_splitter.addWidget(self._build_results())
        self.repo_panel = RepoFilesPanel()
        self.repo_panel.sig_download_requested.connect(lambda: self.start_download())
        self.browse_splitter.addWidget(self.repo_panel)
        self.browse_splitter.setStretchFactor(0, 2)
        self.browse_splitter.setStretchFactor(1, 3)
        self.mirror_box = MirrorBox(ctx, self.mirror)
        self.bottom_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.downloads_box = DownloadsBox(self.downloads)
        self.downloads_box.sig_action.connect(self.row_action)
        self.downloads_box.sig_changed.connect(self.sig_downloads_changed)
        self.rows, self.no_downloads = self.downloads_box.rows, self.downloads_box.no_downloads
        self.bottom_splitter.addWidget(self.downloads_box)
        self.bottom_splitter.addWidget(self.mirror_box)
        self.bottom_splitter.setStretchFactor(0, 3)
        self.bottom_splitter.setStretchFactor(1, 2)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.browse_splitter)
        self.splitter.addWidget(self.bottom_splitter)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.offline_box)
        layout.addWidget(self.hub_label)
        layout.addLayout(search_row)
        layout.addWidget(self.error_label)
        layout.addWidget(self.splitter, 1)

        ctx.jobs.sig_job_progress_event.connect(self._on_job_progress_event)
        ctx.jobs.sig_job_finished.connect(self._on_job_finished)
        ctx.jobs.sig_jobs_changed.connect(self._sync_external_jobs)
        ctx.events.sig_settings_saved.connect(self._on_settings_saved)
        self._update_online_state()
        self._sync_external_jobs()
        self.refresh_partials()

    # ---- building -------------------------------------------------------------------------

    def _build_offline_box(self) -> QFrame:
        box = QFrame()
        box.setObjectName("offlineBox")
        color = self.palette().color(QPalette.ColorRole.Highlight)
        box.setStyleSheet(f"#offlineBox {{ background: rgba({color.red()},{color.green()},"
                          f"{color.blue()},30); border: 1px solid {color.name()}; "
                          "border-radius: 4px; }")
        picture = QLabel()
        picture.setPixmap(icon("offline").pixmap(28, 28))
        self.offline_label = QLabel(OFFLINE_TEXT)
        self.offline_label.setWordWrap(True)
        settings_button = QPushButton(icon("settings"), "Open Settings")
        settings_button.clicked.connect(self.sig_settings_requested)
        self.go_online_button = QPushButton(icon("download"), "Go online…")
        self.go_online_button.setToolTip("Turn Offline off so this page can reach the hub")
        self.go_online_button.clicked.connect(self._on_go_online_clicked)
        row = QHBoxLayout(box)
        row.setContentsMargins(10, 8, 8, 8)
        row.addWidget(picture, 0, Qt.AlignmentFlag.AlignTop)
        row.addWidget(self.offline_label, 1)
        row.addWidget(settings_button)
        row.addWidget(self.go_online_button)
        return box

    def _build_results(self) -> QWidget:
        self.results = SearchResults()
        self.results.currentItemChanged.connect(self._on_result_changed)
        self.results_label = muted_label("Search the hub, or type a repo id and press Open repo.")
        panel = QWidget()
        column = QVBoxLayout(panel)
        column.setContentsMargins(0, 0, 4, 0)
        column.addWidget(self.results, 1)
        column.addWidget(self.results_label)
        return panel

    # ---- public ---------------------------------------------------------------------------

    def search(self, text: str | None = None) -> bool:
        """Search the endpoint (in a thread); False if Offline forbids it."""
        if text is not None:
            self.search_edit.setText(text)
        if self._refuse_offline():
            return False
        query = self.search_edit.text().strip()
        client = self._client()
        self._search_id += 1
        request = self._search_id
        self._show_error("")
        self.results_label.setText(f"Searching {client.endpoint}…")
        run_in_thread(lambda: client.search(query, limit=SEARCH_LIMIT),
                      lambda found: self._on_search_done(request, query, found),
                      lambda exc: self._on_search_failed(request, exc), receiver=self)
        return True

    def open_repo(self, repo_id: str | None = None, revision: str | None = None) -> bool:
        """List a repo's files (in a thread); False if Offline forbids it or no id is given."""
        repo_id = (repo_id if repo_id is not None else self.search_edit.text()).strip()
        revision = (revision or self.revision_edit.text()).strip() or "main"
        if self._refuse_offline():
            return False
        if not repo_id or " " in repo_id:
            self._show_error("Type a repo id such as org/name, then press Open repo.")
            return False
        client = self._client()
        self._open_id += 1
        request = self._open_id
        self._show_error("")
        self.repo_panel.show_lookup(repo_id, f"Asking {client.endpoint} about "
                                             f"{repo_id}@{revision}…")
        run_in_thread(lambda: client.snapshot(repo_id, revision),
                      lambda snap: self._on_repo_done(request, client.endpoint, snap),
                      lambda exc: self._on_repo_failed(request, repo_id, exc), receiver=self)
        return True

    @property
    def snapshot(self) -> RepoSnapshot | None:
        """The open repo (None: none is open)."""
        return self.repo_panel.snapshot

    def file_sizes(self) -> dict[str, str]:
        """The open repo's files and their sizes as shown."""
        return self.repo_panel.file_sizes()

    def checked_paths(self) -> list[str]:
        return self.repo_panel.checked_paths()

    def set_checked(self, paths: Any) -> None:
        self.repo_panel.set_checked(paths)

    def start_download(self) -> DownloadEntry | None:
        """Download the ticked files of the open repo as a job; None when it cannot start."""
        snap = self.snapshot
        if self._refuse_offline() or snap is None:
            return None
        chosen = self.checked_paths()
        if not chosen:
            self._show_error("Tick at least one file to download.")
            return None
        self._show_error("")
        try:
            name = self.repo_panel.name_edit.text().strip() or None
            return self.downloads.request(self._snapshot_endpoint, snap.repo_id, snap.commit,
                                          chosen, name)
        except ConflictError:
            self._show_error(f"{snap.repo_id} is already downloading below; pause or cancel "
                             "it first.")
            return None

    def row_action(self, key: str, action: str) -> None:
        """What a row's button does: pause, resume, cancel (or discard), show, clear."""
        entry = self.entries.get(key)
        if entry is None or (action == "resume" and self._refuse_offline()):
            return
        if action == "show":
            if entry.artifact_id is not None:
                self.sig_show_artifact_requested.emit(entry.artifact_id)
            return
        self.downloads.act(key, action)

    @property
    def entries(self) -> dict[str, DownloadEntry]:
        """The downloads shown, by key (the core session's)."""
        return self.downloads.entries

    def refresh_partials(self) -> None:
        """Re-read the downloads that stopped before the end (in a thread)."""
        home = self.ctx.home
        run_in_thread(lambda: list_partial_downloads(home),
                      lambda found: self.downloads.partials_listed(
                          found, self.ctx.settings.hf_endpoint),
                      lambda exc: self._show_error(f"Cannot list unfinished downloads: {exc}"),
                      receiver=self)

    def refresh(self) -> None:
        self._update_online_state()
        self.refresh_partials()

    def on_shown(self) -> None:
        self.refresh_partials()

    def save_state(self, state: QSettings) -> None:
        for name in ("splitter", "browse_splitter", "bottom_splitter"):
            state.setValue(f"download/{name}", getattr(self, name).saveState())

    def restore_state(self, state: QSettings) -> None:
        for name in ("splitter", "browse_splitter", "bottom_splitter"):
            if (value := state.value(f"download/{name}")) is not None:
                getattr(self, name).restoreState(value)

    # ---- hub answers ----------------------------------------------------------------------

    def _client(self) -> HubClient:
        s = self.ctx.settings
        return HubClient(s.hf_endpoint, get_secret(self.ctx.home, "hf_token"), offline=s.offline,
                         proxy=s.proxy)

    def _on_search_done(self, request: int, query: str, found: list[ModelSummary]) -> None:
        if request != self._search_id:
            return
        self.results.show_models(found)
        shown = f" for “{query}”" if query else ""
        noun = "model" if len(found) == 1 else "models"
        self.results_label.setText(f"{len(found)} {noun}{shown}. Click one to see its files."
                                   if found else f"No model matches{shown}.")
        self.sig_search_finished.emit(len(found))

    def _on_search_failed(self, request: int, exc: BaseException) -> None:
        if request != self._search_id:
            return
        self.results.clear()
        self.results_label.setText("You can still type a repo id (org/name) and press "
                                   "Open repo.")
        self._show_error(str(exc))
        self.sig_lookup_failed.emit(str(exc))

    def _on_result_changed(self, current: QTreeWidgetItem | None, _previous: object) -> None:
        if current is not None:
            self.search_edit.setText(self.results.repo_id(current))
            self.open_repo(self.results.repo_id(current))

    def _on_repo_done(self, request: int, endpoint: str, snap: RepoSnapshot) -> None:
        if request != self._open_id:
            return
        self._snapshot_endpoint = endpoint
        self.repo_panel.show_repo(snap)
        self.sig_repo_opened.emit(snap.repo_id)

    def _on_repo_failed(self, request: int, repo_id: str, exc: BaseException) -> None:
        if request != self._open_id:
            return
        self.repo_panel.show_repo(None)
        self._show_error(str(exc))
        self.sig_lookup_failed.emit(str(exc))

    # ---- downloads ------------------------------------------------------------------------

    def _start_job(self, params: dict[str, Any]) -> int:
        request = DownloadRequest.from_params(params).check(self.ctx.catalog)
        return self.ctx.jobs.start(request).id

    def _discard_files(self, key: str) -> None:
        home = self.ctx.home
        run_in_thread(lambda: discard_download(home, key),
                      lambda _: self.downloads.discarded(key),
                      lambda exc: self.downloads.discard_failed(key, exc), receiver=self)

    def _sync_external_jobs(self) -> None:
        self.downloads.sync_jobs(self.ctx.jobs.active_jobs())

    def _on_job_progress_event(self, job_id: int, event: Any) -> None:
        self.downloads.job_progress(job_id, event)

    def _on_job_finished(self, job_id: int, state: str) -> None:
        self.downloads.job_finished(job_id, state)


    # ---- offline --------------------------------------------------------------------------

    def _refuse_offline(self) -> bool:
        if not self.ctx.settings.offline:
            return False
        self._update_online_state()
        self._show_error("Offline is on, so nothing is searched or downloaded. Turn it off "
                         "with Go online… above, or in Settings.")
        return True

    def _update_online_state(self) -> None:
        s = self.ctx.settings
        self.offline_box.setVisible(s.offline)
        for widget in (self.search_button, self.open_button):
            widget.setEnabled(not s.offline)
        token = get_secret(self.ctx.home, "hf_token")
        self.hub_label.setText(f"Hub: {s.hf_endpoint}" + (f" · proxy {s.proxy}" if s.proxy else "")
                               + (f" · token {mask(token)}" if token else
                                  " · no token (public repos only)")
                               + " — change in Settings › Network.")
        if not s.offline and self.error_label.text().startswith("Offline is on"):
            self._show_error("")
        self.repo_panel.set_offline(s.offline)

    def _on_go_online_clicked(self) -> None:
        answer = QMessageBox.question(
            self, "Go online",
            f"Turn Offline off? The app may then connect to {self.ctx.settings.hf_endpoint} "
            "when you search or download.")
        if answer == QMessageBox.StandardButton.Yes:
            self.set_offline(False)

    def set_offline(self, offline: bool) -> None:
        """Save the Offline setting and tell the other pages."""
        settings = self.ctx.settings.updated(offline=offline)
        save_settings(self.ctx.home.settings_path, settings)
        self.ctx.reload_settings()
        self.ctx.events.sig_settings_saved.emit(self.ctx.settings)

    def _on_settings_saved(self, _settings: object) -> None:
        self._update_online_state()
        self.mirror_box.update_view()

    def _show_error(self, text: str) -> None:
        self.error_label.setText(text)
        self.error_label.setVisible(bool(text))
