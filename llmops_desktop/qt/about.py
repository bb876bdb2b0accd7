"""The About box: versions of the app, Qt, and the engines (read from package metadata,
so torch and llama.cpp are never imported just to say which version is installed)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import qVersion
from PySide6.QtWidgets import QMessageBox, QWidget

from llmops_desktop import __version__ as app_version
from llmops_desktop.qt.context import icon

# (label, distribution name) of the engines worth naming.
ENGINES = [("PyTorch (torch)", "torch"), ("llama.cpp (llama-cpp-python)", "llama-cpp-python"),
           ("transformers", "transformers"), ("peft", "peft"), ("pyqtgraph", "pyqtgraph")]


def package_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def versions() -> list[tuple[str, str]]:
    return [("LLMOps Desktop", app_version), ("Qt", qVersion()), ("PySide6", pyside_version),
            ("Python", platform.python_version()),
            *((label, package_version(dist)) for label, dist in ENGINES)]


def about_text() -> str:
    rows = "".join(f"<tr><td>{name}</td><td>&nbsp;&nbsp;<b>{value}</b></td></tr>"
                   for name, value in versions())
    return (f"<h3>LLMOps Desktop {app_version}</h3>"
            "<p>Run the whole life of open-weight language models on your own machines: "
            "import, catalog, quantize, fine-tune, evaluate, serve, share. No cloud.</p>"
            f"<table>{rows}</table>"
            "<p>Licensed under the Apache License 2.0.</p>")


def show_about(parent: QWidget) -> QMessageBox:
    """Open the About box (window-modal, without blocking the caller)."""
    box = QMessageBox(parent)
    box.setWindowTitle("About LLMOps Desktop")
    box.setIconPixmap(icon("app").pixmap(64, 64))
    box.setTextFormat(box.textFormat().RichText)
    box.setText(about_text())
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.open()
    return box
