"""The Prompts page: versioned prompts, as ``llmops prompt`` keeps them.

On the left every prompt (its latest version, its aliases, the model it was written for);
on the right one version: its content (an edited copy is saved as the next version, since
a stored version never changes), a comparison of two versions (the CLI's diff), and its
aliases, split and what each version has served. Ctrl+N makes a new prompt, Ctrl+S saves
the edited copy.
"""

from __future__ import annotations

import html

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from llmops_desktop.errors import LLMOpsError
from llmops_desktop.prompts.store import PromptVersion, create_prompt, list_prompts, versions
from llmops_desktop.qt.context import AppContext, Page, icon
from llmops_desktop.qt.prompt_aliases import AliasPanel, plain_table
from llmops_desktop.qt.prompt_compare import ComparePanel
from llmops_desktop.qt.prompt_dialogs import PromptDialog
from llmops_desktop.qt.prompt_editor import PromptEditor, StatusLine, hint_label

COLUMNS = ["Name", "Latest", "Aliases", "Written for"]


class PromptsPage(Page):
    """Prompts: versions, diffs, aliases and splits."""

    page_id = "prompts"
    title = "Prompts"
    icon_name = "prompt"
    tooltip = "Versioned prompts: edit, compare, and move prod/candidate aliases"

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.name = ""  # the prompt shown
        self.versions: list[PromptVersion] = []
        self.version: PromptVersion | None = None  # the version shown in the editor

        self.new_button = QPushButton(icon("tag"), "New prompt…")
        self.new_button.setToolTip("Make a new prompt (Ctrl+N)")
        self.new_button.clicked.connect(self.new_prompt)
        self.refresh_button = QPushButton(icon("refresh"), "Refresh")
        self.refresh_button.setToolTip("Read the prompts again (F5), e.g. after "
                                       "'llmops prompt create'")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(self.new_button)
        top.addStretch(1)
        top.addWidget(self.refresh_button)

        self.table = plain_table(COLUMNS)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_prompt_selected)
        self.empty_label = hint_label("No prompts yet. New prompt (Ctrl+N) makes one; so "
                                      "does Save as prompt in the Playground, or 'llmops "
                                      "prompt create NAME --template TEXT'.")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.empty_label)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(left)
        self.splitter.addWidget(self._build_details())
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([320, 680])
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

        for keys, slot in (("Ctrl+N", self.new_prompt), ("Ctrl+S", self.save_new_version)):
            shortcut = QShortcut(QKeySequence(keys), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        self.reload()

    def _build_details(self) -> QWidget:
        self.heading = QLabel()
        self.heading.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.version_combo = QComboBox()
        self.version_combo.setToolTip("The version shown and edited")
        self.version_combo.currentIndexChanged.connect(self._on_version_picked)
        head = QHBoxLayout()
        head.addWidget(self.heading, 1)
        head.addWidget(QLabel("Version"))
        head.addWidget(self.version_combo)

        self.editor = PromptEditor(self.ctx.catalog)
        self.save_hint = hint_label()
        self.save_button = QPushButton(icon("tag"), "Save as new version")
        self.save_button.setToolTip("Store the edited copy as the next version (Ctrl+S); the "
                                    "version shown stays as it is")
        self.save_button.clicked.connect(self.save_new_version)
        self.message = StatusLine()
        foot = QHBoxLayout()
        foot.addWidget(self.save_hint, 1)
        foot.addWidget(self.save_button)
        version_tab = QWidget()
        version_layout = QVBoxLayout(version_tab)
        version_layout.addWidget(self.editor, 1)
        version_layout.addLayout(foot)

        self.compare = ComparePanel()
        self.alias_panel = AliasPanel(self.ctx.catalog)
        self.alias_panel.sig_changed.connect(self._on_aliases_changed)
        self.alias_panel.sig_error.connect(lambda text: self.message.say(text, error=True))
        self.tabs = QTabWidget()
        self.tabs.addTab(version_tab, "Version")
        self.tabs.addTab(self.compare, "Compare")
        self.tabs.addTab(self.alias_panel, "Aliases and split")
        self.details = QWidget()
        layout = QVBoxLayout(self.details)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(head)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.message)
        return self.details

    # ---- public ---------------------------------------------------------------------------

    def reload(self) -> None:
        """Read the prompt list again, keeping the selection."""
        rows = list_prompts(self.ctx.catalog)
        self.table.blockSignals(True)
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            latest = versions(self.ctx.catalog, row["name"])[-1]
            tags = ", ".join(f"{a} → {v}" for a, v in row["aliases"].items())
            for c, text in enumerate([row["name"], str(row["latest"]), tags,
                                      latest.artifact_ref or "any model"]):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, row["name"])
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)
        self.empty_label.setVisible(not rows)
        self.editor.reload_artifacts()
        if self.name and any(r["name"] == self.name for r in rows):
            self.select_prompt(self.name, self.version.version if self.version else None)
        elif rows:
            self.select_prompt(rows[0]["name"])
        else:
            self.name, self.versions, self.version = "", [], None
            self.details.setEnabled(False)
            self.heading.setText("")

    def select_prompt(self, name: str, version: int | None = None) -> bool:
        """Show prompt ``name`` at ``version`` (default: its latest); False if unknown."""
        try:
            self.versions = versions(self.ctx.catalog, name)
        except LLMOpsError:
            return False
        self.name = name
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == name:
                self.table.blockSignals(True)
                self.table.selectRow(r)
                self.table.blockSignals(False)
        numbers = [v.version for v in self.versions]
        pick = version if version in numbers else numbers[-1]
        self.version_combo.blockSignals(True)
        self.version_combo.clear()
        for v in reversed(self.versions):
            self.version_combo.addItem(v.ref + (" (latest)" if v is self.versions[-1] else ""),
                                       v.version)
        self.version_combo.setCurrentIndex(self.version_combo.findData(pick))
        self.version_combo.blockSignals(False)
        self.details.setEnabled(True)
        self.compare.set_versions(self.versions)
        self.alias_panel.show_prompt(name, numbers, pick)
        if self.version is None or self.version.ref != f"{name}@{pick}":
            self.show_version(pick)  # the same version again keeps the edits in progress
        return True

    def show_ref(self, ref: str) -> bool:
        """Show ``NAME@N`` (or ``NAME``), e.g. from the Playground's Save as prompt."""
        self.reload()
        name, _, number = ref.partition("@")
        return self.select_prompt(name, int(number) if number.isdigit() else None)

    def show_version(self, number: int) -> None:
        v = next(x for x in self.versions if x.version == number)
        self.version = v
        self.editor.load_version(v)
        self.heading.setText(f"<b>{v.ref}</b> — {v.created_at[:19].replace('T', ' ')}"
                             + (f" by {html.escape(v.user)}" if v.user else "")
                             + (f"<br>{html.escape(v.note)}" if v.note else ""))
        self.save_hint.setText(f"Edits are saved as {v.name}@{self.versions[-1].version + 1}; "
                               f"{v.ref} stays as it is.")
        self.message.clear()

    def save_new_version(self) -> str:
        """Store the edited copy as the prompt's next version; returns NAME@N, or "" when
        the core refused it (said on the page)."""
        if not self.name:
            return ""
        try:
            v = create_prompt(self.ctx.catalog, self.name, **self.editor.values())
        except LLMOpsError as exc:
            self.message.say(f"Not saved: {exc}", error=True)
            return ""
        self.reload()
        self.select_prompt(v.name, v.version)
        self.message.say(f"Saved {v.ref}. Point an alias at it under Aliases and split.")
        self.ctx.events.sig_info.emit(f"Saved prompt {v.ref}")
        return v.ref

    def new_prompt(self) -> PromptDialog:
        """The New prompt dialog (window-modal, not blocking)."""
        dialog = PromptDialog(self.ctx.catalog, "New prompt", parent=self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.sig_saved.connect(self.show_ref)
        dialog.open()
        return dialog

    def on_shown(self) -> None:
        self.reload()
        self.table.setFocus()  # Ctrl+N and Ctrl+S work from the sidebar on

    def refresh(self) -> None:
        self.reload()

    def save_state(self, state: QSettings) -> None:
        state.setValue("prompts/splitter", self.splitter.saveState())

    def restore_state(self, state: QSettings) -> None:
        value = state.value("prompts/splitter")
        if value is not None:
            self.splitter.restoreState(value)

    # ---- internals ------------------------------------------------------------------------

    def _on_prompt_selected(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.select_prompt(self.table.item(rows[0].row(), 0).data(Qt.ItemDataRole.UserRole))

    def _on_version_picked(self, _index: int) -> None:
        number = self.version_combo.currentData()
        if number is not None:
            self.show_version(number)

    def _on_aliases_changed(self) -> None:
        self.reload()
        self.tabs.setCurrentWidget(self.alias_panel)
        self.message.say("Alias moved; requests by alias follow it at once.")
