"""Approval gated on evidence: a finished run on a suite whose pass thresholds it meets.

A suite's thresholds are "METRIC at least X" or "no worse than the parent artifact's
run on the same suite by more than Y" (the parent needs a finished run for that). An
artifact is approvable when its latest finished run on some suite passes every one of
that suite's thresholds; otherwise the refusal names the missing or failing runs.
"""

from __future__ import annotations

from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.evaluate import runs as run_store
from llmops_desktop.evaluate.suites import resolve_suite
from llmops_desktop.share.errors import GovernanceError


def run_failures(catalog: Catalog, run: run_store.EvalRun) -> list[str]:
    """What keeps ``run`` from passing its suite's thresholds (empty: it passes)."""
    suite = resolve_suite(catalog, run.suite_version_id)
    metrics = run.summary.get("metrics", {})
    artifact = catalog.artifact(run.artifact_id)
    out = []
    for t in suite.thresholds:
        name = t["metric"]
        got = (metrics.get(name) or {}).get("mean")
        if got is None:
            out.append(f"{name} was not measured")
            continue
        if "min" in t and got < t["min"]:
            out.append(f"{name} {got:.4f} < {t['min']}")
        if "max_drop" in t:
            if artifact.parent_id is None:
                out.append(f"{name} is compared with the parent, and {artifact.ref} has none")
                continue
            try:
                parent_run = run_store.latest_run(catalog, artifact.parent_id, suite.id)
            except LookupError:
                parent = catalog.artifact(artifact.parent_id)
                out.append(f"the parent {parent.ref} has no finished run on {suite.ref}")
                continue
            base = (parent_run.summary.get("metrics", {}).get(name) or {}).get("mean")
            if base is None or got < base - t["max_drop"]:
                out.append(f"{name} {got:.4f} is more than {t['max_drop']} below the parent's "
                           f"{base if base is None else round(base, 4)} (run #{parent_run.id})")
    return out


def check_approvable(catalog: Catalog, artifact_id: int) -> dict[str, Any]:
    """The passing run, or GovernanceError naming what is missing or failing."""
    artifact = catalog.artifact(artifact_id)
    latest: dict[int, run_store.EvalRun] = {}
    for run in run_store.runs_of(catalog, artifact_id=artifact_id, state="succeeded"):
        latest.setdefault(run.suite_version_id, run)
    failing = []
    for run in latest.values():
        problems = run_failures(catalog, run)
        if not problems:
            return {"run_id": run.id, "suite_version_id": run.suite_version_id}
        suite = resolve_suite(catalog, run.suite_version_id)
        failing.append(f"run #{run.id} on {suite.ref} fails: {'; '.join(problems)}")
    if not failing:
        raise GovernanceError(
            f"{artifact.ref} cannot be approved: it has no finished evaluation run, and this "
            "workstation approves only evaluated artifacts (setting 'Approval needs "
            f"evaluation'). Run 'llmops eval {artifact.ref} --suite NAME' first.")
    raise GovernanceError(f"{artifact.ref} cannot be approved: " + " | ".join(failing)
                          + ". Approval needs a passing evaluation run (setting 'Approval "
                          "needs evaluation').")
