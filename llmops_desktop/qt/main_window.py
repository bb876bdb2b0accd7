"""The main window: a sidebar of pages, menus with shortcuts, a status bar of jobs.

Adding a page is one line: append its class to :data:`PAGES`. It gets a sidebar
entry, a Ctrl+<n> shortcut, a View menu item and its saved state.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QSize, Qt
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.import_request import ImportRequest
from llmops_desktop.jobs import runner
from llmops_desktop.paths import Home
from llmops_desktop.qt.about import show_about
from llmops_desktop.qt.banner_overlay import OverlayHost
from llmops_desktop.qt.context import AppContext, AppEvents, Page, icon
from llmops_desktop.qt.download_rows import shareable_url
from llmops_desktop.qt.help import HelpMenu
from llmops_desktop.qt.import_dialog import ImportDialog, check_request
from llmops_desktop.qt.job_controller import JobController
from llmops_desktop.qt.pages.datasets import DatasetsPage
from llmops_desktop.qt.pages.deployments import DeploymentsPage
from llmops_desktop.qt.pages.download import DownloadPage
from llmops_desktop.qt.pages.evaluate import EvaluatePage
from llmops_desktop.qt.pages.finetune import FinetunePage
from llmops_desktop.qt.pages.jobs import JobsPage
from llmops_desktop.qt.pages.models import ModelsPage
from llmops_desktop.qt.pages.monitor import MonitorPage
from llmops_desktop.qt.pages.playground import PlaygroundPage
from llmops_desktop.qt.pages.prompts import PromptsPage
from llmops_desktop.qt.pages.registries import RegistriesPage
from llmops_desktop.qt.pages.settings import SettingsPage
from llmops_desktop.qt.widgets import JobsStatusButton, MessageBanner
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.settings import load_settings

PAGES: list[type[Page]] = [ModelsPage, DownloadPage, DatasetsPage, FinetunePage,
                           EvaluatePage,
                           RegistriesPage, DeploymentsPage,
                           PlaygroundPage, PromptsPage,
                           MonitorPage, JobsPage, SettingsPage]
MODEL_SUFFIXES = (".gguf", ".llmpkg")
# pages past the tenth (no Ctrl+<n> left): Jobs as in a browser's downloads, Settings as
# Preferences is on every desktop
EXTRA_PAGE_SHORTCUTS = {"jobs": "Ctrl+J", "settings": "Ctrl+,"}


def droppable_paths(urls: list) -> list[Path]:
    """Local folders and .gguf files among dropped URLs."""
    out = []
    for url in urls:
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.is_dir() or path.suffix.lower() in MODEL_SUFFIXES:
                out.append(path)
    return out


class MainWindow(QMainWindow):
    """One window over one data home."""

    def __init__(self, home: Home | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home or Home.resolve()
        catalog = Catalog.open(self.home)
        runner.recover(catalog)
        jobs = JobController(self.home, catalog, self)
        self.ctx = AppContext(self.home, catalog, jobs, AppEvents(self),
                              load_settings(self.home.settings_path))
        self._started: dict[int, str] = {}  # job id -> what this window started it for
        self._select_after_reload: int | None = None
        self.deployments_on_close = "ask"
        """What closing does to running deployments: 'ask', 'keep' or 'stop'."""
        self.setWindowTitle("LLMOps Desktop")
        self.setWindowIcon(icon("app"))
        self.setAcceptDrops(True)
        self.state = QSettings(str(self.home.gui_state_path), QSettings.Format.IniFormat)

        self.sidebar = QListWidget()
        self.sidebar.setIconSize(QSize(22, 22))
        self.sidebar.setFixedWidth(168)
        self.sidebar.setSpacing(2)
        self.sidebar.setFrameShape(QListWidget.Shape.NoFrame)
        self.stack = QStackedWidget()
        self.pages: dict[str, Page] = {}
        for page_cls in PAGES:
            page = page_cls(self.ctx)
            self.pages[page.page_id] = page
            # A page wider than the window scrolls instead of setting the window's minimum
            # width (the sum of the widest pages would not fit a laptop screen).
            holder = QScrollArea()
            holder.setWidget(page)
            holder.setWidgetResizable(True)
            holder.setFrameShape(QFrame.Shape.NoFrame)
            self.stack.addWidget(holder)
            item = QListWidgetItem(icon(page.icon_name), page.title)
            item.setToolTip(page.tooltip)
            item.setSizeHint(QSize(150, 36))
            self.sidebar.addItem(item)
        self.sidebar.currentRowChanged.connect(self._on_page_changed)
        self.banner = MessageBanner()
        right = QVBoxLayout()
        right.setContentsMargins(0, 4, 4, 0)
        # The banner floats over the page: showing it never moves what is under the pointer.
        right.addWidget(OverlayHost(self.stack, self.banner), 1)
        central = QWidget()
        layout = QHBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.sidebar)
        layout.addLayout(right, 1)
        self.setCentralWidget(central)

        self.jobs_status = JobsStatusButton()
        self.jobs_status.sig_clicked.connect(lambda: self.show_page("jobs"))
        self.mirror_status = QToolButton()
        self.mirror_status.setIcon(icon("mirror"))
        self.mirror_status.setAutoRaise(True)
        self.mirror_status.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.mirror_status.setToolTip("The team mirror is on; click to see its requests")
        self.mirror_status.clicked.connect(lambda: self.show_page("download"))
        self.mirror_status.hide()
        self.deploy_status = QToolButton()
        self.deploy_status.setIcon(icon("deploy"))
        self.deploy_status.setAutoRaise(True)
        self.deploy_status.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.deploy_status.setToolTip("Models being served; click to see them")
        self.deploy_status.clicked.connect(lambda: self.show_page("deployments"))
        self.deploy_status.hide()
        self.statusBar().addPermanentWidget(self.deploy_status)
        self.statusBar().addPermanentWidget(self.mirror_status)
        self.statusBar().addPermanentWidget(self.jobs_status)
        self._build_menus()

        events = self.ctx.events
        events.sig_import_requested.connect(self.open_import_dialog)
        events.sig_demo_requested.connect(self.start_demo)
        events.sig_show_job_requested.connect(self.show_job)
        events.sig_error.connect(self.banner.show_error)
        events.sig_info.connect(lambda text: self.statusBar().showMessage(text, 5000))
        jobs.sig_job_finished.connect(self._on_job_finished)
        jobs.sig_job_progress.connect(self._on_job_progress)
        jobs.sig_active_changed.connect(lambda _: self._update_jobs_status())
        jobs.sig_jobs_changed.connect(self._update_jobs_status)
        self.models_page.sig_reloaded.connect(self._on_models_reloaded)
        self.models_page.sig_serve_requested.connect(self.serve_artifact)
        self.models_page.sig_serve_now_requested.connect(self.serve_artifact_now)
        self.models_page.sig_selection_changed.connect(self.deployments_page.note_model_selected)
        self.models_page.sig_chat_requested.connect(self.chat_with_artifact)
        self.playground_page.attach(self.deployments_page.deploy)
        evaluate = self.pages["evaluate"]
        assert isinstance(evaluate, EvaluatePage)
        evaluate.run_form.attach_gateway(self.deployments_page.gateway)  # a judge (#18)
        self.playground_page.sig_show_prompt_requested.connect(self.show_prompt)
        self.deployments_page.sig_chat_requested.connect(self.chat_with)
        download = self.download_page
        download.sig_settings_requested.connect(lambda: self.show_page("settings"))
        download.sig_show_artifact_requested.connect(self.show_artifact)
        download.mirror.sig_state_changed.connect(lambda _: self._update_mirror_status())
        download.mirror.sig_started.connect(lambda _: self._update_mirror_status())
        deploy = self.deployments_page.deploy
        deploy.sig_changed.connect(lambda _: self._update_deploy_status())
        deploy.sig_added.connect(lambda _: self._update_deploy_status())
        self._update_deploy_status()
        self._update_jobs_status()
        self._restore_state()

    @property
    def models_page(self) -> ModelsPage:
        page = self.pages["models"]
        assert isinstance(page, ModelsPage)
        return page

    @property
    def deployments_page(self) -> DeploymentsPage:
        page = self.pages["deployments"]
        assert isinstance(page, DeploymentsPage)
        return page

    @property
    def playground_page(self) -> PlaygroundPage:
        page = self.pages["playground"]
        assert isinstance(page, PlaygroundPage)
        return page

    def show_prompt(self, ref: str) -> None:
        """Open the Prompts page on a prompt version (NAME@N)."""
        page = self.show_page("prompts")
        assert isinstance(page, PromptsPage)
        page.show_ref(ref)

    def chat_with(self, key: int) -> None:
        """Open the Playground on a deployment."""
        self.show_page("playground")
        self.playground_page.select_deployment(key)

    @property
    def download_page(self) -> DownloadPage:
        page = self.pages["download"]
        assert isinstance(page, DownloadPage)
        return page

    # ---- menus ----------------------------------------------------------------------------

    def _act(self, icon_name: str, text: str, slot: object, shortcut: object = None) -> QAction:
        action = QAction(icon(icon_name), text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.act_import_file = self._act("file", "Import GGUF &file…",
                                         lambda: self.open_import_dialog("file"), "Ctrl+O")
        self.act_import_folder = self._act("folder", "Import model f&older…",
                                           lambda: self.open_import_dialog("folder"),
                                           "Ctrl+Shift+O")
        self.act_import_cache = self._act("hf-cache", "Import from &Hugging Face cache…",
                                          lambda: self.open_import_dialog("hf-cache"),
                                          "Ctrl+Shift+H")
        self.act_demo = self._act("demo", "Make &demo model", self.start_demo, "Ctrl+Shift+D")
        self.act_quit = self._act("quit", "&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.act_quit.setShortcut(QKeySequence("Ctrl+Q"))
        for action in (self.act_import_file, self.act_import_folder, self.act_import_cache,
                       self.act_demo):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.act_quit)

        model_menu = bar.addMenu("&Model")
        self.act_find = self._act("search", "&Find…", self.focus_filter, "Ctrl+F")
        model_menu.addAction(self.act_find)
        model_menu.addSeparator()
        for action in self.models_page.model_actions:
            model_menu.addAction(action)

        view_menu = bar.addMenu("&View")
        self.page_actions: list[QAction] = []
        for n, page in enumerate(self.pages.values(), start=1):
            # Ctrl+1..9, the tenth Ctrl+0; past ten, the pages with a shortcut of their own
            shortcut = f"Ctrl+{n % 10}" if n <= 10 else EXTRA_PAGE_SHORTCUTS.get(page.page_id)
            action = self._act(page.icon_name, page.title,
                               lambda _=False, pid=page.page_id: self.show_page(pid), shortcut)
            view_menu.addAction(action)
            self.page_actions.append(action)
        view_menu.addSeparator()
        self.act_refresh = self._act("refresh", "&Refresh", self.refresh,
                                     QKeySequence.StandardKey.Refresh)
        self.act_refresh.setShortcuts([QKeySequence("F5"), QKeySequence("Ctrl+R")])
        view_menu.addAction(self.act_refresh)

        help_menu = bar.addMenu("&Help")
        self.help = HelpMenu(self, help_menu, self.home)
        self.act_about = self._act("info", "&About LLMOps Desktop", self.show_about, "F1")
        help_menu.addAction(self.act_about)
        self.addActions([self.act_import_file, self.act_import_folder, self.act_import_cache,
                         self.act_demo, self.act_quit, self.act_find, self.act_refresh,
                         self.act_about, *self.page_actions])

    # ---- pages ----------------------------------------------------------------------------

    def show_page(self, page_id: str) -> Page:
        page = self.pages[page_id]
        self.sidebar.setCurrentRow(list(self.pages).index(page_id))
        return page

    def current_page_id(self) -> str:
        return list(self.pages)[self.stack.currentIndex()]

    def _current_page(self) -> Page:
        return list(self.pages.values())[self.stack.currentIndex()]

    def _on_page_changed(self, row: int) -> None:
        if row < 0:
            return
        self.stack.setCurrentIndex(row)
        page = self._current_page()
        page.on_shown()
        self.state.setValue("window/last_page", page.page_id)

    def refresh(self) -> None:
        self.ctx.jobs.poll()
        self._current_page().refresh()

    def focus_filter(self) -> None:
        self.show_page("models")
        self.models_page.stack.setCurrentIndex(1)
        self.models_page.focus_filter()

    def show_job(self, job_id: int) -> None:
        jobs_page = self.show_page("jobs")
        assert isinstance(jobs_page, JobsPage)
        jobs_page.select_job(job_id)

    def show_artifact(self, artifact_id: int) -> None:
        """Show an artifact on the Models page (after the table has re-read the catalog)."""
        self.show_page("models")
        if not self.models_page.select_artifact(artifact_id):
            self._select_after_reload = artifact_id
            self.models_page.reload()

    def serve_artifact(self, artifact_id: int) -> None:
        """Open the Deployments page with this artifact chosen in its form."""
        self.show_page("deployments")
        if not self.deployments_page.select_artifact(artifact_id):
            self.banner.show_error(f"Artifact #{artifact_id} is not ready to serve.")

    def serve_artifact_now(self, artifact_id: int) -> None:
        """Serve this artifact with the suggested settings and show it on Deployments."""
        self.show_page("deployments")
        self.raise_()
        self.activateWindow()  # from a dialog: the window is where it goes on
        self.deployments_page.serve_now(artifact_id)

    def chat_with_artifact(self, artifact_id: int) -> None:
        """Open the Playground on a running deployment of this artifact."""
        for key, d in self.deployments_page.deploy.deployments.items():
            if d.state == "running" and d.request.artifact_id == artifact_id:
                self.chat_with(key)
                return
        self.banner.show_error(f"Artifact #{artifact_id} is not being served; Serve it first.")

    def show_about(self) -> QMessageBox:
        return show_about(self)

    # ---- import ---------------------------------------------------------------------------

    def open_import_dialog(self, source: str = "folder", path: str = "") -> ImportDialog:
        """Open the Import dialog (window-modal, not blocking); Import starts the job."""
        dialog = ImportDialog(self.ctx, source, path, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self._on_import_accepted(dialog))
        dialog.open()
        return dialog

    def _on_import_accepted(self, dialog: ImportDialog) -> None:
        request = dialog.request()
        if request is not None:
            self.start_import(request)

    def import_paths(self, paths: list[Path]) -> None:
        """Import dropped paths with the default options; each is checked first."""
        for path in paths:
            request = ImportRequest.for_path(str(path))
            settings = self.ctx.settings
            run_in_thread(lambda r=request: check_request(r, settings),
                          lambda _, r=request: self.start_import(r),
                          lambda exc, p=path: self.banner.show_error(
                              f"Cannot import {p.name}: {exc}"),
                          receiver=self)

    def start_import(self, request: ImportRequest) -> int:
        if request.is_package:  # a package: its signer is checked first
            from llmops_desktop.qt.share_widgets import import_package_file

            name = f"Import of {Path(request.path).name}"
            import_package_file(self.ctx, request.path, self,
                                lambda job_id: self._started.__setitem__(job_id, name))
            return 0
        job = self.ctx.jobs.start(request)
        self._started[job.id] = f"Import of {Path(request.path).name}"
        self.statusBar().showMessage(f"Importing {request.path} (job #{job.id})…", 5000)
        return job.id

    def start_demo(self) -> int:
        from llmops_desktop.demo import DemoRequest

        job = self.ctx.jobs.start(DemoRequest())
        self._started[job.id] = "The demo model"
        self.statusBar().showMessage(f"Making the demo model (job #{job.id})…", 5000)
        return job.id

    # ---- jobs -----------------------------------------------------------------------------

    def _on_job_finished(self, job_id: int, state: str) -> None:
        what = self._started.pop(job_id, None)
        if what is None:
            return
        job = self.ctx.catalog.job(job_id)
        if state == "succeeded":
            result = job.result or {}
            self._select_after_reload = result.get("artifact_id")
            self.statusBar().showMessage(f"{what} finished: {result.get('ref', '')}", 8000)
        elif state == "cancelled":
            self.statusBar().showMessage(f"{what} was cancelled.", 8000)
        else:
            self.banner.show_error(f"{what} failed: {job.error or state}")

    def _on_models_reloaded(self) -> None:
        if self._select_after_reload is not None:
            self.models_page.select_artifact(self._select_after_reload)
            self._select_after_reload = None

    def _on_job_progress(self, job_id: int, fraction: object, message: str) -> None:
        self._update_jobs_status()

    def _update_jobs_status(self) -> None:
        active = self.ctx.jobs.active_jobs()
        fraction: float | None = None
        message = ""
        if len(active) == 1:
            job = active[0]
            live = self.ctx.jobs.live_progress(job.id)
            fraction, message = live if live is not None else (job.progress, job.message)
            message = f"{job.kind} #{job.id}" + (f" {fraction * 100:.0f}%" if fraction else "")
        self.jobs_status.set_state(len(active), fraction, message)

    def _update_mirror_status(self) -> None:
        mirror = self.download_page.mirror
        self.mirror_status.setVisible(mirror.is_running())
        self.mirror_status.setText(f"Mirror on {shareable_url(mirror.url)}" if mirror.is_ready()
                                   else "Mirror starting…")

    def _update_deploy_status(self) -> None:
        deployments = self.deployments_page.deploy.deployments.values()
        self.models_page.set_serving({d.request.artifact_id for d in deployments
                                      if d.state == "running"})
        states = [d.state for d in deployments]
        running = states.count("running")
        self.deploy_status.setVisible(running > 0 or "starting" in states)
        self.deploy_status.setText(f"{running} deployment{'s' if running != 1 else ''} serving"
                                   if running else "Deployment starting…")

    # ---- drag and drop --------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and droppable_paths(event.mimeData().urls()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: object) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = droppable_paths(event.mimeData().urls()) if event.mimeData().hasUrls() else []
        if not paths:
            self.banner.show_error("Drop a model folder or a .gguf file to import it.")
            event.ignore()
            return
        event.acceptProposedAction()
        self.import_paths(paths)

    # ---- state ----------------------------------------------------------------------------

    def _restore_state(self) -> None:
        geometry = self.state.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1200, 760)
        for page in self.pages.values():
            page.restore_state(self.state)
        last = self.state.value("window/last_page", "models")
        self.show_page(last if last in self.pages else "models")

    def save_state(self) -> None:
        self.state.setValue("window/geometry", self.saveGeometry())
        self.state.setValue("window/last_page", self.current_page_id())
        for page in self.pages.values():
            page.save_state(self.state)
        self.state.sync()

    def ask_keep_deployments(self, count: int) -> str:
        """Ask what to do with running deployments on quit: 'keep', 'stop' or 'cancel'."""
        box = QMessageBox(QMessageBox.Icon.Question, "Deployments are running",
                          f"{count} deployment{'s are' if count != 1 else ' is'} serving. "
                          "Keep serving after LLMOps Desktop closes?", parent=self)
        box.setInformativeText("Kept deployments go on answering requests and appear here "
                               "again on the next start, where you can stop them.")
        keep = box.addButton("Keep running", QMessageBox.ButtonRole.AcceptRole)
        stop = box.addButton("Stop them", QMessageBox.ButtonRole.DestructiveRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)  # a stray Enter neither quits nor leaves servers running
        box.setEscapeButton(cancel)
        box.exec()
        clicked = box.clickedButton()
        return "keep" if clicked is keep else "stop" if clicked is stop else "cancel"

    def closeEvent(self, event: QCloseEvent) -> None:
        deploy = self.deployments_page.deploy
        running = deploy.running_count()
        choice = "stop"
        if running:
            choice = (self.deployments_on_close if self.deployments_on_close != "ask"
                      else self.ask_keep_deployments(running))
            if choice == "cancel":
                event.ignore()
                return
        self.save_state()
        self.ctx.jobs.stop()  # running jobs carry on; the next window finds them
        self.download_page.mirror.stop(wait=True)  # the mirror does not outlive the app
        self.deployments_page.gateway.stop(wait=True)  # nor does the gateway (#17)
        if choice == "keep":
            deploy.detach_all()
        else:
            deploy.stop_all(wait=True)
        super().closeEvent(event)
