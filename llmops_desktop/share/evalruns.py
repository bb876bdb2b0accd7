"""Evaluation runs in packages: what an artifact was measured on travels with it.

On export each artifact entry of the manifest carries ``eval_runs``: the latest finished
run per suite version, with the suite's name, version and sha256, the number of items,
each metric's mean and 95 % bootstrap interval, the suite's pass thresholds and whether
the run met them (the approval gate). The items themselves stay home.

On import :func:`parse_eval_runs` checks every field's type and bounds (the manifest is
hostile until proven otherwise) before anything is stored; :func:`store_eval_runs` keeps
them on the imported artifact as evaluations, one per metric, marked
``params["source"] == "eval_run"``, and :func:`carried_runs` reads them back for
``llmops import``/``llmops show`` and the model details.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from llmops_desktop.catalog import Catalog

SOURCE = "eval_run"
MAX_RUNS = 100
"""Runs per artifact in one manifest."""
MAX_METRICS = 64
"""Metrics per run."""
MAX_THRESHOLDS = 32
MAX_FAILURES = 32
MAX_TEXT = 300
"""Characters of a name, date or failure reason."""
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,300}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


# ---- export ----------------------------------------------------------------------------------

def export_eval_runs(catalog: Catalog, artifact_id: int) -> list[dict[str, Any]]:
    """The latest finished run per suite version of the artifact, newest first, as the
    manifest carries them."""
    from llmops_desktop.evaluate.gate import run_failures
    from llmops_desktop.evaluate.runs import runs_of
    from llmops_desktop.evaluate.suites import resolve_suite

    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for run in runs_of(catalog, artifact_id=artifact_id, state="succeeded"):
        if run.suite_version_id in seen or len(out) >= MAX_RUNS:
            continue
        seen.add(run.suite_version_id)
        suite = resolve_suite(catalog, run.suite_version_id)
        metrics = {name: {k: float(s[k]) for k in ("mean", "ci_low", "ci_high")}
                   for name, s in (run.summary.get("metrics") or {}).items()
                   if isinstance(s, dict) and all(_finite(s.get(k))
                                                  for k in ("mean", "ci_low", "ci_high"))}
        failures = run_failures(catalog, run) if suite.thresholds else []
        out.append({
            "suite": suite.name, "suite_version": suite.version, "suite_sha256": suite.sha256,
            "items": int(run.summary.get("items") or run.items_total),
            "metrics": dict(list(metrics.items())[:MAX_METRICS]),
            "thresholds": suite.thresholds[:MAX_THRESHOLDS],
            "passed": (not failures) if suite.thresholds else None,
            "failures": [f[:MAX_TEXT] for f in failures[:MAX_FAILURES]],
            "finished_at": run.finished_at or run.created_at,
        })
    return out


# ---- import: check ---------------------------------------------------------------------------

def _finite(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


def parse_eval_runs(value: Any, where: str,
                    need: Callable[[bool, str], None]) -> tuple[dict[str, Any], ...]:
    """The ``eval_runs`` of one manifest entry, checked and rebuilt from known fields only;
    ``need(condition, what)`` raises for anything malformed or over a bound."""
    if value is None:
        return ()
    need(isinstance(value, list), f"{where}'s eval_runs is not a list")
    need(len(value) <= MAX_RUNS, f"{where} lists {len(value):,} evaluation runs (at most "
         f"{MAX_RUNS})")
    runs = []
    for i, run in enumerate(value):
        at = f"{where}'s evaluation run #{i + 1}"
        need(isinstance(run, dict), f"{at} is not an object")
        suite, version, sha = run.get("suite"), run.get("suite_version"), run.get("suite_sha256")
        need(isinstance(suite, str) and bool(_NAME.match(suite)), f"{at} has no valid suite name")
        need(isinstance(version, int) and not isinstance(version, bool) and 0 < version < 1 << 31,
             f"{at} has no valid suite version")
        need(isinstance(sha, str) and bool(_SHA256.match(sha)), f"{at} has no valid suite sha256")
        items = run.get("items")
        need(isinstance(items, int) and not isinstance(items, bool) and 0 <= items < 1 << 40,
             f"{at} has no valid item count")
        metrics = run.get("metrics")
        need(isinstance(metrics, dict) and 0 < len(metrics) <= MAX_METRICS,
             f"{at} has no metrics, or more than {MAX_METRICS}")
        clean: dict[str, dict[str, float]] = {}
        for name, s in metrics.items():
            need(bool(_NAME.match(name)) and len(name) <= 120, f"{at} has a bad metric name")
            need(isinstance(s, dict)
                 and all(_finite(s.get(k)) for k in ("mean", "ci_low", "ci_high")),
                 f"{at}: metric {name[:60]!r} has no finite mean and interval")
            clean[name] = {k: float(s[k]) for k in ("mean", "ci_low", "ci_high")}
        passed = run.get("passed")
        need(passed is None or isinstance(passed, bool), f"{at}'s 'passed' is not true/false")
        failures = run.get("failures") or []
        need(isinstance(failures, list) and len(failures) <= MAX_FAILURES
             and all(isinstance(f, str) and len(f) <= MAX_TEXT for f in failures),
             f"{at}'s failures are not a short list of texts")
        thresholds = run.get("thresholds") or []
        need(isinstance(thresholds, list) and len(thresholds) <= MAX_THRESHOLDS,
             f"{at}'s thresholds are not a short list")
        rules = []
        for t in thresholds:
            need(isinstance(t, dict) and isinstance(t.get("metric"), str)
                 and len(t["metric"]) <= 120
                 and (_finite(t.get("min")) or _finite(t.get("max_drop"))),
                 f"{at} has a malformed threshold")
            rules.append({"metric": t["metric"],
                          **{k: float(t[k]) for k in ("min", "max_drop") if _finite(t.get(k))}})
        finished = run.get("finished_at")
        need(finished is None or (isinstance(finished, str) and len(finished) <= 40),
             f"{at}'s finished_at is not a date")
        runs.append({"suite": suite, "suite_version": version, "suite_sha256": sha,
                     "items": items, "metrics": clean, "thresholds": rules, "passed": passed,
                     "failures": [str(f) for f in failures], "finished_at": finished or ""})
    return tuple(runs)


# ---- import: store and read back -------------------------------------------------------------

def store_eval_runs(catalog: Catalog, artifact_id: int, runs: tuple[dict[str, Any], ...],
                    package: str) -> None:
    """Each carried run's metrics as evaluations of the imported artifact."""
    for run in runs:
        shared = {"source": SOURCE, "suite": run["suite"], "suite_version": run["suite_version"],
                  "items": run["items"], "thresholds": run["thresholds"],
                  "passed": run["passed"], "failures": run["failures"],
                  "finished_at": run["finished_at"], "from_package": package}
        for name, s in run["metrics"].items():
            catalog.add_evaluation(
                artifact_id, name, s["mean"], dataset=f"{run['suite']}@{run['suite_version']}",
                dataset_sha256=run["suite_sha256"],
                params={**shared, "ci_low": s["ci_low"], "ci_high": s["ci_high"]})


def carried_runs(catalog: Catalog, artifact_id: int) -> list[dict[str, Any]]:
    """The evaluation runs that came with the artifact in a package, as they were exported."""
    runs: dict[tuple[str, str, str], dict[str, Any]] = {}
    for ev in catalog.evaluations(artifact_id):
        p = ev.params
        if p.get("source") != SOURCE:
            continue
        key = (ev.dataset, ev.dataset_sha256, str(p.get("finished_at", "")))
        failures = p.get("failures")
        run = runs.setdefault(key, {
            "suite": p.get("suite"), "suite_version": p.get("suite_version"),
            "suite_ref": ev.dataset, "suite_sha256": ev.dataset_sha256,
            "items": p.get("items"), "metrics": {}, "thresholds": p.get("thresholds") or [],
            "passed": p.get("passed") if isinstance(p.get("passed"), bool) else None,
            "failures": [str(f)[:MAX_TEXT] for f in failures[:MAX_FAILURES]]
            if isinstance(failures, list) else [],
            "finished_at": p.get("finished_at"), "from_package": p.get("from_package")})
        lo, hi = p.get("ci_low"), p.get("ci_high")
        run["metrics"][ev.metric] = {"mean": ev.value, "ci_low": lo if _finite(lo) else None,
                                     "ci_high": hi if _finite(hi) else None}
    return list(runs.values())


def carried_on_suite(catalog: Catalog, suite_sha256: str) -> dict[int, dict[str, Any]]:
    """Per artifact, the newest run it brought in a package on a suite with this content
    (the suite version's sha256: its items, judge prompts and thresholds, whatever it is
    called here)."""
    found: dict[int, dict[str, Any]] = {}
    ids = [r["artifact_id"] for r in catalog.rows(
        "SELECT DISTINCT artifact_id FROM evaluations WHERE dataset_sha256 = ?",
        (suite_sha256,))]
    for artifact_id in ids:
        runs = [r for r in carried_runs(catalog, artifact_id)
                if r["suite_sha256"] == suite_sha256]
        if runs:
            found[artifact_id] = max(runs, key=lambda r: str(r.get("finished_at") or ""))
    return found


def artifact_eval_runs(catalog: Catalog, artifact_id: int) -> list[dict[str, Any]]:
    """The artifact's own latest finished runs, then those it brought in a package
    (``from_package`` names the file)."""
    return [*export_eval_runs(catalog, artifact_id), *carried_runs(catalog, artifact_id)]


def gate_text(run: dict[str, Any]) -> str:
    if run.get("passed") is None:
        return "no pass thresholds"
    if run["passed"]:
        return "passes its thresholds"
    return "fails its thresholds: " + "; ".join(run.get("failures") or ["(no reason given)"])


def suite_ref(run: dict[str, Any]) -> str:
    return str(run.get("suite_ref") or f"{run['suite']}@{run['suite_version']}")


def run_text(run: dict[str, Any], *, with_suite: bool = True) -> str:
    """One line: the suite, items, each metric with its interval, and the gate."""
    figures = ", ".join(
        f"{name} {s['mean']:.4f} [{s['ci_low']:.4f}, {s['ci_high']:.4f}]"
        if s.get("ci_low") is not None and s.get("ci_high") is not None
        else f"{name} {s['mean']:.4f}"
        for name, s in run["metrics"].items())
    where = f" (from the package {run['from_package']})" if run.get("from_package") else ""
    head = f"{suite_ref(run)} ({run.get('items')} items)" if with_suite else \
        f"{run.get('items')} items"
    return f"{head}: {figures}; {gate_text(run)}{where}"
