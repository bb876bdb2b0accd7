"""After a fine-tune: the adapter and its base evaluated on the suites the run named.

The adapter is merged into a copy of its base in the job's staging folder (the evaluation
backends read a Hugging Face folder or a GGUF file) and evaluated as the adapter, so the
evaluation run is stored under the adapter's id; the base is evaluated too (or its earlier
run with the same settings reused, as ``llmops eval`` does). The comparison
(:func:`llmops_desktop.evaluate.compare.compare_runs`: paired bootstrap, McNemar) is
written next to the run (``eval-SUITE.json``) and attached to the adapter as one evaluation
row per metric, with the base's value, the difference and its significance.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.jobs.events import Event, Log, Metric, Result
from llmops_desktop.jobs.tasks import JobContext


def suite_names(text: str) -> list[str]:
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def check_suites(catalog: Catalog, text: str) -> None:
    """Each named suite exists, and needs no judge (a fine-tune names none)."""
    from llmops_desktop.evaluate.suites import resolve_suite

    for name in suite_names(text):
        suite = resolve_suite(catalog, name)
        if suite.kinds.get("judged"):
            raise InvalidInputError(f"{suite.ref} has judged items, which need a judge: "
                                    "evaluate it with 'llmops eval … --judge MODEL' instead.")


def evaluate_after(ctx: JobContext, base: Artifact, adapter: Artifact, suites: str, *,
                   run_dir: Path, threads: int | None, device: str) -> Iterator[Event]:
    from llmops_desktop.evaluate.compare import compare_runs
    from llmops_desktop.evaluate.suites import resolve_suite, verify_suite
    from llmops_desktop.evaluate.task import EvalRequest, evaluate_artifact
    from llmops_desktop.finetune.merge import merge_adapter

    names = suite_names(suites)
    if not names:
        return
    merged = ctx.staging_dir / "merged-for-eval"
    shutil.rmtree(merged, ignore_errors=True)
    yield Log(f"merging {adapter.ref} into a copy of {base.ref} to evaluate it")
    merge_adapter(Path(base.path), Path(adapter.path), merged)
    tuned = dataclasses.replace(adapter, kind="hf", path=merged)
    device = "cpu" if device == "auto" else device
    try:
        for name in names:
            request = EvalRequest(artifacts=(base.ref, adapter.ref), suite=name,
                                  threads=threads, device=device).check(ctx.catalog)
            suite = resolve_suite(ctx.catalog, request.suite)
            verify_suite(suite)
            for artifact in (base, tuned):
                for event in evaluate_artifact(ctx, request, artifact, suite):
                    if not isinstance(event, Result):
                        yield event
            comparison = compare_runs(ctx.catalog, [base.ref, adapter.ref], suite.ref)
            (run_dir / f"eval-{suite.name}.json").write_text(
                json.dumps(comparison, indent=1, default=str), encoding="utf-8")
            yield from _attach(ctx, base, adapter, comparison, suite)
    finally:
        shutil.rmtree(merged, ignore_errors=True)


def _attach(ctx: JobContext, base: Artifact, adapter: Artifact, comparison: dict[str, Any],
            suite: Any) -> Iterator[Event]:
    values = {row["artifact"]: row["metrics"] for row in comparison["matrix"]}
    runs = {row["artifact"]: row["run_id"] for row in comparison["matrix"]}
    lines = []
    for metric in comparison["metrics"]:
        mine_s, theirs_s = values[adapter.ref].get(metric), values[base.ref].get(metric)
        if not mine_s:
            continue
        mine = float(mine_s["mean"])  # each with its 95 % interval (ci_low, ci_high)
        theirs = float(theirs_s["mean"]) if theirs_s else None
        test = next((t for t in comparison["tests"] if t["metric"] == metric), {})
        stat = test.get("mcnemar") or test.get("paired_bootstrap") or {}
        boot = test.get("paired_bootstrap") or {}
        params = {"base": base.ref, "base_value": theirs, "interval": mine_s,
                  "base_interval": theirs_s,
                  "difference": None if theirs is None else mine - theirs,
                  "difference_interval": [boot["ci_low"], boot["ci_high"]]
                  if "ci_low" in boot else None,
                  "p": stat.get("p"), "significant": test.get("significant"),
                  "items": test.get("items"), "run_id": runs[adapter.ref],
                  "base_run_id": runs[base.ref], "after": "finetune"}
        ctx.catalog.add_evaluation(adapter.id, metric, float(mine), dataset=suite.ref,
                                   dataset_sha256=suite.sha256, params=params,
                                   job_id=ctx.job_id)
        yield Metric(f"{suite.name}:{metric}", float(mine))
        lines.append(f"{metric} {theirs if theirs is None else round(theirs, 4)} -> "
                     f"{round(mine, 4)}" + (" (significant)" if test.get("significant") else ""))
    yield Log(f"{suite.ref}, base -> adapter: " + ("; ".join(lines) or "no metrics"))
