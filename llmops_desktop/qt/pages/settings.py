"""The Settings page, built from ``Settings.field_info()``: one editor per typed field.

bool → check box, int → spin box with its bounds, choices → combo box, str →
line edit (the Hugging Face cache gets a Browse button). The field's
description is the tooltip and a small help line under it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.secrets import get_secret, set_secret
from llmops_desktop.settings import Settings, load_settings, save_settings

BROWSE_FIELDS = {"hf_cache_dir"}
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


def _help_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    font = label.font()
    font.setPointSizeF(font.pointSizeF() * 0.9)
    label.setFont(font)
    # The palette's muted text colour, so it reads on a light or a dark theme.
    muted = label.palette().color(QPalette.ColorRole.PlaceholderText)
    label.setStyleSheet(f"color: {muted.name()};")
    return label


def _with_help(field: QWidget | QHBoxLayout, text: str) -> QVBoxLayout:
    column = QVBoxLayout()
    column.setSpacing(2)
    if isinstance(field, QWidget):
        column.addWidget(field)
    else:
        column.addLayout(field)
    column.addWidget(_help_label(text))
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
        self.editors: dict[str, QWidget] = {}
        self.secret_editors: dict[str, QLineEdit] = {}
        self._secrets: dict[str, str] = {}
        self._shown: dict[str, Any] = {}  # the settings the editors were last loaded with
        self._saving = False
        self._infos = {info["name"]: info for info in Settings.field_info()}
        content = QWidget()
        body = QVBoxLayout(content)
        body.addWidget(self._build_home_box())
        groups: dict[str, QFormLayout] = {}
        for info in Settings.field_info():
            form = groups.get(info["group"])
            if form is None:
                box = QGroupBox(info["group"])
                form = QFormLayout(box)
                form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
                groups[info["group"]] = form
                body.addWidget(box)
            self._add_field(form, info)
        for name, (group, label, help_text) in SECRET_FIELDS.items():
            form = groups.get(group)
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

    def _add_field(self, form: QFormLayout, info: dict[str, Any]) -> None:
        name, typ = info["name"], info["type"]
        editor: QWidget
        if typ is bool:
            editor = QCheckBox(info["label"])
            editor.toggled.connect(self._on_edited)
        elif info["choices"]:
            editor = QComboBox()
            editor.addItems(list(info["choices"]))
            editor.currentIndexChanged.connect(self._on_edited)
        elif typ is int:
            editor = QSpinBox()
            editor.setRange(info["minimum"] if info["minimum"] is not None else -2**31,
                            info["maximum"] if info["maximum"] is not None else 2**31 - 1)
            editor.valueChanged.connect(self._on_edited)
        else:
            editor = QLineEdit()
            editor.setClearButtonEnabled(True)
            if any(word in name for word in ("token", "secret", "password", "api_key")):
                editor.setEchoMode(QLineEdit.EchoMode.PasswordEchoOnEdit)
            editor.textChanged.connect(self._on_edited)
        editor.setObjectName(f"setting_{name}")
        description = info["description"] + (" (takes effect after a restart)"
                                             if info["restart"] else "")
        editor.setToolTip(description)
        self.editors[name] = editor
        field: QWidget | QHBoxLayout = editor
        if name in BROWSE_FIELDS:
            browse = QPushButton(icon("folder"), "Browse…")
            browse.clicked.connect(lambda: self._on_browse_clicked(name))
            field = QHBoxLayout()
            field.addWidget(editor, 1)
            field.addWidget(browse)
        label = "" if typ is bool else f"{info['label']}:"
        form.addRow(label, _with_help(field, description))

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
        out: dict[str, Any] = {}
        for name, editor in self.editors.items():
            if isinstance(editor, QCheckBox):
                out[name] = editor.isChecked()
            elif isinstance(editor, QComboBox):
                out[name] = editor.currentText()
            elif isinstance(editor, QSpinBox):
                out[name] = editor.value()
            elif isinstance(editor, QLineEdit):
                out[name] = editor.text().strip()
        return out

    def set_values(self, settings: Settings) -> None:
        for name, value in settings.to_dict().items():
            editor = self.editors.get(name)
            if isinstance(editor, QCheckBox):
                editor.setChecked(bool(value))
            elif isinstance(editor, QComboBox):
                editor.setCurrentIndex(max(0, editor.findText(str(value))))
            elif isinstance(editor, QSpinBox):
                editor.setValue(int(value))
            elif isinstance(editor, QLineEdit):
                editor.setText(str(value))

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

    def _on_browse_clicked(self, name: str) -> None:
        editor = self.editors[name]
        assert isinstance(editor, QLineEdit)
        folder = QFileDialog.getExistingDirectory(self, self._infos[name]["label"], editor.text())
        if folder:
            editor.setText(folder)
