"""The Settings page: the form builder over :class:`~llmops_desktop.settings.Settings`.

One editor per typed field, grouped as the fields say (the Hugging Face cache gets a
Browse button through the override table). The field's description is the tooltip
and a small help line under it. Tokens live apart from the settings (secrets file).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.forms import SpecForm, muted_label, path_override
from llmops_desktop.secrets import get_secret, set_secret
from llmops_desktop.settings import Settings, load_settings, save_settings

OVERRIDES = {"hf_cache_dir": path_override(folder=True, title="Hugging Face cache")}
# Tokens: kept in <home>/secrets (mode 0600), never in settings.json; (group, label, help).
SECRET_FIELDS = {
    "hf_token": ("Network", "Hugging Face token",
                 "Sent to the hub endpoint for gated and private repos. Stored apart from the "
                 "settings, readable by you only, and kept out of logs and job parameters. "
                 "HF_TOKEN in the environment wins over it."),
    "mirror_token": ("Team mirror", "Mirror token",
                     "Colleagues give it as their HF token to use your mirror; needed to share "
                     "beyond this machine. LLMOPS_MIRROR_TOKEN in the environment wins over it."),
}


def _with_help(field: QWidget | QHBoxLayout, text: str) -> QVBoxLayout:
    column = QVBoxLayout()
    column.setSpacing(2)
    if isinstance(field, QWidget):
        column.addWidget(field)
    else:
        column.addLayout(field)
    column.addWidget(muted_label(text))
    column.addSpacing(6)
    return column


class SettingsPage(Page):
    """Edit, save and revert the app's settings."""

    page_id = "settings"
    title = "Settings"
    icon_name = "settings"
    tooltip = "Data home, threads, offline switch, import defaults"

    sig_saved = Signal(object)
    """The settings were written to disk (the new Settings)."""

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.secret_editors: dict[str, QLineEdit] = {}
        self._secrets: dict[str, str] = {}
        self._shown: dict[str, Any] = {}  # the settings the editors were last loaded with
        self._saving = False
        content = QWidget()
        body = QVBoxLayout(content)
        body.addWidget(self._build_home_box())
        self.form = SpecForm(Settings, overrides=OVERRIDES, grouped=True, help_lines=True)
        self.form.sig_changed.connect(self._on_edited)
        self.editors: dict[str, QWidget] = {name: self.form.input(name)
                                            for name in self.form.editors}
        for name, editor in self.editors.items():
            editor.setObjectName(f"setting_{name}")
        body.addWidget(self.form)
        for name, (group, label, help_text) in SECRET_FIELDS.items():
            form = self.form.group_layout(group)
            if form is not None:
                self._add_secret_field(form, name, label, help_text)
        from llmops_desktop.qt.share_widgets import TrustBox

        self.trust_box = TrustBox(ctx)  # own key, trusted colleagues' keys
        body.addWidget(self.trust_box)
        body.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(content)
        self.status = QLabel()
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                        | QDialogButtonBox.StandardButton.Reset
                                        | QDialogButtonBox.StandardButton.RestoreDefaults)
        self.buttons.button(QDialogButtonBox.StandardButton.Reset).setText("Revert")
        self.buttons.button(QDialogButtonBox.StandardButton.Save).clicked.connect(self.save)
        self.buttons.button(QDialogButtonBox.StandardButton.Reset).clicked.connect(self.load)
        self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            lambda: self.set_values(Settings()))
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(scroll, 1)
        layout.addLayout(bottom)
        ctx.events.sig_settings_saved.connect(self._on_saved_elsewhere)
        self.load()

    # ---- building -------------------------------------------------------------------------

    def _build_home_box(self) -> QGroupBox:
        box = QGroupBox("Data")
        form = QFormLayout(box)
        self.home_edit = QLineEdit(str(self.ctx.home.root))
        self.home_edit.setReadOnly(True)
        open_button = QPushButton(icon("folder"), "Open")
        open_button.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.ctx.home.root))))
        row = QHBoxLayout()
        row.addWidget(self.home_edit, 1)
        row.addWidget(open_button)
        form.addRow("Data home:", _with_help(
            row, "Catalog, model store, datasets and logs live here. It is chosen when the "
            "app starts: the LLMOPS_HOME environment variable or --home PATH, else your user "
            "data folder."))
        return box

    def _add_secret_field(self, form: QFormLayout, name: str, label: str, help_text: str) -> None:
        editor = QLineEdit()
        editor.setObjectName(f"secret_{name}")
        editor.setEchoMode(QLineEdit.EchoMode.Password)
        editor.setClearButtonEnabled(True)
        editor.setToolTip(help_text)
        editor.textChanged.connect(self._on_edited)
        show = QToolButton()
        show.setText("Show")
        show.setCheckable(True)
        show.setToolTip("Show or hide the token")
        show.toggled.connect(lambda on: editor.setEchoMode(
            QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password))
        row = QHBoxLayout()
        row.addWidget(editor, 1)
        row.addWidget(show)
        self.secret_editors[name] = editor
        form.addRow(f"{label}:", _with_help(row, help_text))

    # ---- values ---------------------------------------------------------------------------

    def values(self) -> dict[str, Any]:
        return self.form.values()

    def set_values(self, settings: Settings) -> None:
        self.form.set_values(settings)

    def load(self) -> None:
        """Show what is on disk."""
        self.set_values(self.ctx.reload_settings())
        self._shown = self.ctx.settings.to_dict()
        self._secrets = {name: get_secret(self.ctx.home, name) for name in self.secret_editors}
        for name, editor in self.secret_editors.items():
            editor.setText(self._secrets[name])
        self.status.setText("")

    def save(self) -> bool:
        """Validate and write; on a bad value say why and write nothing."""
        try:
            settings = self.ctx.settings.updated(**self.values())
        except ValueError as exc:
            self.status.setText(f"Not saved: {exc}")
            return False
        try:
            save_settings(self.ctx.home.settings_path, settings)
            for name, value in self.secret_values().items():
                if value != self._secrets.get(name, ""):
                    set_secret(self.ctx.home, name, value)
                    self._secrets[name] = value
        except (OSError, ValueError) as exc:
            self.status.setText(f"Not saved: {exc}")
            return False
        self.ctx.settings = load_settings(self.ctx.home.settings_path)
        self._shown = self.ctx.settings.to_dict()
        self.status.setText("Saved.")
        self._saving = True
        try:
            self.ctx.events.sig_settings_saved.emit(self.ctx.settings)
        finally:
            self._saving = False
        self.sig_saved.emit(self.ctx.settings)
        return True

    def secret_values(self) -> dict[str, str]:
        return {name: editor.text().strip() for name, editor in self.secret_editors.items()}

    def is_modified(self) -> bool:
        return (self.values() != self._shown
                or self.secret_values() != self._secrets)

    def _on_saved_elsewhere(self, _settings: object) -> None:
        """Another page saved settings (Download's Go online): show them unless edited here."""
        if not self._saving and not self.is_modified():
            self.load()

    def _on_edited(self, *args: object) -> None:
        self.status.setText("Unsaved changes." if self.is_modified() else "")
