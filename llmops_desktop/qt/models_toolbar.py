"""The Models page's actions: the Import menu, the actions on the selected artifact
(Quantize, Serve, Chat, Fine-tune, Export, Copy path, …) with their shortcuts, and the
table's context menu. The catalog-editing ones run from :mod:`~llmops_desktop.qt.model_actions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QToolButton

from llmops_desktop.qt.context import icon
from llmops_desktop.qt.model_actions import copy_path, edit_tags, open_folder, remove_selected

if TYPE_CHECKING:
    from llmops_desktop.qt.pages.models import ModelsPage


def build_import_button(page: ModelsPage) -> QToolButton:
    """Import, with a menu: a model folder, a GGUF file, the HF cache, the demo model."""
    button = QToolButton()
    button.setText("Import")
    button.setIcon(icon("import"))
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
    menu = QMenu(button)
    events = page.ctx.events
    menu.addAction(icon("folder"), "Model folder…",
                   lambda: events.sig_import_requested.emit("folder"))
    menu.addAction(icon("file"), "GGUF file…", lambda: events.sig_import_requested.emit("file"))
    menu.addAction(icon("hf-cache"), "From Hugging Face cache…",
                   lambda: events.sig_import_requested.emit("hf-cache"))
    menu.addSeparator()
    menu.addAction(icon("demo"), "Demo model", events.sig_demo_requested.emit)
    button.setMenu(menu)
    return button


def make_action(page: ModelsPage, icon_name: str, text: str, slot: object,
                shortcut: str = "") -> QAction:
    action = QAction(icon(icon_name), text, page)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
    action.triggered.connect(slot)
    return action


def build_actions(page: ModelsPage) -> None:
    """The actions on the selected artifact, as the page's ``act_*`` and ``model_actions``."""
    page.act_quantize = make_action(page, "quantize", "Quantize…",
                                    lambda: page.open_quantize_dialog(), "Ctrl+Shift+Q")
    page.act_quantize.setToolTip("Make GGUF or bitsandbytes variants of the selected model, "
                                 "with their perplexity (Ctrl+Shift+Q)")
    page.quantize_button.setDefaultAction(page.act_quantize)
    page.act_serve = make_action(page, "deploy", "Serve…", page.serve_selected)
    page.act_serve.setToolTip("Serve the selected model over an OpenAI-compatible API")
    page.act_chat = make_action(page, "chat", "Chat", page.chat_selected)
    page.act_chat.setToolTip("Talk to the selected model in the Playground (once serving)")
    page.details.serve_button.setDefaultAction(page.act_serve)
    page.details.chat_button.setDefaultAction(page.act_chat)
    page.act_copy_path = make_action(page, "copy", "Copy path", lambda: copy_path(page),
                                     "Ctrl+Shift+C")
    page.act_open_folder = make_action(page, "folder", "Open folder", lambda: open_folder(page))
    page.act_tag = make_action(page, "tag", "Tag…", lambda: edit_tags(page), "Ctrl+T")
    page.act_remove = make_action(page, "remove", "Remove…", lambda: remove_selected(page),
                                  QKeySequence(QKeySequence.StandardKey.Delete).toString())
    # Delete must not fire while typing in the filter: only when the table has focus.
    page.act_remove.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    page.table.addAction(page.act_remove)
    page.act_show_job = make_action(page, "jobs", "Show job", page.show_job)
    page.act_export = make_action(page, "export", "Export…", lambda: page.open_export_dialog())
    page.act_export.setToolTip("Export as a signed package, an Ollama or an HF folder")

    def finetune_selected() -> None:
        from llmops_desktop.qt.pages.finetune import open_finetune

        open_finetune(page, page.selected_artifact())

    page.act_finetune = make_action(page, "quantize", "Fine-tune…", finetune_selected)
    page.act_finetune.setToolTip("Train a LoRA adapter of the selected HF model on a dataset")
    page.model_actions = [page.act_quantize, page.act_serve, page.act_chat, page.act_finetune,
                          page.act_export,
                          page.act_copy_path, page.act_open_folder,
                          page.act_tag, page.act_remove, page.act_show_job]
    page._update_actions()


def show_context_menu(page: ModelsPage, pos: object) -> None:
    """The table's right-click menu: the row under the pointer, selected, and its actions."""
    index = page.table.indexAt(pos)
    if not index.isValid():
        return
    page.table.selectRow(index.row())
    menu = QMenu(page)
    menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    for action in page.model_actions:
        if action is page.act_remove:
            menu.addSeparator()
        menu.addAction(action)
        if action is page.act_serve:
            menu.addSeparator()
    menu.popup(page.table.viewport().mapToGlobal(pos))
