"""Generation metrics, from the maintained libraries where the field has one.

Each metric takes the model's output and the item and returns a float (1.0/0.0 for the
pass/fail ones), the best over the item's references. ROUGE-L is ``rouge-score``'s F1;
BLEU and chrF are ``sacrebleu``'s sentence scores (0–100); JSON validity is
``jsonschema``'s. Binary metrics are the ones McNemar's test applies to.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

BINARY_METRICS = frozenset({"acc", "acc_norm", "exact_match", "contains", "regex", "numeric",
                            "json_schema", "pairwise_win"})

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


def normalize_answer(text: str) -> str:
    """The usual exact-match normalisation (SQuAD's): lower case, no punctuation, no
    articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(output: str, refs: Sequence[str]) -> float:
    out = normalize_answer(output)
    return float(any(out == normalize_answer(r) for r in refs))


def contains(output: str, refs: Sequence[str]) -> float:
    out = normalize_answer(output)
    return float(any(normalize_answer(r) and normalize_answer(r) in out for r in refs))


def regex_match(output: str, pattern: str) -> float:
    return float(re.search(pattern, output) is not None)


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def numeric(output: str, refs: Sequence[str], tolerance: float = 0.0) -> float:
    got = last_number(output)
    if got is None:
        return 0.0
    for r in refs:
        want = last_number(r)
        if want is not None and abs(got - want) <= tolerance + 1e-9 * max(1.0, abs(want)):
            return 1.0
    return 0.0


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(output: str, refs: Sequence[str]) -> float:
    scorer = _rouge()
    return max((scorer.score(r, output)["rougeL"].fmeasure for r in refs), default=0.0)


def bleu(output: str, refs: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_bleu(output, list(refs)).score)


def chrf(output: str, refs: Sequence[str]) -> float:
    import sacrebleu

    return float(sacrebleu.sentence_chrf(output, list(refs)).score)


def extract_json(text: str) -> Any:
    """The JSON value of ``text`` (whole, or inside a ```json fence); raises ValueError."""
    stripped = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", stripped, re.S)
    if fence:
        stripped = fence.group(1).strip()
    return json.loads(stripped)


def json_schema_valid(output: str, schema: dict[str, Any]) -> float:
    import jsonschema

    try:
        value = extract_json(output)
    except ValueError:
        return 0.0
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return 0.0
    return 1.0


def score_generation(output: str, item: dict[str, Any]) -> dict[str, float]:
    """Every metric the item names, on ``output``."""
    refs = [str(r) for r in item.get("references") or []]
    fns: dict[str, Callable[[], float]] = {
        "exact_match": lambda: exact_match(output, refs),
        "contains": lambda: contains(output, refs),
        "regex": lambda: regex_match(output, str(item.get("pattern", ""))),
        "numeric": lambda: numeric(output, refs, float(item.get("tolerance") or 0.0)),
        "rouge_l": lambda: rouge_l(output, refs),
        "bleu": lambda: bleu(output, refs),
        "chrf": lambda: chrf(output, refs),
        "json_schema": lambda: json_schema_valid(output, item.get("schema") or {}),
    }
    return {name: fns[name]() for name in item.get("metrics") or () if name in fns}


def corpus_scores(outputs: Sequence[str], items: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Corpus-level BLEU and chrF (sacrebleu), over the items that ask for them."""
    import sacrebleu

    out: dict[str, float] = {}
    for metric, fn in (("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)):
        pairs = [(o, i["references"]) for o, i in zip(outputs, items)
                 if metric in (i.get("metrics") or ())]
        if not pairs:
            continue
        width = max(len(r) for _, r in pairs)
        streams = [[r[k] if k < len(r) else r[0] for _, r in pairs] for k in range(width)]
        out[f"corpus_{metric}"] = float(fn([o for o, _ in pairs], streams).score)
    return out
