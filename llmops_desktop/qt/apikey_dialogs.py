"""API keys per person in the window: create (shown once), list with usage, revoke.

The same core functions as ``llmops apikey`` (:mod:`llmops_desktop.gateway.keys`): the
catalog keeps only salted hashes, so the dialog that shows a new key is the only time
anyone sees it.
"""

from __future__ import annotations

from PySide6.QtCore import QDate, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDateEdit,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import LLMOpsError
from llmops_desktop.gateway.keys import ApiKey, create_key, list_keys, revoke_key

KEY_COLUMNS = ("Name", "Models", "RPM", "TPM", "Requests", "Tokens", "Last used", "Expires",
               "State")
WARN_COLOR = "#b58900"


def key_state(key: ApiKey) -> str:
    return "revoked" if key.revoked_at else "expired" if key.expired() else "active"


def _when(iso: str | None, never: str = "never") -> str:
    return (iso or never)[:19].replace("T", " ")


class CreateKeyDialog(QDialog):
    """Name, scope and limits of a new key; OK makes it (errors stay in the dialog)."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New API key")
        self.catalog = catalog
        self.created: tuple[ApiKey, str] | None = None
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("a person or an app, e.g. alice")
        self.name_edit.setToolTip("Whose key: shown in the request log and usage, never the key")
        self.models_edit = QLineEdit("*")
        self.models_edit.setToolTip("Models the key may use: globs over NAME or NAME@VERSION, "
                                    "comma-separated (* for all)")
        self.rpm_spin, self.tpm_spin = QSpinBox(), QSpinBox()
        for spin, what in ((self.rpm_spin, "Requests"), (self.tpm_spin, "Tokens")):
            spin.setRange(0, 10_000_000)
            spin.setSpecialValueText("no limit")
            spin.setToolTip(f"{what} per minute at most; over it the gateway answers 429 "
                            "with Retry-After")
        self.expires_check = QCheckBox("Expires on")
        self.expires_edit = QDateEdit(QDate.currentDate().addMonths(3))
        self.expires_edit.setCalendarPopup(True)
        self.expires_edit.setMinimumDate(QDate.currentDate().addDays(1))
        self.expires_edit.setEnabled(False)
        self.expires_check.toggled.connect(self.expires_edit.setEnabled)
        self.error_label = QLabel()
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #c62828;")
        self.error_label.hide()
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("Models", self.models_edit)
        form.addRow("Requests per minute", self.rpm_spin)
        form.addRow("Tokens per minute", self.tpm_spin)
        expires = QHBoxLayout()
        expires.addWidget(self.expires_check)
        expires.addWidget(self.expires_edit, 1)
        form.addRow("", expires)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create key")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

    def accept(self) -> None:
        expires = (self.expires_edit.date().toString("yyyy-MM-dd")
                   if self.expires_check.isChecked() else None)
        try:
            self.created = create_key(self.catalog, self.name_edit.text(),
                                      models=self.models_edit.text(),
                                      rpm=self.rpm_spin.value() or None,
                                      tpm=self.tpm_spin.value() or None, expires=expires)
        except LLMOpsError as exc:
            self.error_label.setText(str(exc))
            self.error_label.show()
            self.name_edit.setFocus()
            return
        super().accept()


class KeyShownDialog(QDialog):
    """The new key, once: a Copy button and the warning that it is kept nowhere."""

    def __init__(self, key: ApiKey, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"API key for {key.name}")
        self.key_edit = QLineEdit(text)
        self.key_edit.setReadOnly(True)
        self.key_edit.setMinimumWidth(420)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the key to the clipboard (Ctrl+C)")
        self.copy_button.setShortcut(QKeySequence.StandardKey.Copy)
        self.copy_button.clicked.connect(self.copy)
        warning = QLabel(f"This key is shown only now: LLMOps Desktop keeps only a salted hash "
                         f"of it, so it cannot be shown again. Copy it and hand it to "
                         f"{key.name}; a lost key is revoked and replaced by a new one.")
        warning.setWordWrap(True)
        warning.setStyleSheet(f"color: {WARN_COLOR};")
        scope = QLabel(f"Models: {key.models}. Clients send it as 'Authorization: Bearer KEY' "
                       "(the openai client's api_key).")
        scope.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.key_edit, 1)
        row.addWidget(self.copy_button)
        done = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        done.rejected.connect(self.reject)
        done.accepted.connect(self.accept)
        layout = QVBoxLayout(self)
        layout.addWidget(warning)
        layout.addLayout(row)
        layout.addWidget(scope)
        layout.addWidget(done)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.key_edit.text())
        self.copy_button.setText("Copied")

    def done(self, result: int) -> None:
        self.key_edit.clear()  # the key leaves the window with the dialog
        super().done(result)


class ApiKeysBox(QWidget):
    """Every key with its scope, limits and usage; New key… and Revoke…"""

    sig_keys_changed = Signal()
    """A key was created or revoked."""

    def __init__(self, catalog: Catalog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.catalog = catalog
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(KEY_COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.tree.currentItemChanged.connect(lambda *_: self._update_buttons())
        self.new_button = QPushButton("New key…")
        self.new_button.setToolTip("Make a key for one person or app (shown once)")
        self.new_button.clicked.connect(self.create_key)
        self.revoke_button = QPushButton("Revoke…")
        self.revoke_button.setToolTip("Stop the selected key working, at once")
        self.revoke_button.clicked.connect(self.revoke_selected)
        self.hint = QLabel("No API keys yet. On 127.0.0.1 the gateway answers without one; "
                           "once a key exists, every request needs one.")
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: palette(mid);")
        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.revoke_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.hint)
        layout.addLayout(buttons)
        self.refresh()

    def selected_name(self) -> str | None:
        item = self.tree.currentItem()
        return item.text(0) if item is not None else None

    def refresh(self) -> None:
        """Re-read the keys and their usage (the gateway adds to it twice a second)."""
        current = self.selected_name()
        keys = list_keys(self.catalog)
        self.tree.clear()
        for k in keys:
            item = QTreeWidgetItem([k.name, k.models, str(k.rpm or "-"), str(k.tpm or "-"),
                                    str(k.requests), str(k.prompt_tokens + k.completion_tokens),
                                    _when(k.last_used_at), _when(k.expires_at)[:10],
                                    key_state(k)])
            item.setToolTip(0, f"key id {k.key_id}, created {_when(k.created_at)} UTC")
            self.tree.addTopLevelItem(item)
            if k.name == current:
                self.tree.setCurrentItem(item)
        self.hint.setVisible(not keys)
        self._update_buttons()

    def create_key(self) -> ApiKey | None:
        dialog = CreateKeyDialog(self.catalog, self)
        if dialog.exec() != QDialog.DialogCode.Accepted or dialog.created is None:
            return None
        key, text = dialog.created
        self.refresh()
        self.sig_keys_changed.emit()
        KeyShownDialog(key, text, self).exec()
        return key

    def revoke_selected(self) -> bool:
        name = self.selected_name()
        if name is None:
            return False
        answer = QMessageBox.question(
            self, "Revoke API key", f"Revoke {name}'s key? Requests with it are refused at "
            "once (401), and it cannot be made to work again: make a new key instead.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        revoke_key(self.catalog, name)
        self.refresh()
        self.sig_keys_changed.emit()
        return True

    def _update_buttons(self) -> None:
        item = self.tree.currentItem()
        self.revoke_button.setEnabled(item is not None and item.text(8) == "active")

