"""Icons and texts shipped with the app (the repository's top-level resources/ folder)."""

from __future__ import annotations

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent


def icon_path(name: str) -> Path:
    """Path of ``icons/<name>.svg``."""
    return RESOURCES_DIR / "icons" / f"{name}.svg"
