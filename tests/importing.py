"""Helpers for import tests: run an import job the way the CLI does, and snapshot the store."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Result


def run_import(catalog: Catalog, path: Path | str, **params: Any) -> tuple[Any, Any]:
    """Run an import job to the end; returns (Result or Error event, final Job)."""
    run = runner.start(catalog, "import", {"path": str(path), **params})
    final = None
    for event in run.events():
        if isinstance(event, (Result, Error)):
            final = event
    return final, catalog.job(run.job_id)


def store_snapshot(catalog: Catalog) -> dict[str, Any]:
    """Everything a failed import must leave unchanged: catalog rows and store files."""
    files = sorted(str(p.relative_to(catalog.home.models_dir))
                   for p in catalog.home.models_dir.rglob("*"))
    counts = catalog.counts()
    counts.pop("jobs")  # a failed job is itself recorded, by design
    return {"counts": counts, "files": files}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_hf_cache(cache: Path, repo_id: str, model_dir: Path, commit: str = "c" * 40) -> Path:
    """Lay ``model_dir`` out as huggingface_hub does: blobs by hash, snapshot symlinks, refs."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    for f in sorted(model_dir.rglob("*")):
        if f.is_file():
            blob = repo / "blobs" / sha256(f)
            shutil.copy(f, blob)
            link = snap / f.relative_to(model_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.relpath(blob, link.parent), link)
    return repo
