"""Sharing in the window: an artifact's governance status, the trust list, and importing a
package (asking about an unknown or missing signature first)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.qt.context import AppContext, icon
from llmops_desktop.qt.formatting import local_time
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.share import keys
from llmops_desktop.share.governance import STATUSES, get_status, set_status, status_history
from llmops_desktop.share.requests import PackageImportRequest

_STATUS_COLORS = {"draft": "#8a6d00", "approved": "#1b7f3b", "deprecated": "#b3261e"}


class StatusBox(QWidget):
    """The governance line of the model details: status, change it with a comment, export."""

    sig_status_changed = Signal(int, str)
    """The user changed an artifact's status (artifact id, new status)."""
    sig_export_requested = Signal(int)
    """The user asked to export the shown artifact (artifact id)."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.artifact_id: int | None = None
        self.status_label = QLabel()
        self.status_label.setTextFormat(Qt.TextFormat.RichText)
        self.combo = QComboBox()
        self.combo.addItems(STATUSES)
        self.combo.setToolTip("The artifact's governance status. 'Serve only approved "
                              "artifacts' in Settings makes the server refuse the others.")
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("Why? (required to change the status)")
        self.change_button = QPushButton("Change status")
        self.change_button.clicked.connect(self.apply)
        self.comment.returnPressed.connect(self.apply)
        self.export_button = QPushButton(icon("export"), "Export…")
        self.export_button.setToolTip("Export as a signed package, an Ollama folder or a "
                                      "Hugging Face folder")
        self.export_button.clicked.connect(
            lambda: self.artifact_id is not None and self.sig_export_requested.emit(
                self.artifact_id))
        self.error_label = QLabel()
        self.error_label.setStyleSheet("color: #b3261e;")
        self.error_label.setWordWrap(True)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.status_label)
        row.addWidget(self.combo)
        row.addWidget(self.comment, 1)
        row.addWidget(self.change_button)
        row.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 4)
        layout.addLayout(row)
        layout.addWidget(self.error_label)
        self.error_label.hide()
        self.set_artifact(None)

    def set_artifact(self, artifact_id: int | None) -> None:
        self.artifact_id = artifact_id
        self.error_label.hide()
        self.comment.clear()
        enabled = artifact_id is not None
        for w in (self.combo, self.comment, self.change_button, self.export_button):
            w.setEnabled(enabled)
        if artifact_id is None:
            self.status_label.setText("")
            return
        try:
            status = get_status(self.catalog, artifact_id)
        except Exception:  # noqa: BLE001 - removed meanwhile
            status = "draft"
        self.combo.setCurrentText(status)
        history = status_history(self.catalog, artifact_id)
        tip = "\n".join(f"{local_time(h.ts)}  {h.user}@{h.host}: {h.old} → {h.new} — {h.comment}"
                        for h in history[:10]) or "No status changes yet."
        self.status_label.setToolTip(tip)
        self.status_label.setText(f"Status: <b style='color:{_STATUS_COLORS[status]}'>"
                                  f"{status}</b>")

    def status(self) -> str:
        return get_status(self.catalog, self.artifact_id) if self.artifact_id else ""

    def apply(self) -> bool:
        """Change the status to the combo's, with the comment; False (and a message) if not."""
        if self.artifact_id is None:
            return False
        try:
            set_status(self.catalog, self.artifact_id, self.combo.currentText(),
                       self.comment.text())
        except Exception as exc:  # noqa: BLE001 - the core's message says what to do
            self.error_label.setText(str(exc))
            self.error_label.show()
            return False
        artifact_id = self.artifact_id
        self.set_artifact(artifact_id)
        self.sig_status_changed.emit(artifact_id, self.combo.currentText())
        return True


class TrustBox(QGroupBox):
    """Settings: this user's signing key and the colleagues' keys that are trusted."""

    sig_trust_changed = Signal()
    """A key was added to or removed from the trust list."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__("Signing keys", parent)
        self.ctx = ctx
        self.own_label = QLabel()
        self.own_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.own_label.setWordWrap(True)
        export = QPushButton(icon("export"), "Export public key…")
        export.setToolTip("Save your public key to a file to give colleagues, so they can "
                          "check the packages you sign")
        export.clicked.connect(self._on_export_clicked)
        own = QHBoxLayout()
        own.addWidget(self.own_label, 1)
        own.addWidget(export)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["Name", "Fingerprint", "Added"])
        self.tree.setRootIsDecorated(False)
        self.tree.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setMinimumHeight(90)
        add = QPushButton(icon("import"), "Import key file…")
        add.setToolTip("Trust a colleague's public key (the file their 'Export public key…' "
                       "wrote). Compare the fingerprint with them first.")
        add.clicked.connect(self._on_import_clicked)
        self.remove_button = QPushButton(icon("remove"), "Remove")
        self.remove_button.clicked.connect(self.remove_selected)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(self.remove_button)
        buttons.addStretch(1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(own)
        layout.addWidget(QLabel("Trusted keys: packages signed by these are imported without "
                                "asking."))
        layout.addWidget(self.tree)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        self.reload()

    def reload(self) -> None:
        try:
            if not (keys.keys_dir(self.ctx.home) / keys.PRIVATE_NAME).exists():
                self.own_label.setText("You have no signing key yet: it is made the first time "
                                       "you sign a package or export your public key.")
                raise LookupError
            pair = keys.ensure_keypair(self.ctx.home)
            self.own_label.setText(f"Your key: <b>{pair.fingerprint}</b><br>"
                                   f"<small>{pair.public_line.split()[-1]}; private key in "
                                   f"{keys.keys_dir(self.ctx.home)} (readable by you only)"
                                   "</small>")
        except LookupError:
            pass
        except Exception as exc:  # noqa: BLE001
            self.own_label.setText(f"Your key cannot be read: {exc}")
        self.tree.clear()
        try:
            trusted = keys.trusted_keys(self.ctx.home)
        except Exception as exc:  # noqa: BLE001
            self.message.setText(str(exc))
            trusted = []
        for k in trusted:
            item = QTreeWidgetItem([k.name, k.fingerprint, local_time(k.added_at)])
            item.setToolTip(1, k.public_line)
            item.setData(0, Qt.ItemDataRole.UserRole, k.fingerprint)
            self.tree.addTopLevelItem(item)

    def names(self) -> list[str]:
        return [self.tree.topLevelItem(i).text(0) for i in range(self.tree.topLevelItemCount())]

    def export_public_key_to(self, path: str | Path) -> Path:
        dest = keys.export_public_key(self.ctx.home, Path(path))
        self.message.setText(f"Your public key was saved to {dest}.")
        self.reload()
        return dest

    def trust_file(self, name: str, path: str | Path) -> bool:
        try:
            entry = keys.trust_key(self.ctx.home, name, path)
        except Exception as exc:  # noqa: BLE001 - the core's message says what to do
            self.message.setText(str(exc))
            return False
        self.message.setText(f"Trusted {entry.name}: {entry.fingerprint}")
        self.reload()
        self.sig_trust_changed.emit()
        return True

    def remove_selected(self) -> None:
        item = self.tree.currentItem()
        if item is None:
            return
        keys.untrust_key(self.ctx.home, item.data(0, Qt.ItemDataRole.UserRole))
        self.message.setText(f"Removed {item.text(0)} from the trust list.")
        self.reload()
        self.sig_trust_changed.emit()

    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export your public key",
                                              str(Path.home() / keys.PUBLIC_NAME),
                                              "Public keys (*.pub);;All files (*)")
        if path:
            self.export_public_key_to(path)

    def _on_import_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Trust a colleague's public key",
                                              str(Path.home()), "Public keys (*.pub);;All files (*)")
        if not path:
            return
        try:
            _, line, comment = keys.load_public_line(Path(path).read_text(encoding="utf-8"))
        except Exception as exc:  # noqa: BLE001
            self.message.setText(str(exc))
            return
        name, ok = QInputDialog.getText(
            self, "Trust key", f"Fingerprint: {keys.fingerprint_of_line(line)}\n"
            "Check it with its owner, then name the key:", text=comment.split("@")[0])
        if ok and name.strip():
            self.trust_file(name.strip(), path)


class PackageImporter(QObject):
    """Import a package file: read its manifest and signature in a thread, ask about an
    unknown signer or a missing signature, then start the import-package job."""

    sig_question = Signal(object)
    """A question is shown (the QMessageBox); answer it to go on."""
    sig_started = Signal(int, str)
    """The import job started (job id, package path)."""
    sig_refused = Signal(str, str)
    """The package was refused before any job (path, message)."""

    def __init__(self, ctx: AppContext, parent_widget: QWidget) -> None:
        super().__init__(parent_widget)
        self.ctx = ctx
        self.parent_widget = parent_widget

    def start(self, path: str | Path, on_started: Callable[[int], None] | None = None) -> None:
        from llmops_desktop.share.requests import prepare_package_import

        home = self.ctx.home
        path = str(Path(path).expanduser().absolute())
        require = bool(getattr(self.ctx.reload_settings(), "require_signatures", False))
        run_in_thread(lambda: prepare_package_import(home, path, require_signatures=require),
                      lambda prepared: self._on_inspected(path, prepared, on_started),
                      lambda exc: self._refuse(path, str(exc) or type(exc).__name__),
                      receiver=self.parent_widget)

    def _refuse(self, path: str, message: str) -> None:
        self.ctx.events.sig_error.emit(f"Cannot import {Path(path).name}: {message}")
        self.sig_refused.emit(path, message)

    def _on_inspected(self, path: str, prepared: Any,
                      on_started: Callable[[int], None] | None) -> None:
        request, question, _info = prepared  # the core decided what, if anything, to ask
        if question is None:
            self._start_job(request, on_started)
            return
        text = question.text
        box = QMessageBox(QMessageBox.Icon.Question, "Import package", text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                          self.parent_widget)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)

        def answered(_result: int) -> None:
            clicked = box.clickedButton()
            if clicked is not None and box.standardButton(clicked) == QMessageBox.StandardButton.Yes:
                self._start_job(question.if_accepted, on_started)
            else:
                self.sig_refused.emit(path, "declined by the user")

        box.finished.connect(answered)
        box.open()
        self.sig_question.emit(box)

    def _start_job(self, request: PackageImportRequest,
                   on_started: Callable[[int], None] | None) -> None:
        job = self.ctx.jobs.start(request)
        if on_started is not None:
            on_started(job.id)
        self.sig_started.emit(job.id, request.path)


def import_package_file(ctx: AppContext, path: str | Path, parent: QWidget,
                        on_started: Callable[[int], None] | None = None) -> PackageImporter:
    """Start importing a package from the window (drop, Import dialog, Registries page)."""
    importer = parent.findChild(PackageImporter, "",
                                Qt.FindChildOption.FindDirectChildrenOnly)
    if importer is None:
        importer = PackageImporter(ctx, parent)
    importer.start(path, on_started)
    return importer
