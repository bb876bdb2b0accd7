"""The Models page's catalog-editing actions on the selected artifact: copy its path, open
its folder, edit its tags, remove it (with what derives from it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QInputDialog, QLineEdit, QMessageBox

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.qt.workers import run_in_thread

if TYPE_CHECKING:
    from llmops_desktop.qt.pages.models import ModelsPage


def artifact_folder(a: Artifact) -> Path:
    return a.path if a.path.is_dir() else a.path.parent


def copy_path(page: ModelsPage) -> None:
    if (a := page.selected_artifact()) is not None:
        QGuiApplication.clipboard().setText(str(a.path))
        page.ctx.events.sig_info.emit(f"Copied {a.path}")


def open_folder(page: ModelsPage) -> None:
    if (a := page.selected_artifact()) is None:
        return
    folder = artifact_folder(a)
    if not folder.exists():
        page.ctx.events.sig_error.emit(f"{folder} does not exist any more.")
        return
    if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):  # xdg-open on Linux
        page.ctx.events.sig_error.emit(f"No file manager could open {folder}; its path is "
                                       "on the clipboard with Copy path.")


def edit_tags(page: ModelsPage) -> None:
    if (a := page.selected_artifact()) is None:
        return
    text, ok = QInputDialog.getText(
        page, "Tags", f"Tags of {a.ref}, separated by commas:", QLineEdit.EchoMode.Normal,
        ", ".join(a.tags))
    if not ok:
        return
    wanted = {t.strip() for t in text.split(",") if t.strip()}
    page.ctx.catalog.set_tags(a.id, add=sorted(wanted - set(a.tags)),
                              remove=sorted(set(a.tags) - wanted))
    page.reload()


def remove_selected(page: ModelsPage) -> None:
    if (a := page.selected_artifact()) is None:
        return
    dependents = page.ctx.catalog.descendants(a.id)
    box = QMessageBox(QMessageBox.Icon.Warning, "Remove artifact",
                      f"Remove {a.ref} (#{a.id}) from the catalog?", parent=page)
    where = ("Its files in the store are deleted." if a.storage != "reference"
             else "It references files in place; the originals are not touched.")
    cascade = None
    if dependents:
        names = "\n".join(f"  #{d.id} {d.ref}" for d in dependents[:8])
        box.setInformativeText(f"{len(dependents)} artifact(s) derive from it:\n{names}\n\n"
                               f"{where}")
        cascade = box.addButton(f"Remove all {len(dependents) + 1}",
                                QMessageBox.ButtonRole.DestructiveRole)
    else:
        box.setInformativeText(where)
        box.addButton("Remove", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    if clicked is None or box.buttonRole(clicked) != QMessageBox.ButtonRole.DestructiveRole:
        return
    remove_artifact(page, a.id, cascade=clicked is cascade)


def remove_artifact(page: ModelsPage, artifact_id: int, *, cascade: bool = False) -> None:
    """Remove in a thread (deleting big files takes a while); reload when done."""
    home = page.ctx.home

    def work() -> list[Artifact]:
        with Catalog.open(home) as cat:
            return cat.remove_artifact(artifact_id, cascade=cascade)

    def done(removed: list[Artifact]) -> None:
        page.ctx.events.sig_info.emit(
            "Removed " + ", ".join(a.ref for a in removed))
        page.reload()

    run_in_thread(work, done, lambda e: page.ctx.events.sig_error.emit(str(e)),
                  receiver=page)
