"""Where the app keeps its data: one home folder.

``LLMOPS_HOME`` overrides the platform's user data dir (tests always set it).
Inside: ``catalog.db``, ``models/``, ``datasets/``, ``runs/``, ``logs/``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "llmops-desktop"


def default_home() -> Path:
    env = os.environ.get("LLMOPS_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class Home:
    """The data home and the well-known paths inside it."""

    root: Path

    @classmethod
    def resolve(cls, root: str | os.PathLike[str] | None = None) -> Home:
        home = cls(Path(root).expanduser().resolve() if root else default_home())
        home.ensure()
        return home

    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.db"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def staging_dir(self) -> Path:
        """Half-written artifacts live here until they are verified and renamed."""
        return self.models_dir / ".staging"

    @property
    def downloads_dir(self) -> Path:
        """Partial downloads, kept across restarts so they resume instead of starting over."""
        return self.root / "downloads"

    @property
    def datasets_dir(self) -> Path:
        return self.root / "datasets"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def settings_path(self) -> Path:
        return self.root / "settings.json"

    @property
    def gui_state_path(self) -> Path:
        return self.root / "gui-state.ini"

    def job_staging_dir(self, job_id: int) -> Path:
        return self.staging_dir / f"job-{job_id}"

    def ensure(self) -> None:
        for d in (self.root, self.models_dir, self.staging_dir, self.downloads_dir, self.datasets_dir,
                  self.runs_dir, self.logs_dir):
            d.mkdir(parents=True, exist_ok=True)
