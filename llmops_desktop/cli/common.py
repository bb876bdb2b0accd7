"""What every ``llmops`` command group shares: opening the catalog, printing, running a job.

Command groups (``cli/models.py``, ``cli/hub.py``, ``*/commands.py``) import this module;
it imports none of them, so the helpers never depend on a feature's commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from llmops_desktop.errors import CancelledError, JobError


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def format_params(n: Any) -> str:
    """A parameter count as people say it: 1.1B, 135.0M."""
    if not isinstance(n, int):
        return ""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def open_catalog(args: argparse.Namespace):
    from llmops_desktop.catalog import Catalog
    from llmops_desktop.jobs.runner import recover
    from llmops_desktop.paths import Home

    catalog = Catalog.open(Home.resolve(args.home))
    recover(catalog)
    return catalog


def report_artifact(args: argparse.Namespace, artifact, verb: str, extra: str = "",
                    **json_extra: Any) -> int:
    """What a command that made an artifact prints: its JSON, or one line for people."""
    if args.json:
        print_json({**artifact.to_json(), **json_extra})
    else:
        print(f"{verb} {artifact.ref} (artifact #{artifact.id}, "
              f"{human_size(artifact.size_bytes)}{extra}) -> {artifact.path}")
    return 0


def hub_client(args: argparse.Namespace):
    from llmops_desktop.acquire.hub import HubClient
    from llmops_desktop.jobs.runner import child_env
    from llmops_desktop.paths import Home
    from llmops_desktop.secrets import get_secret
    from llmops_desktop.settings import load_settings

    home = Home.resolve(args.home)
    settings = load_settings(home.settings_path)
    # This process talks to the hub itself (search, --list): same environment as a job's.
    env = child_env(home, settings)
    os.environ.clear()
    os.environ.update(env)
    return HubClient(args.endpoint or settings.hf_endpoint, get_secret(home, "hf_token"),
                     offline=settings.offline)


# ---- running a job with a progress bar ---------------------------------------------------------

def run_job_in_terminal(catalog, request: Any, *, quiet: bool,
                        secrets: dict[str, str] | None = None) -> dict[str, Any]:
    """Start a job for a checked request, draw its progress on stderr, return its result or
    raise its error."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    from llmops_desktop.jobs import runner
    from llmops_desktop.jobs.events import Error, Log, Progress, Result

    console = Console(stderr=True)
    run = runner.start(catalog, request, secrets=secrets)
    kind = request.kind
    result: dict[str, Any] | None = None
    error: Error | None = None
    show = not quiet and console.is_terminal
    bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
              TransferSpeedColumn(), TimeRemainingColumn(), console=console, disable=not show,
              transient=True)
    try:
        with bar:
            task = bar.add_task(f"job #{run.job_id} {kind}", total=None)
            for event in run.events():
                if isinstance(event, Progress):
                    bar.update(task, completed=event.done, total=event.total or None,
                               description=(event.message or kind)[:48])
                elif isinstance(event, Log) and not quiet:
                    if event.level in ("warning", "error") or not show:
                        console.print(f"[dim]{event.level}:[/dim] {event.message}",
                                      highlight=False)
                elif isinstance(event, Result):
                    result = event.data
                elif isinstance(event, Error):
                    error = event
    except KeyboardInterrupt:
        console.print(f"cancelling job #{run.job_id} …")
        run.cancel()
        raise CancelledError("Cancelled by the user.") from None
    job = run.wait()
    if error is not None:
        raise error.to_exception()  # the child's own error: class, message, exit code, fields
    if result is None:
        raise JobError(job.error or f"job #{job.id} ended {job.state.value}")
    return result
