"""The Download page: search a hub, open a repo, choose files, download them as a job.

Every hub request runs in a worker thread; the download itself is a "download"
job (a child process) whose progress events carry the bytes done and the file
in flight; speed and time left are worked out here from successive events.
Pause cancels the job and keeps the partial files; Resume starts the same job
again, which continues with HTTP Range requests; Cancel also deletes the
partial files. Downloads left paused or interrupted (by this window, an earlier
one or the CLI) are listed with Resume and Discard. With Offline on, the page
says so and makes no request at all. "Share as mirror" serves this catalog to
colleagues through :class:`MirrorController`.
"""


from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.acquire.download import (
    PartialDownload,
    discard_download,
    download_key,
    list_partial_downloads,
)
from llmops_desktop.acquire.hub import HubClient, ModelSummary, RepoSnapshot
from llmops_desktop.acquire.requests import DownloadRequest
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.download_rows import DownloadEntry, DownloadRow, muted_label
from llmops_desktop.qt.formatting import human_count, human_size, local_time
from llmops_desktop.qt.mirror_box import MirrorBox
from llmops_desktop.qt.mirror_controller import MirrorController
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.secrets import get_secret, mask
from llmops_desktop.settings import save_settings

PATH_ROLE = Qt.ItemDataRole.UserRole + 1
ERROR_COLOR = "#d9534f"
REFRESH_MS = 250
SEARCH_LIMIT = 50
ACTIVE = frozenset({"starting", "downloading", "pausing", "cancelling"})  # a job is at work
OFFLINE_TEXT = ("<b>Offline is on.</b> The app makes no network connection at all, so it "
                "cannot search or download. The catalog, imports and the team mirror keep "
                "working.")


def params_of(partial: PartialDownload) -> dict[str, Any]:
    # Pinned to the commit it started from: a branch that moved since cannot mix files.
    return {"repo_id": partial.repo_id, "revision": partial.commit,
            "include": list(partial.include), "exclude": list(partial.exclude),
            "files": list(partial.files), "name": partial.name, "endpoint": partial.endpoint}


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
        self.entries: dict[str, DownloadEntry] = {}
        self.rows: dict[str, DownloadRow] = {}
        self.snapshot: RepoSnapshot | None = None
        self._snapshot_endpoint = ""
        self._search_id = 0  # newest request of each kind; older answers are dropped
        self._open_id = 0
        self._starting = False
        self._discarded: set[str] = set()  # keys deleted here; a late listing must not revive

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
        self.browse_splitter.addWidget(self._build_repo_panel())
        self.browse_splitter.setStretchFactor(0, 2)
        self.browse_splitter.setStretchFactor(1, 3)
        self.mirror_box = MirrorBox(ctx, self.mirror)
        self.bottom_splitter = QSplitter(Qt.Orientation.Horizontal)
        self.bottom_splitter.addWidget(self._build_downloads_box())
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

        self._timer = QTimer(self)
        self._timer.setInterval(REFRESH_MS)
        self._timer.timeout.connect(self._on_tick)
        ctx.jobs.sig_job_progress_event.connect(self._on_job_progress_event)
        ctx.jobs.sig_job_finished.connect(self._on_job_finished)
        ctx.jobs.sig_jobs_changed.connect(self._sync_external_jobs)
        ctx.events.sig_settings_saved.connect(self._on_settings_saved)
        self._show_repo(None)
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
        self.results = QTreeWidget()
        self.results.setHeaderLabels(["Model", "Downloads", "Likes", "Updated"])
        self.results.setRootIsDecorated(False)
        self.results.setAlternatingRowColors(True)
        self.results.setUniformRowHeights(True)
        header = self.results.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column, width in ((1, 84), (2, 56), (3, 128)):
            self.results.setColumnWidth(column, width)
        self.results.currentItemChanged.connect(self._on_result_changed)
        self.results_label = muted_label("Search the hub, or type a repo id and press Open repo.")
        panel = QWidget()
        column = QVBoxLayout(panel)
        column.setContentsMargins(0, 0, 4, 0)
        column.addWidget(self.results, 1)
        column.addWidget(self.results_label)
        return panel

    def _build_repo_panel(self) -> QWidget:
        self.repo_title = QLabel()
        font = self.repo_title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.2)
        self.repo_title.setFont(font)
        self.repo_title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.repo_info = muted_label()
        self.files = QTreeWidget()
        self.files.setHeaderLabels(["File", "Size"])
        self.files.setAlternatingRowColors(True)
        self.files.setUniformRowHeights(True)
        header = self.files.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.files.setColumnWidth(1, 96)
        self.files.itemChanged.connect(self._on_file_item_changed)
        self.all_button = QPushButton("All")
        self.all_button.clicked.connect(lambda: self.set_checked(self.file_sizes()))
        self.none_button = QPushButton("None")
        self.none_button.clicked.connect(lambda: self.set_checked([]))
        self.selection_label = QLabel()
        self.selection_label.setWordWrap(True)
        self.name_edit = QLineEdit()
        self.name_edit.setClearButtonEnabled(True)
        self.name_edit.setToolTip("The model's name in the catalog")
        self.download_button = QPushButton(icon("download"), "Download")
        self.download_button.setDefault(True)
        self.download_button.clicked.connect(lambda: self.start_download())
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Select:"))
        pick.addWidget(self.all_button)
        pick.addWidget(self.none_button)
        pick.addWidget(self.selection_label, 1)
        go = QHBoxLayout()
        go.addWidget(QLabel("Name:"))
        go.addWidget(self.name_edit, 1)
        go.addWidget(self.download_button)
        panel = QWidget()
        column = QVBoxLayout(panel)
        column.setContentsMargins(4, 0, 0, 0)
        column.addWidget(self.repo_title)
        column.addWidget(self.repo_info)
        column.addWidget(self.files, 1)
        column.addLayout(pick)
        column.addLayout(go)
        return panel

    def _build_downloads_box(self) -> QGroupBox:
        box = QGroupBox("Downloads")
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
        layout = QVBoxLayout(box)
        layout.addWidget(scroll)
        return box

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
        self.repo_title.setText(repo_id)
        self.repo_info.setText(f"Asking {client.endpoint} about {repo_id}@{revision}…")
        run_in_thread(lambda: client.snapshot(repo_id, revision),
                      lambda snap: self._on_repo_done(request, client.endpoint, snap),
                      lambda exc: self._on_repo_failed(request, repo_id, exc), receiver=self)
        return True

    def file_sizes(self) -> dict[str, str]:
        """The open repo's files and their sizes as shown."""
        return {item.data(0, PATH_ROLE): item.text(1) for item in self._file_items()}

    def checked_paths(self) -> list[str]:
        return [item.data(0, PATH_ROLE) for item in self._file_items()
                if item.checkState(0) == Qt.CheckState.Checked]

    def set_checked(self, paths: Any) -> None:
        wanted = set(paths)
        for item in self._file_items():
            item.setCheckState(0, Qt.CheckState.Checked if item.data(0, PATH_ROLE) in wanted
                               else Qt.CheckState.Unchecked)
        self._update_selection()

    def start_download(self) -> DownloadEntry | None:
        """Download the ticked files of the open repo as a job; None when it cannot start."""
        snap = self.snapshot
        if self._refuse_offline() or snap is None:
            return None
        chosen = self.checked_paths()
        if not chosen:
            self._show_error("Tick at least one file to download.")
            return None
        endpoint = self._snapshot_endpoint
        key = download_key(endpoint, snap.repo_id, snap.commit)
        entry = self.entries.get(key)
        if entry is not None and entry.state in ACTIVE:
            self._show_error(f"{snap.repo_id} is already downloading below; pause or cancel "
                             "it first.")
            return None
        params = {"repo_id": snap.repo_id, "revision": snap.commit,
                  "files": sorted(chosen), "include": [], "exclude": [],
                  "name": self.name_edit.text().strip() or None, "endpoint": endpoint}
        if entry is None or entry.external:
            entry = DownloadEntry(key=key, params=params, commit=snap.commit)
        entry.params = params  # a paused one continues with the new choice of files
        self._show_error("")
        self._start(entry)
        return entry

    def row_action(self, key: str, action: str) -> None:
        """What a row's button does: pause, resume, cancel (or discard), show, clear."""
        entry = self.entries.get(key)
        if entry is None:
            return
        if action == "pause" and entry.job_id is not None and entry.state in ACTIVE:
            entry.state = "pausing"
            self.ctx.jobs.cancel(entry.job_id)
        elif action == "resume" and not self._refuse_offline():
            self._start(entry)
        elif action == "cancel":
            if entry.state in ("starting", "downloading") and entry.job_id is not None:
                entry.state = "cancelling"
                self.ctx.jobs.cancel(entry.job_id)
            elif entry.state in ("paused", "failed"):
                self._discard(entry)
        elif action == "show" and entry.artifact_id is not None:
            self.sig_show_artifact_requested.emit(entry.artifact_id)
        elif action == "clear":
            self._remove(key)
        self._entry_changed(entry)

    def refresh_partials(self) -> None:
        """Re-read the downloads that stopped before the end (in a thread)."""
        home = self.ctx.home
        run_in_thread(lambda: list_partial_downloads(home), self._on_partials_listed,
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
        self.results.blockSignals(True)
        self.results.clear()
        for m in found:
            item = QTreeWidgetItem([m.repo_id, human_count(m.downloads) or "0",
                                    str(m.likes or 0), local_time(m.last_modified)])
            item.setData(0, PATH_ROLE, m.repo_id)
            item.setToolTip(0, ", ".join(m.tags))
            for column in (1, 2):
                item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight
                                      | Qt.AlignmentFlag.AlignVCenter)
            self.results.addTopLevelItem(item)
        self.results.blockSignals(False)
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
            self.search_edit.setText(current.data(0, PATH_ROLE))
            self.open_repo(current.data(0, PATH_ROLE))

    def _on_repo_done(self, request: int, endpoint: str, snap: RepoSnapshot) -> None:
        if request != self._open_id:
            return
        self._snapshot_endpoint = endpoint
        self._show_repo(snap)
        self.sig_repo_opened.emit(snap.repo_id)

    def _on_repo_failed(self, request: int, repo_id: str, exc: BaseException) -> None:
        if request != self._open_id:
            return
        self._show_repo(None)
        self._show_error(str(exc))
        self.sig_lookup_failed.emit(str(exc))

    # ---- the open repo --------------------------------------------------------------------

    def _file_items(self) -> list[QTreeWidgetItem]:
        out, stack = [], [self.files.topLevelItem(i) for i in range(self.files.topLevelItemCount())]
        while stack:
            item = stack.pop(0)
            if item.data(0, PATH_ROLE):
                out.append(item)
            stack[:0] = [item.child(i) for i in range(item.childCount())]
        return out

    def _show_repo(self, snap: RepoSnapshot | None) -> None:
        self.snapshot = snap
        self.files.blockSignals(True)
        self.files.clear()
        if snap is None:
            self.repo_title.setText("No repo open")
            self.repo_info.setText("Search, then click a model; or type org/name and press "
                                   "Open repo. Tick the files you want, then Download.")
            self.name_edit.setPlaceholderText("")
            self.files.blockSignals(False)
            self._update_selection()
            return
        ggufs = [f for f in snap.files if f.path.lower().endswith(".gguf")]
        tick = Qt.CheckState.Checked if len(ggufs) <= 1 else Qt.CheckState.Unchecked
        folders: dict[str, QTreeWidgetItem] = {}
        for f in snap.files:
            folder, _, name = f.path.rpartition("/")
            item = QTreeWidgetItem([name, human_size(f.size) if f.size is not None else "—"])
            item.setData(0, PATH_ROLE, f.path)
            item.setIcon(0, icon("file"))
            item.setToolTip(0, f.path + (f"\nsha256 {f.sha256}" if f.sha256 else ""))
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            parent = self._folder_item(folders, folder, tick)
            if parent is None:
                self.files.addTopLevelItem(item)
            else:
                parent.addChild(item)
            item.setCheckState(0, tick)
        self.files.expandAll()
        self.files.blockSignals(False)
        facts = [f"commit {snap.commit[:10]}", f"{len(snap.files)} files",
                 human_size(snap.total_size)]
        if snap.license:
            facts.append(f"license {snap.license}")
        if snap.gated:
            facts.append("gated: needs a token with access")
        self.repo_title.setText(snap.repo_id if snap.revision == "main"
                                else f"{snap.repo_id} @ {snap.revision}")
        self.repo_info.setText(" · ".join(facts))
        self.name_edit.setPlaceholderText(f"{snap.repo_id} (default)")
        self._update_selection()

    def _folder_item(self, folders: dict[str, QTreeWidgetItem], folder: str,
                     tick: Qt.CheckState) -> QTreeWidgetItem | None:
        if not folder:
            return None
        item = folders.get(folder)
        if item is None:
            parent_path, _, name = folder.rpartition("/")
            parent = self._folder_item(folders, parent_path, tick)
            item = QTreeWidgetItem([name + "/", ""])
            item.setIcon(0, icon("folder"))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable
                          | Qt.ItemFlag.ItemIsAutoTristate)
            if parent is None:
                self.files.addTopLevelItem(item)
            else:
                parent.addChild(item)
            item.setCheckState(0, tick)
            folders[folder] = item
        return item

    def _on_file_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column == 0:
            self._update_selection()

    def _update_selection(self) -> None:
        snap = self.snapshot
        offline = self.ctx.settings.offline
        for widget in (self.all_button, self.none_button, self.name_edit):
            widget.setEnabled(snap is not None)
        if snap is None:
            self.selection_label.setText("")
            self.download_button.setEnabled(False)
            return
        chosen = self.checked_paths()
        sizes = {f.path: f.size or 0 for f in snap.files}
        text = (f"{len(chosen)} of {len(snap.files)} files · "
                f"{human_size(sum(sizes[p] for p in chosen))}")
        ggufs = [p for p in sizes if p.lower().endswith(".gguf")]
        picked = [p for p in chosen if p.lower().endswith(".gguf")]
        if len(ggufs) > 1 and not picked:
            text += f" — {len(ggufs)} GGUF files: tick the quant you want"
        elif len(picked) > 1:
            text += " — tick one GGUF file: each download makes one model"
        self.selection_label.setText(text)
        self.download_button.setEnabled(bool(chosen) and not offline and len(picked) <= 1)

    # ---- downloads ------------------------------------------------------------------------

    def _start(self, entry: DownloadEntry) -> None:
        entry.state, entry.error, entry.message, entry.detail = "starting", "", "", {}
        entry.external = False
        entry.meter.reset()
        self._discarded.discard(entry.key)
        self.entries[entry.key] = entry
        self._starting = True
        try:
            request = DownloadRequest.from_params(entry.params).check(self.ctx.catalog)
            entry.job_id = self.ctx.jobs.start(request).id
        except Exception as exc:  # noqa: BLE001 - e.g. the catalog is locked: say so on the row
            entry.state, entry.error, entry.job_id = "failed", str(exc), None
        finally:
            self._starting = False
        self._entry_changed(entry)

    def _entry_for_job(self, job_id: int) -> DownloadEntry | None:
        for entry in self.entries.values():
            if entry.job_id == job_id:
                return entry
        return None

    def _on_job_progress_event(self, job_id: int, event: Any) -> None:
        entry = self._entry_for_job(job_id)
        if entry is None or entry.external:
            return
        if getattr(event, "total", None):
            entry.done, entry.total = event.done, event.total
        entry.message = getattr(event, "message", "") or ""
        entry.detail = dict(getattr(event, "detail", None) or {})
        if entry.state == "starting":
            entry.state = "downloading"
            self._entry_changed(entry)

    def _on_job_finished(self, job_id: int, state: str) -> None:
        entry = self._entry_for_job(job_id)
        if entry is None:
            return
        if entry.external:
            self._remove(entry.key)
            self.refresh_partials()
            return
        job = self.ctx.catalog.job(job_id)
        if state == "succeeded":
            result = job.result or {}
            entry.state, entry.ref = "done", str(result.get("ref", ""))
            entry.artifact_id = result.get("artifact_id")
            entry.done = entry.total or entry.done
        elif entry.state == "cancelling":
            self._discard(entry)
        elif entry.state == "pausing" or state == "cancelled":
            entry.state = "paused"
            self.refresh_partials()
        else:
            entry.state, entry.error = "failed", job.error or f"The download {state}."
        self._entry_changed(entry)

    def _sync_external_jobs(self) -> None:
        """Show download jobs this window did not start (CLI, an earlier window)."""
        if self._starting:
            return
        known = {e.job_id for e in self.entries.values()}
        for job in self.ctx.jobs.active_jobs():
            if job.kind != "download":
                continue
            key = f"job:{job.id}"
            if job.id not in known:
                self.entries[key] = DownloadEntry(key=key, params=dict(job.params),
                                                  state="downloading", job_id=job.id,
                                                  external=True)
            entry = self.entries.get(key)
            if entry is not None and entry.state == "downloading":
                entry.done, entry.total, entry.message = job.progress or 0, 1.0, job.message
                self._entry_changed(entry)

    def _external_covers(self, partial: PartialDownload) -> bool:
        default = self.ctx.settings.hf_endpoint
        return any(e.external and e.state in ACTIVE and e.title == partial.repo_id
                   and str(e.params.get("endpoint") or default).rstrip("/") == partial.endpoint
                   for e in self.entries.values())

    def _on_partials_listed(self, partials: list[PartialDownload]) -> None:
        on_disk = set()
        for p in partials:
            on_disk.add(p.key)
            if p.key in self._discarded or self._external_covers(p):
                continue
            entry = self.entries.get(p.key)
            if entry is None:
                entry = DownloadEntry(key=p.key, params=params_of(p), commit=p.commit)
                self.entries[p.key] = entry
            if entry.state in ("paused", "failed"):
                entry.done, entry.total = p.bytes_on_disk, p.total_bytes
            self._entry_changed(entry, announce=False)
        for key, entry in list(self.entries.items()):
            if entry.state == "paused" and entry.job_id is None and key not in on_disk:
                self._remove(key)  # discarded elsewhere (the CLI, another window)
        self._discarded &= on_disk  # gone from disk now: a new download may use the key again
        self.sig_downloads_changed.emit()

    def _discard(self, entry: DownloadEntry) -> None:
        entry.state = "cancelling"
        home, key = self.ctx.home, entry.key
        self._discarded.add(key)
        run_in_thread(lambda: discard_download(home, key), lambda _: self._remove(key),
                      lambda exc: self._on_discard_failed(key, exc), receiver=self)

    def _on_discard_failed(self, key: str, exc: BaseException) -> None:
        if (entry := self.entries.get(key)) is not None:
            entry.state, entry.error = "failed", f"Could not delete the partial files: {exc}"
            self._entry_changed(entry)

    def _remove(self, key: str) -> None:
        self.entries.pop(key, None)
        row = self.rows.pop(key, None)
        if row is not None:
            self.rows_layout.removeWidget(row)
            row.deleteLater()
        self.no_downloads.setVisible(not self.rows)
        self.sig_downloads_changed.emit()

    def _entry_changed(self, entry: DownloadEntry, *, announce: bool = True) -> None:
        if entry.key not in self.entries:
            return
        row = self.rows.get(entry.key)
        if row is None:
            row = DownloadRow(entry)
            row.sig_action.connect(self.row_action)
            self.rows[entry.key] = row
            self.rows_layout.insertWidget(0, row)
        row.entry = entry
        row.update_view()
        self.no_downloads.setVisible(not self.rows)
        busy = any(e.state in ("starting", "downloading") for e in self.entries.values())
        if busy and not self._timer.isActive():
            self._timer.start()
        if announce:
            self.sig_downloads_changed.emit()

    def _on_tick(self) -> None:
        now = time.monotonic()
        busy = False
        for entry in self.entries.values():
            if entry.state == "downloading" and not entry.external:
                entry.meter.sample(entry.done, now)
            if entry.state in ("starting", "downloading") and entry.key in self.rows:
                self.rows[entry.key].update_view()
                busy = True
        if not busy:
            self._timer.stop()

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
        self._update_selection()

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
