"""The Registries page: what each shared-folder registry offers, what is already here, Pull.

Registries are folders (a mounted share, a USB drive) listed in Settings; reading their
indexes happens in a thread, since a network share can be slow. Pulling imports the
package as a job, after the same signature questions as a dropped package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.formatting import human_size, local_time
from llmops_desktop.qt.share_widgets import import_package_file
from llmops_desktop.qt.workers import run_in_thread

COLUMNS = ["Package", "Model", "Type", "Size", "Status", "Signed", "Here", "Registry",
           "Published"]


NOT_VERIFIED = "not verified yet"


def _signed_and_status(row: dict[str, Any]) -> tuple[str, str]:
    """The Signed and Status cells: from the verified package only, never from the index."""
    if row.get("refused"):
        return "refused", "refused"
    if not row.get("verified"):
        return NOT_VERIFIED, NOT_VERIFIED
    return ("signed" if row.get("signed_by") else "unsigned"), str(row.get("status") or "")


class RegistriesPage(Page):
    page_id = "registries"
    title = "Registries"
    icon_name = "mirror"
    tooltip = "Packages in shared folders: see what colleagues published, pull it, verified"

    sig_index_read = Signal(int)
    """The indexes were read and shown, not verified yet (number of packages)."""
    sig_listed = Signal(int)
    """The table was filled, every package verified (number of packages)."""
    sig_pull_started = Signal(int)
    """A pull's import job started (job id)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.rows: list[dict[str, Any]] = []
        self._pulls: dict[int, str] = {}
        self._seq = 0
        self.registry_combo = QComboBox()
        self.registry_combo.currentIndexChanged.connect(lambda *_: self.refresh())
        refresh = QPushButton(icon("refresh"), "Refresh")
        refresh.clicked.connect(self.refresh)
        add = QPushButton(icon("folder"), "Add registry…")
        add.setToolTip("A folder colleagues can reach too: a mounted share or a USB drive")
        add.clicked.connect(self._on_add_clicked)
        self.pull_button = QPushButton(icon("download"), "Pull")
        self.pull_button.setToolTip("Import the selected package, verifying its signature and "
                                    "every file's sha256")
        self.pull_button.clicked.connect(self.pull_selected)
        top = QHBoxLayout()
        top.addWidget(QLabel("Registry:"))
        top.addWidget(self.registry_combo, 1)
        top.addWidget(refresh)
        top.addWidget(add)
        top.addWidget(self.pull_button)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setSortingEnabled(True)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.itemSelectionChanged.connect(self._update_actions)
        self.tree.itemDoubleClicked.connect(lambda *_: self.pull_selected())
        self.status = QLabel()
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(top)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.status)
        ctx.events.sig_settings_saved.connect(lambda *_: self._fill_registries())
        ctx.jobs.sig_job_finished.connect(self._on_job_finished)
        self._fill_registries()

    # ---- registries -------------------------------------------------------------------------

    def _fill_registries(self) -> None:
        from llmops_desktop.share.registry import registries

        current = self.registry_combo.currentData()
        self.registry_combo.blockSignals(True)
        self.registry_combo.clear()
        self.registry_combo.addItem("All registries", "")
        try:
            regs = registries(self.ctx.reload_settings())
        except Exception as exc:  # noqa: BLE001 - a malformed setting
            regs = {}
            self.status.setText(str(exc))
        for name, path in regs.items():
            self.registry_combo.addItem(f"{name}  ({path})", name)
        index = self.registry_combo.findData(current)
        self.registry_combo.setCurrentIndex(max(index, 0))
        self.registry_combo.blockSignals(False)
        self.refresh()

    def add_registry(self, name: str, path: str | Path) -> None:
        """Add a registry folder to the settings (the folder is made if missing)."""
        from llmops_desktop.settings import save_settings
        from llmops_desktop.share.registry import format_registries, registries

        settings = self.ctx.reload_settings()
        regs = registries(settings)
        folder = Path(path).expanduser().absolute()
        folder.mkdir(parents=True, exist_ok=True)
        regs[name.strip()] = folder
        settings = settings.updated(registries=format_registries(regs))
        save_settings(self.ctx.home.settings_path, settings)
        self.ctx.settings = settings
        self.ctx.events.sig_settings_saved.emit(settings)

    def _on_add_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A registry folder (share or drive)",
                                                  str(Path.home()))
        if not folder:
            return
        name, ok = QInputDialog.getText(self, "Add registry", "Name of this registry:",
                                        text=Path(folder).name or "team")
        if ok and name.strip():
            self.add_registry(name, folder)

    # ---- listing ----------------------------------------------------------------------------

    def on_shown(self) -> None:
        self.refresh()

    def refresh(self) -> None:
        """Read the indexes and show them ("not verified yet"), then read each package's
        manifest and signature and show what the packages themselves say."""
        from llmops_desktop.share.registry import list_packages, verify_rows

        self._seq += 1
        seq = self._seq
        home, settings = self.ctx.home, self.ctx.settings
        name = self.registry_combo.currentData() or None
        self.status.setText("Reading the registries…")

        def work() -> list[dict[str, Any]]:
            with Catalog.open(home) as catalog:
                return list_packages(catalog, settings, name)

        def verify(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            with Catalog.open(home) as catalog:
                return verify_rows(catalog, rows)

        def verified(rows: list[dict[str, Any]]) -> None:
            if seq == self._seq:
                self._show(rows, final=True)

        def done(rows: list[dict[str, Any]]) -> None:
            if seq == self._seq:
                self._show(rows, final=False)
                run_in_thread(lambda: verify(rows), verified, failed, receiver=self)

        def failed(exc: BaseException) -> None:
            if seq == self._seq:
                self._show([], final=True)
                self.status.setText(str(exc))

        run_in_thread(work, done, failed, receiver=self)

    def _show(self, rows: list[dict[str, Any]], final: bool = True) -> None:
        self.rows = [r for r in rows if "error" not in r]
        errors = [r["error"] for r in rows if "error" in r]
        self.tree.setSortingEnabled(False)
        self.tree.clear()
        for r in self.rows:
            here = f"✓ {r['local_ref']}" if r.get("local") else ""
            signed, status = _signed_and_status(r)
            item = QTreeWidgetItem([
                str(r.get("name", "")), str(r.get("ref") or ""),
                str(r.get("type") or r.get("kind") or ""), human_size(r.get("size_bytes") or 0),
                status, signed, here, str(r.get("registry", "")),
                local_time(r.get("published_at") or r.get("created_at"))])
            item.setData(0, Qt.ItemDataRole.UserRole, r)
            if r.get("refused"):
                item.setDisabled(True)
                for col in (0, 4, 5):
                    item.setToolTip(col, str(r["refused"]))
            elif r.get("verified") and r.get("signed_by"):
                who = r.get("signer_trusted_as") or "a key not in your trust list"
                item.setToolTip(5, f"{r['signed_by']} ({who})")
            elif not r.get("verified"):
                item.setToolTip(5, "What the registry's index says has not been checked "
                                   "against the package yet.")
            if not r.get("available") and not r.get("refused"):
                item.setDisabled(True)
                item.setToolTip(0, "Listed, but the file is not in the folder (being copied "
                                   "or removed)")
            self.tree.addTopLevelItem(item)
        self.tree.setSortingEnabled(True)
        n = len(self.rows)
        local = sum(1 for r in self.rows if r.get("local"))
        refused = [r for r in self.rows if r.get("refused")]
        if refused:
            errors += [f"Refused {r.get('name')}: {r['refused']}" for r in refused]
        more = "" if final else " Verifying the packages…"
        text = (f"{n} package{'s' if n != 1 else ''}, {local} already here.{more}" if n else
                "No packages. Publish one with 'llmops publish ARTIFACT --to NAME', or from "
                "a model's Export dialog." if self.registry_combo.count() > 1 else
                "No registries yet: Add registry… names a shared folder.")
        self.status.setText("\n".join([text, *errors]))
        self._update_actions()
        (self.sig_listed if final else self.sig_index_read).emit(n)

    def row_texts(self, column: int) -> list[str]:
        return [self.tree.topLevelItem(i).text(column)
                for i in range(self.tree.topLevelItemCount())]

    def select_package(self, name: str) -> bool:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item.text(0) == name:
                self.tree.setCurrentItem(item)
                return True
        return False

    def _update_actions(self) -> None:
        item = self.tree.currentItem()
        self.pull_button.setEnabled(item is not None and not item.isDisabled())

    # ---- pull -------------------------------------------------------------------------------

    def pull_selected(self) -> None:
        item = self.tree.currentItem()
        if item is None or item.isDisabled():
            return
        row = item.data(0, Qt.ItemDataRole.UserRole)
        path = str(row["path"])
        self.status.setText(f"Checking {row.get('name')}…")

        def started(job_id: int) -> None:
            self._pulls[job_id] = str(row.get("name"))
            self.status.setText(f"Pulling {row.get('name')} (job #{job_id}), verifying every "
                                "file…")
            self.sig_pull_started.emit(job_id)

        import_package_file(self.ctx, path, self, started)

    def _on_job_finished(self, job_id: int, state: str) -> None:
        name = self._pulls.pop(job_id, None)
        if name is None:
            return
        if state == "succeeded":
            self.ctx.events.sig_info.emit(f"Pulled {name}.")
        else:
            error = self.ctx.catalog.job(job_id).error or state
            self.ctx.events.sig_error.emit(f"Pulling {name} failed: {error}")
        self.refresh()
