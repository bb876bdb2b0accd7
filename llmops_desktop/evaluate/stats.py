"""Confidence intervals and paired tests over per-item scores.

Bootstrap intervals are percentile intervals over resampled items (seeded, so the same
scores give the same interval). Two artifacts on the same items are compared pairwise:
a paired bootstrap of the mean difference and, for pass/fail metrics, McNemar's exact
test on the discordant items (scipy's binomial test when scipy is there, else the same
sum by hand).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

RESAMPLES = 1000


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def bootstrap_ci(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo = means[int(math.floor((1 - level) / 2 * resamples))]
    hi = means[min(resamples - 1, int(math.ceil((1 + level) / 2 * resamples)) - 1)]
    return (lo, hi)


def summarize(values: Sequence[float], seed: int = 0) -> dict[str, Any]:
    lo, hi = bootstrap_ci(values, seed=seed)
    return {"mean": mean(values), "ci_low": lo, "ci_high": hi, "n": len(values)}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES,
                     seed: int = 0) -> dict[str, Any]:
    """Mean of b - a, its 95 % interval, and the two-sided bootstrap p-value."""
    diffs = [y - x for x, y in zip(a, b)]
    n = len(diffs)
    if n == 0:
        return {"diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p": 1.0}
    rng = random.Random(seed)
    observed = mean(diffs)
    boots = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    lo, hi = boots[int(0.025 * resamples)], boots[min(resamples - 1, int(0.975 * resamples))]
    below = sum(1 for d in boots if d <= 0) / resamples
    above = sum(1 for d in boots if d >= 0) / resamples
    p = min(1.0, 2 * min(below, above)) if observed != 0 else 1.0
    return {"diff": observed, "ci_low": lo, "ci_high": hi, "p": p}


def binomial_two_sided(k: int, n: int) -> float:
    """Exact two-sided p of k successes in n fair trials (scipy's binomtest when present)."""
    if n == 0:
        return 1.0
    try:
        from scipy.stats import binomtest
    except ImportError:
        probs = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
        limit = probs[k] * (1 + 1e-7)
        return min(1.0, sum(p for p in probs if p <= limit))
    return float(binomtest(k, n, 0.5).pvalue)


def mcnemar(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """McNemar's exact test: items right for A only (``a_only``) against B only."""
    a_only = sum(1 for x, y in zip(a, b) if x >= 0.5 > y)
    b_only = sum(1 for x, y in zip(a, b) if y >= 0.5 > x)
    return {"a_only": a_only, "b_only": b_only,
            "p": binomial_two_sided(min(a_only, b_only), a_only + b_only)}
