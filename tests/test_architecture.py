"""House rules that keep the layers apart (DESIGN.md, rules 1 and 2)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "llmops_desktop"
QT_MODULES = {"PySide6", "pyqtgraph", "shiboken6", "superqt", "PyQt5", "PyQt6"}
HEAVY = {"torch", "transformers", "peft", "bitsandbytes", "llama_cpp", "accelerate"}


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_qt_is_imported_only_under_qt_package() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if "qt" not in p.relative_to(PACKAGE).parts[:1]
                 and _imports(p, top_level_only=False) & QT_MODULES]
    assert offenders == [], f"Qt imported outside llmops_desktop/qt/: {offenders}"


def test_heavy_ml_libraries_are_imported_lazily() -> None:
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if _imports(p, top_level_only=True) & HEAVY]
    assert offenders == [], f"torch & co. imported at module level in: {offenders}"


def test_core_runs_without_qt_or_a_display() -> None:
    """Importing every core module and using the catalog loads neither Qt nor torch."""
    code = (
        "import sys, importlib, pkgutil, tempfile, llmops_desktop\n"
        "for m in pkgutil.walk_packages(llmops_desktop.__path__, 'llmops_desktop.'):\n"
        "    if '.qt' not in m.name: importlib.import_module(m.name)\n"
        "from llmops_desktop.catalog import Catalog\n"
        "Catalog.open(tempfile.mkdtemp()).artifacts()\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in "
        f"{sorted(QT_MODULES | HEAVY)!r})\n"
        "print(bad); sys.exit(1 if bad else 0)\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}  # no DISPLAY, no QT_QPA_PLATFORM
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
