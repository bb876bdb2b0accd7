"""Multiple choice as lm-evaluation-harness scores it, with seeded k-shot examples.

Each choice is scored as the log-likelihood of ``" " + choice`` after the context; ``acc``
is 1 when the highest one is the gold choice, ``acc_norm`` when the highest one divided
by the choice's length in characters is (lm-eval's ``len(choice)``). Ties go to the first
choice, as ``numpy.argmax`` gives them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"


def fewshot_examples(item: dict[str, Any], index: int, pool: Sequence[tuple[int, dict[str, Any]]],
                     shots: int, seed: int) -> list[dict[str, Any]]:
    """``shots`` examples for item ``index``: from its own ``fewshot`` list when it has
    one, else from the suite's other multiple-choice items; the same for the same seed,
    whatever ``--limit`` is."""
    if shots <= 0:
        return []
    own = item.get("fewshot") or []
    rng = random.Random(f"{seed}:{index}")
    if own:
        return list(own[:shots]) if len(own) <= shots else rng.sample(list(own), shots)
    others = [it for i, it in pool if i != index]
    return rng.sample(others, min(shots, len(others)))


def mc_context(item: dict[str, Any], examples: Sequence[dict[str, Any]]) -> str:
    shots = "".join(ex["context"] + TARGET_DELIMITER + ex["choices"][ex["answer"]]
                    + FEWSHOT_DELIMITER for ex in examples)
    return shots + item["context"]


def mc_pairs(context: str, item: dict[str, Any]) -> list[tuple[str, str]]:
    return [(context, TARGET_DELIMITER + c) for c in item["choices"]]


def _argmax(values: Sequence[float]) -> int:
    best = 0
    for i, v in enumerate(values):
        if v > values[best]:
            best = i
    return best


def mc_scores(item: dict[str, Any], results: Sequence[tuple[float, bool]]) -> tuple[dict[str, float],
                                                                                      dict[str, Any]]:
    """(scores, details) of one item from its choices' (log-likelihood, is_greedy)."""
    lls = [r[0] for r in results]
    pred = _argmax(lls)
    pred_norm = _argmax([ll / float(len(c)) for ll, c in zip(lls, item["choices"])])
    gold = int(item["answer"])
    scores = {"acc": float(pred == gold), "acc_norm": float(pred_norm == gold)}
    details = {"loglikelihoods": lls, "is_greedy": [r[1] for r in results], "pred": pred,
               "pred_norm": pred_norm, "gold": gold}
    return scores, details
