"""Two or more artifacts' runs on one suite version, side by side.

The matrix holds each artifact's mean and 95 % interval per metric; each artifact after
the first is tested against the first on the items both ran: a paired bootstrap of the
difference for every metric and McNemar's exact test for pass/fail ones. Items whose
pass/fail outcome flipped are listed with both outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.evaluate import runs as run_store
from llmops_desktop.evaluate.metrics import BINARY_METRICS
from llmops_desktop.evaluate.stats import mcnemar, paired_bootstrap
from llmops_desktop.evaluate.suites import resolve_suite

SIGNIFICANCE = 0.05


def compare_runs(catalog: Catalog, refs: Sequence[str], suite_ref: str) -> dict[str, Any]:
    suite = resolve_suite(catalog, suite_ref)
    artifacts = [catalog.resolve(r) for r in refs]
    runs = [run_store.latest_run(catalog, a.id, suite.id) for a in artifacts]
    per_item = [{r.item_index: r for r in run_store.results(catalog, run.id)} for run in runs]
    metrics = sorted({m for run in runs for m in run.summary.get("metrics", {})})
    matrix = [{"artifact": a.ref, "run_id": run.id,
               "metrics": {m: run.summary["metrics"].get(m) for m in metrics}}
              for a, run in zip(artifacts, runs)]
    tests, flips = [], []
    base = per_item[0]
    for a, items in zip(artifacts[1:], per_item[1:]):
        common = sorted(set(base) & set(items))
        for m in metrics:
            pairs = [(base[i].scores.get(m), items[i].scores.get(m)) for i in common]
            pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
            if not pairs:
                continue
            xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
            test: dict[str, Any] = {"a": artifacts[0].ref, "b": a.ref, "metric": m,
                                    "items": len(pairs), "paired_bootstrap": paired_bootstrap(xs, ys)}
            if m in BINARY_METRICS:
                test["mcnemar"] = mcnemar(xs, ys)
            p = test.get("mcnemar", test["paired_bootstrap"])["p"]
            test["significant"] = p < SIGNIFICANCE
            tests.append(test)
        for i in common:
            changed = [m for m in metrics if m in BINARY_METRICS
                       and base[i].scores.get(m) is not None
                       and items[i].scores.get(m) is not None
                       and (base[i].scores[m] >= 0.5) != (items[i].scores[m] >= 0.5)]
            if changed:
                flips.append({"item": i, "a": artifacts[0].ref, "b": a.ref, "metrics": changed,
                              "prompt": base[i].prompt[-500:], "a_output": base[i].output,
                              "b_output": items[i].output,
                              "a_scores": base[i].scores, "b_scores": items[i].scores})
    return {"suite": suite.ref, "suite_sha256": suite.sha256, "metrics": metrics,
            "matrix": matrix, "tests": tests, "flipped": flips}
