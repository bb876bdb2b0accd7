"""The "download" job's request: one hub repository (or chosen files of it) into the catalog.

Built by ``llmops download`` and the Download page, checked here, rebuilt by the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.fields import spec
from llmops_desktop.jobs.tasks import JobRequest


@dataclass(frozen=True)
class DownloadRequest(JobRequest):
    """Download a repository snapshot (resumable) and import it."""

    kind: ClassVar[str] = "download"

    repo_id: str = spec(description="The repository, namespace/name.", label="Repository",
                        exposed=False)
    revision: str = spec("main", "Branch, tag or commit.", label="Revision", metavar="REV")
    include: tuple[str, ...] = spec((), "Download only files matching these globs "
                                    "(repeatable).", label="Include", metavar="GLOB")
    exclude: tuple[str, ...] = spec((), "Skip files matching these globs (repeatable).",
                                    label="Exclude", metavar="GLOB")
    name: str | None = spec(None, "Model name in the catalog (default: the repo id).",
                            label="Name")
    endpoint: str | None = spec(None, "The hub or mirror to download from (default: "
                                "Settings → Hub endpoint).", label="Hub endpoint",
                                exposed=False)
    files: tuple[str, ...] = spec((), "Exactly these files of the snapshot (the Download "
                                  "page's choice).", label="Files", exposed=False)
    allow_pickle: bool | None = spec(
        None, "Accept PyTorch pickle checkpoints (.bin, .pt) for this download; loading a "
        "pickle can run any code its author put in it (default: Settings → Allow pickle "
        "checkpoints).", label="Allow pickle checkpoints")

    def check(self, catalog: Catalog | None = None) -> DownloadRequest:
        super().check()
        parts = self.repo_id.strip().split("/")
        if len(parts) > 2 or not all(parts) or any(" " in p for p in parts):
            raise InvalidInputError(f"{self.repo_id!r} is not a repository id: give it as "
                                    "namespace/name, e.g. Qwen/Qwen2.5-0.5B-Instruct.")
        return self
