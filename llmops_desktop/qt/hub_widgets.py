"""What the Download page shows of a hub: the models a search found, and the open repo's
files as a tree with tick boxes (folders tick their files), sizes, what is chosen and how
big it is, the name in the catalog, and Download.

A repo with several GGUF files opens with none ticked: each download makes one model, so
the user picks the quant; with one GGUF or none, everything is ticked.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.acquire.hub import ModelSummary, RepoSnapshot
from llmops_desktop.qt.context import icon
from llmops_desktop.qt.download_rows import muted_label
from llmops_desktop.qt.formatting import human_count, human_size, local_time

PATH_ROLE = Qt.ItemDataRole.UserRole + 1


class SearchResults(QTreeWidget):
    """The models a search found: name, downloads, likes, last update."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setHeaderLabels(["Model", "Downloads", "Likes", "Updated"])
        self.setRootIsDecorated(False)
        self.setAlternatingRowColors(True)
        self.setUniformRowHeights(True)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column, width in ((1, 84), (2, 56), (3, 128)):
            self.setColumnWidth(column, width)

    def show_models(self, found: list[ModelSummary]) -> None:
        self.blockSignals(True)
        self.clear()
        for m in found:
            item = QTreeWidgetItem([m.repo_id, human_count(m.downloads) or "0",
                                    str(m.likes or 0), local_time(m.last_modified)])
            item.setData(0, PATH_ROLE, m.repo_id)
            item.setToolTip(0, ", ".join(m.tags))
            for column in (1, 2):
                item.setTextAlignment(column, Qt.AlignmentFlag.AlignRight
                                      | Qt.AlignmentFlag.AlignVCenter)
            self.addTopLevelItem(item)
        self.blockSignals(False)

    @staticmethod
    def repo_id(item: QTreeWidgetItem) -> str:
        return str(item.data(0, PATH_ROLE))


class RepoFilesPanel(QWidget):
    """A repo's files to choose from, and the Download button."""

    sig_download_requested = Signal()
    """The user pressed Download."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.snapshot: RepoSnapshot | None = None
        self.offline = False
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
        self.files.itemChanged.connect(self._on_item_changed)
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
        self.download_button.clicked.connect(lambda: self.sig_download_requested.emit())
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Select:"))
        pick.addWidget(self.all_button)
        pick.addWidget(self.none_button)
        pick.addWidget(self.selection_label, 1)
        go = QHBoxLayout()
        go.addWidget(QLabel("Name:"))
        go.addWidget(self.name_edit, 1)
        go.addWidget(self.download_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(4, 0, 0, 0)
        column.addWidget(self.repo_title)
        column.addWidget(self.repo_info)
        column.addWidget(self.files, 1)
        column.addLayout(pick)
        column.addLayout(go)
        self.show_repo(None)


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
        self.update_selection()

    def show_lookup(self, repo_id: str, text: str) -> None:
        """While a repo is being asked about."""
        self.repo_title.setText(repo_id)
        self.repo_info.setText(text)

    def set_offline(self, offline: bool) -> None:
        """Offline: the files can be looked at, not downloaded."""
        self.offline = offline
        self.update_selection()

    def _file_items(self) -> list[QTreeWidgetItem]:
        out, stack = [], [self.files.topLevelItem(i) for i in range(self.files.topLevelItemCount())]
        while stack:
            item = stack.pop(0)
            if item.data(0, PATH_ROLE):
                out.append(item)
            stack[:0] = [item.child(i) for i in range(item.childCount())]
        return out

    def show_repo(self, snap: RepoSnapshot | None) -> None:
        self.snapshot = snap
        self.files.blockSignals(True)
        self.files.clear()
        if snap is None:
            self.repo_title.setText("No repo open")
            self.repo_info.setText("Search, then click a model; or type org/name and press "
                                   "Open repo. Tick the files you want, then Download.")
            self.name_edit.setPlaceholderText("")
            self.files.blockSignals(False)
            self.update_selection()
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
        self.update_selection()

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

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column == 0:
            self.update_selection()

    def update_selection(self) -> None:
        snap = self.snapshot
        offline = self.offline
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
