"""The Import dialog: a model folder, a .gguf file, or a model in the Hugging Face cache.

Choosing Import checks the request first (``ImportRequest.check``, in a thread), so
a wrong folder is explained here at once; only a source that passes becomes an
import job. The options form is built from the request's fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QSizePolicy,
    QStackedWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.hfcache import CachedModel, default_cache_dir, scan_hf_cache
from llmops_desktop.import_request import ImportRequest
from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.forms import Override, SpecForm
from llmops_desktop.qt.formatting import human_size
from llmops_desktop.qt.job_model import ERROR_COLOR
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.settings import Settings

SOURCES = [("folder", "Model folder"), ("file", "GGUF file"), ("hf-cache", "Hugging Face cache")]
SOURCE_HINTS = {
    "folder": "A Hugging Face model folder (config.json with .safetensors weights) or a LoRA "
              "adapter folder (adapter_config.json).",
    "file": "A single llama.cpp .gguf file.",
}
MODE_HELP = {
    "copy": "Copy the files into the store (safe; needs the space)",
    "hardlink": "Hard-link the files (same disk only; no extra space)",
    "reference": "Reference the files in place (nothing copied; moving them breaks it)",
}
OVERRIDES = {"name": Override(none_text="from the model (folder, GGUF metadata or repo id)"),
             "mode": Override(choice_texts=MODE_HELP, none_text="As Settings say"),
             "tags": Override(none_text="comma-separated, optional")}
FORM_FIELDS = ("name", "mode", "tags", "allow_pickle")


def check_request(request: ImportRequest, settings: Settings) -> Any:
    """Validate cheaply (headers, layout); raises the core's user-facing errors."""
    return request.check(settings=settings)


class ImportDialog(QDialog):
    """Pick a source and options; accepted only once the source checks out."""

    sig_cache_scanned = Signal(int)
    """The Hugging Face cache was scanned (number of snapshots found)."""
    sig_check_failed = Signal(str)
    """The chosen source was refused (the message shown)."""

    def __init__(self, ctx: AppContext, source: str = "folder", path: str = "",
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.setWindowTitle("Import a model")
        self.setWindowIcon(icon("import"))
        self.setMinimumWidth(620)
        self._request: ImportRequest | None = None
        self._scanned = False
        self.source_group = QButtonGroup(self)
        sources = QHBoxLayout()
        for i, (key, label) in enumerate(SOURCES):
            radio = QRadioButton(label)
            radio.setIcon(icon({"folder": "folder", "file": "file"}.get(key, "hf-cache")))
            self.source_group.addButton(radio, i)
            sources.addWidget(radio)
        sources.addStretch(1)
        self.source_group.idToggled.connect(self._on_source_toggled)

        self.path_edit = QLineEdit(path)
        self.path_edit.setPlaceholderText("/path/to/model-folder or /path/to/model.gguf")
        self.path_edit.textChanged.connect(lambda _: self.error_label.setText(""))
        browse = QPushButton(icon("folder"), "Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        self.path_hint = QLabel()
        self.path_hint.setWordWrap(True)
        path_page = QWidget()
        path_layout = QVBoxLayout(path_page)
        path_layout.setContentsMargins(0, 0, 0, 0)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(browse)
        path_layout.addLayout(path_row)
        path_layout.addWidget(self.path_hint)

        self.cache_tree = QTreeWidget()
        self.cache_tree.setHeaderLabels(["Repository", "Revision", "Size", "Files"])
        self.cache_tree.setRootIsDecorated(False)
        self.cache_tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.cache_tree.setMinimumHeight(160)
        self.cache_tree.itemDoubleClicked.connect(lambda *_: self._on_import_clicked())
        self.cache_status = QLabel()
        rescan = QPushButton(icon("refresh"), "Rescan")
        rescan.clicked.connect(self.scan_cache)
        cache_page = QWidget()
        cache_layout = QVBoxLayout(cache_page)
        cache_layout.setContentsMargins(0, 0, 0, 0)
        cache_layout.addWidget(self.cache_tree, 1)
        status_row = QHBoxLayout()
        status_row.addWidget(self.cache_status, 1)
        status_row.addWidget(rescan)
        cache_layout.addLayout(status_row)
        self.source_stack = QStackedWidget()
        self.source_stack.addWidget(path_page)
        self.source_stack.addWidget(cache_page)

        settings = ctx.settings
        self.options = SpecForm(ImportRequest, names=FORM_FIELDS, overrides=OVERRIDES)
        self.options.set_values({"mode": settings.import_mode,
                                 "allow_pickle": settings.allow_pickle})
        self.name_edit = self.options.input("name")
        self.mode_combo = self.options.input("mode")
        self.tags_edit = self.options.input("tags")
        self.pickle_check = self.options.input("allow_pickle")

        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet(f"color: {ERROR_COLOR};")
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.import_button = self.buttons.addButton(
            "Import", QDialogButtonBox.ButtonRole.AcceptRole)
        self.import_button.setIcon(icon("import"))
        self.import_button.setDefault(True)
        self.buttons.accepted.connect(self._on_import_clicked)
        self.buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(sources)
        layout.addWidget(self.source_stack)
        layout.addWidget(self.options)
        layout.addWidget(self.error_label)
        layout.addWidget(self.buttons)
        ids = [key for key, _ in SOURCES]
        self.source_group.button(ids.index(source) if source in ids else 0).setChecked(True)

    # ---- public ---------------------------------------------------------------------------

    def source_kind(self) -> str:
        return SOURCES[max(0, self.source_group.checkedId())][0]

    def set_source(self, kind: str, path: str = "") -> None:
        self.source_group.button([k for k, _ in SOURCES].index(kind)).setChecked(True)
        if path:
            self.path_edit.setText(path)

    def request(self) -> ImportRequest | None:
        """The accepted request (None before the source has passed its check)."""
        return self._request

    def current_request(self) -> ImportRequest | None:
        if self.source_kind() == "hf-cache":
            item = self.cache_tree.currentItem()
            if item is None:
                return None
            path = str(item.data(0, Qt.ItemDataRole.UserRole))
        else:
            path = self.path_edit.text().strip()
            if not path:
                return None
        return ImportRequest.for_path(path, **self.options.values())

    def scan_cache(self) -> None:
        """List the snapshots of the Hugging Face cache (a file-system walk: in a thread)."""
        cache = default_cache_dir(self.ctx.settings.hf_cache_dir)
        self.cache_status.setText(f"Scanning {cache} …")
        self.cache_tree.clear()
        run_in_thread(lambda: scan_hf_cache(cache), lambda found: self._on_scanned(cache, found),
                      lambda exc: self._on_scanned(cache, [], exc), receiver=self)

    # ---- slots ----------------------------------------------------------------------------

    def _on_source_toggled(self, button_id: int, checked: bool) -> None:
        if not checked:
            return
        kind = SOURCES[button_id][0]
        is_cache = kind == "hf-cache"
        self.path_hint.setText(SOURCE_HINTS.get(kind, ""))
        # Only the shown page counts for the dialog's size (no blank space for the list).
        for i in range(self.source_stack.count()):
            policy = (QSizePolicy.Policy.Preferred if i == int(is_cache)
                      else QSizePolicy.Policy.Ignored)
            self.source_stack.widget(i).setSizePolicy(policy, policy)
        self.source_stack.setCurrentIndex(1 if is_cache else 0)
        self.adjustSize()
        self.error_label.setText("")
        if is_cache and not self._scanned:
            self._scanned = True
            self.scan_cache()

    def _on_scanned(self, cache: Path, found: list[CachedModel],
                    exc: BaseException | None = None) -> None:
        for model in found:
            revision = ", ".join(model.refs) or model.revision[:12]
            item = QTreeWidgetItem([model.repo_id, revision, human_size(model.size_bytes),
                                    str(model.files)])
            item.setData(0, Qt.ItemDataRole.UserRole, str(model.snapshot))
            item.setToolTip(0, str(model.snapshot))
            self.cache_tree.addTopLevelItem(item)
        if exc is not None:
            self.cache_status.setText(f"Could not read {cache}: {exc}")
        elif not found:
            self.cache_status.setText(f"No models in {cache}. Change the folder in Settings.")
        else:
            self.cache_status.setText(f"{len(found)} snapshot(s) in {cache}")
            self.cache_tree.setCurrentItem(self.cache_tree.topLevelItem(0))
        self.sig_cache_scanned.emit(len(found))

    def _on_browse_clicked(self) -> None:
        start = self.path_edit.text() or str(Path.home())
        if self.source_kind() == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF file", start,
                                                  "GGUF models and packages (*.gguf *.llmpkg);;"
                                                  "All files (*)")
        else:
            path = QFileDialog.getExistingDirectory(self, "Import a model folder", start)
        if path:
            self.path_edit.setText(path)

    def _on_import_clicked(self) -> None:
        request = self.current_request()
        if request is None:
            self._show_error("Choose a model first." if self.source_kind() == "hf-cache"
                             else "Enter or browse to a model folder or .gguf file.")
            return
        self.import_button.setEnabled(False)
        self.error_label.setText("Checking…")
        settings = self.ctx.settings
        run_in_thread(lambda: check_request(request, settings),
                      lambda _: self._on_checked(request),
                      self._on_check_failed, receiver=self)

    def _on_checked(self, request: ImportRequest) -> None:
        self._request = request
        self.error_label.setText("")
        self.import_button.setEnabled(True)
        self.accept()

    def _on_check_failed(self, exc: BaseException) -> None:
        self.import_button.setEnabled(True)
        self._show_error(str(exc) or type(exc).__name__)

    def _show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.sig_check_failed.emit(message)
