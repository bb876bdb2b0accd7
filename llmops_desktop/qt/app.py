"""Entry point of the desktop app: ``llmops-desktop [--home PATH]``.

Only Qt and the light core modules load here; torch, transformers and llama.cpp
stay out of the window's process until a job's child needs them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

APP_ID = "llmops-desktop"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="llmops-desktop", description="LLMOps Desktop")
    parser.add_argument("--home", metavar="PATH",
                        help="data home to use (default: $LLMOPS_HOME or your user data folder)")
    parser.add_argument("--page", metavar="NAME", help="open this page (models, jobs, settings)")
    args, _qt_args = parser.parse_known_args(argv)
    return args


def create_application(argv: Sequence[str] | None = None) -> object:
    """The QApplication (made once), named and with the app icon, following the system palette."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0], *(argv or [])])
    app.setApplicationName("LLMOps Desktop")
    app.setOrganizationName("llmops")
    app.setDesktopFileName(APP_ID)
    from llmops_desktop.qt.context import icon

    app.setWindowIcon(icon("app"))
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.home:
        # Child processes (jobs) find the home through the environment too.
        os.environ["LLMOPS_HOME"] = os.path.abspath(os.path.expanduser(args.home))
    app = create_application()
    from llmops_desktop.errors import LLMOpsError
    from llmops_desktop.paths import Home
    from llmops_desktop.qt.main_window import MainWindow

    try:
        window = MainWindow(Home.resolve())
    except LLMOpsError as exc:
        from PySide6.QtWidgets import QMessageBox

        QMessageBox.critical(None, "LLMOps Desktop cannot start", str(exc))
        return 1
    if args.page in window.pages:
        window.show_page(args.page)
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
