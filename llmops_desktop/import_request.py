"""The "import" job's request: a model folder, a .gguf file or a Hugging Face cache snapshot.

Built by ``llmops import`` and the Import dialog (and a file dropped on the window),
checked once here: whether the path is a package (which goes through the package
import and its signature question instead) and whether the source is importable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llmops_desktop.catalog import Catalog
from llmops_desktop.fields import check_values, spec
from llmops_desktop.jobs.tasks import JobRequest
from llmops_desktop.settings import Settings

PACKAGE_SUFFIX = ".llmpkg"
MODES = ("copy", "hardlink", "reference")


def is_package_path(path: str | Path) -> bool:
    """A package file (``.llmpkg``): imported by the package import, never as a model."""
    return str(path).lower().endswith(PACKAGE_SUFFIX)


@dataclass(frozen=True)
class ImportRequest(JobRequest):
    """Import one model source into the catalog."""

    kind: ClassVar[str] = "import"

    path: str = spec(description="A model folder, a .gguf file, or a snapshot in the "
                     "Hugging Face cache.", label="Source", exposed=False)
    name: str | None = spec(None, "Model name in the catalog (default: from the folder, the "
                            "GGUF metadata or the repo id).", label="Name")
    mode: str | None = spec(None, "How the files enter the store: copy them, hard-link them "
                            "(same disk only), or reference them in place (default: "
                            "Settings → Import mode).", label="Store as", choices=MODES)
    allow_pickle: bool | None = spec(
        None, "Accept PyTorch pickle checkpoints (.bin, .pt) for this import. Loading a pickle "
        "can run any code its author put in it; only if you trust the source (default: "
        "Settings → Allow pickle checkpoints).", label="Allow pickle checkpoints")
    tags: tuple[str, ...] = spec((), "Tags for the new artifact (repeatable, or "
                                 "comma-separated).", label="Tags", flag="--tag",
                                 metavar="TAG")

    @classmethod
    def for_path(cls, path: str, **options: Any) -> ImportRequest:
        """A request for ``path`` as the user typed it (``~`` expanded, made absolute if it
        exists)."""
        expanded = Path(path).expanduser()
        return cls(path=str(expanded.absolute()) if expanded.exists() else path, **options)

    @property
    def is_package(self) -> bool:
        return is_package_path(self.path)

    def check(self, catalog: Catalog | None = None, *,
              settings: Settings | None = None) -> ImportRequest:
        """Cheap checks (headers, layout) with the core's user-facing errors. Of a package,
        only that its manifest reads: its signature question comes with its own request
        (``share.requests.prepare_package_import``)."""
        if self.is_package:
            from llmops_desktop.share.unpack import inspect_package

            inspect_package(catalog.home if catalog is not None else None, self.path)
            return super().check()
        self.inspect(settings if settings is not None else _settings_of(catalog))
        return self

    def inspect(self, settings: Settings) -> Any:
        """The source as the importer will take it (an ``ImportSource``), or its refusal."""
        from llmops_desktop.hfcache import default_cache_dir
        from llmops_desktop.importer import inspect_source

        check_values(self)
        allow = settings.allow_pickle if self.allow_pickle is None else self.allow_pickle
        return inspect_source(self.path, allow_pickle=allow, name=self.name,
                              hf_cache_dir=default_cache_dir(settings.hf_cache_dir))


def _settings_of(catalog: Catalog | None) -> Settings:
    if catalog is None:
        return Settings()
    from llmops_desktop.settings import load_settings

    return load_settings(catalog.home.settings_path)
