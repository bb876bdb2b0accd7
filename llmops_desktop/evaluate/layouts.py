"""Suite rows to items: the three kinds, and the layouts of common benchmark exports.

An item is a plain dict with ``kind``:

- ``mc`` (multiple choice): ``context`` (the text the model is conditioned on),
  ``choices`` (each scored as ``context + " " + choice``), ``answer`` (the gold index),
  ``question`` and, optionally, ``fewshot`` (the item's own examples).
- ``gen`` (generation): ``prompt`` or ``messages``, ``references`` (one or more),
  ``metrics`` (which to apply), optional ``pattern`` (regex), ``tolerance``,
  ``schema`` (JSON schema) and ``max_tokens``.
- ``judged``: ``prompt`` or ``messages``, ``rubric``, ``mode`` (pointwise or pairwise)
  and, for pairwise, an optional ``baseline`` answer.

Rows of MMLU, ARC, HellaSwag, TruthfulQA (multiple choice) and GSM8K, as people save
them from the Hugging Face datasets, are recognised by their columns and rendered with
lm-evaluation-harness's prompts for those tasks, so figures compare.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from llmops_desktop.datasets.shapes import RowError

KINDS = ("mc", "gen", "judged")
GEN_METRICS = ("exact_match", "contains", "regex", "numeric", "rouge_l", "bleu", "chrf",
               "json_schema")
DEFAULT_GEN_METRICS = ("exact_match", "contains", "rouge_l")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LAYOUTS = ("mmlu", "arc", "hellaswag", "truthfulqa_mc", "gsm8k", "mc", "gen", "judged", "mixed")


def detect_layout(columns: Iterable[str]) -> str:
    """The layout of rows with these columns (raises RowError when none fits)."""
    cols = set(columns)
    if "kind" in cols:
        return "mixed"
    if {"ctx", "endings"} <= cols or {"ctx_a", "endings"} <= cols:
        return "hellaswag"
    if {"question", "mc1_targets"} <= cols:
        return "truthfulqa_mc"
    if {"question", "choices", "answerKey"} <= cols:
        return "arc"
    if {"question", "choices", "answer", "subject"} <= cols:
        return "mmlu"
    if "rubric" in cols:
        return "judged"
    if "choices" in cols and ({"answer", "label", "gold"} & cols):
        return "mc"
    if {"question", "answer"} <= cols:
        return "gsm8k"
    if ({"prompt", "messages", "input", "question"} & cols) and (
            {"reference", "references", "answer", "target", "output"} & cols):
        return "gen"
    raise RowError(f"cannot tell what kind of item rows with columns {sorted(cols)} are. Give "
                   "multiple-choice rows question/choices/answer, generation rows "
                   "prompt/references, judged rows prompt/rubric, or a 'kind' column.")


def to_item(row: Any, layout: str) -> dict[str, Any]:
    """One row as an item of ``layout``; raises RowError saying what is wrong."""
    if not isinstance(row, Mapping):
        raise RowError(f"expected an object with named fields, got {type(row).__name__}")
    if layout == "mixed":
        kind = str(row.get("kind") or "").strip().lower()
        layout = {"mc": "mc", "multiple_choice": "mc", "gen": "gen", "generation": "gen",
                  "judged": "judged", "judge": "judged"}.get(kind, "")
        if not layout:
            raise RowError(f"unknown kind {row.get('kind')!r}; one of mc, gen, judged")
    return _READERS[layout](row)


# ---- multiple choice ------------------------------------------------------------------------

def _text(row: Mapping[str, Any], *names: str, required: bool = True) -> str:
    for n in names:
        v = row.get(n)
        if isinstance(v, str) and v.strip():
            return v
    if required:
        raise RowError(f"'{names[0]}' is missing or empty")
    return ""


def _list(value: Any, what: str) -> list[Any]:
    if isinstance(value, str):  # CSV cells hold JSON lists
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError(f"'{what}' is not a list (nor JSON text of one)") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise RowError(f"'{what}' must be a list, got {type(value).__name__}")
    return list(value)


def _choices(value: Any) -> tuple[list[str], list[str] | None]:
    """Choice texts and their labels (ARC's {"text": [...], "label": [...]})."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError("'choices' is not a list (nor JSON text of one)") from None
    if isinstance(value, Mapping):
        texts = _list(value.get("text"), "choices.text")
        labels = [str(x) for x in _list(value.get("label"), "choices.label")]
        if len(labels) != len(texts):
            raise RowError("'choices' has as many labels as texts")
        return [str(t) for t in texts], labels
    texts = _list(value, "choices")
    return [str(t) for t in texts], None


def _gold(answer: Any, choices: list[str], labels: list[str] | None) -> int:
    if isinstance(answer, bool) or answer is None or answer == "":
        raise RowError("'answer' is missing")
    if isinstance(answer, int) or (isinstance(answer, float) and answer.is_integer()):
        idx = int(answer)
    else:
        text = str(answer).strip()
        if labels and text in labels:
            idx = labels.index(text)
        elif text.isdigit():
            idx = int(text)
        elif len(text) == 1 and text.upper() in LETTERS[:len(choices)]:
            idx = LETTERS.index(text.upper())
        elif text in choices:
            idx = choices.index(text)
        else:
            raise RowError(f"answer {answer!r} is neither an index, a label nor one of the choices")
    if not 0 <= idx < len(choices):
        raise RowError(f"answer index {idx} is outside the {len(choices)} choices")
    return idx


def _mc(question: str, context: str, choices: list[str], answer: int,
        **extra: Any) -> dict[str, Any]:
    if len(choices) < 2:
        raise RowError("a multiple-choice item needs at least two choices")
    if any(not c for c in choices):
        raise RowError("a choice is empty")
    return {"kind": "mc", "question": question, "context": context, "choices": choices,
            "answer": answer, **{k: v for k, v in extra.items() if v not in (None, "", [])}}


def _generic_mc(row: Mapping[str, Any]) -> dict[str, Any]:
    question = _text(row, "question", "prompt", "input")
    choices, labels = _choices(row.get("choices"))
    answer = _gold(row.get("answer", row.get("label", row.get("gold"))), choices, labels)
    context = _text(row, "context", required=False) or f"Question: {question}\nAnswer:"
    fewshot = []
    for ex in _list(row.get("fewshot") or [], "fewshot"):
        fewshot.append(_generic_mc(ex))
    return _mc(question, context, choices, answer, fewshot=fewshot, id=row.get("id"))


def _mmlu(row: Mapping[str, Any]) -> dict[str, Any]:
    # lm-eval's mmlu: the choices listed as A. … D. and the letter scored.
    question = _text(row, "question")
    texts, _ = _choices(row.get("choices"))
    answer = _gold(row.get("answer"), texts, None)
    letters = list(LETTERS[:len(texts)])
    listing = "".join(f"\n{letter}. {t}" for letter, t in zip(letters, texts))
    return _mc(question, f"{question.strip()}{listing}\nAnswer:", letters, answer,
               choice_texts=texts, subject=row.get("subject"))


def _arc(row: Mapping[str, Any]) -> dict[str, Any]:
    question = _text(row, "question")
    texts, labels = _choices(row.get("choices"))
    answer = _gold(row.get("answerKey"), texts, labels)
    return _mc(question, f"Question: {question}\nAnswer:", texts, answer, id=row.get("id"))


def _hellaswag_clean(text: str) -> str:
    # lm-eval's hellaswag preprocess, word for word.
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def _hellaswag(row: Mapping[str, Any]) -> dict[str, Any]:
    ctx_a = row.get("ctx_a")
    if isinstance(ctx_a, str):
        ctx = ctx_a + " " + str(row.get("ctx_b") or "").capitalize()
    else:
        ctx = _text(row, "ctx")
    label = str(row.get("activity_label") or "")
    query = _hellaswag_clean(f"{label}: {ctx}" if label else ctx)
    endings = [_hellaswag_clean(str(e)) for e in _list(row.get("endings"), "endings")]
    answer = _gold(row.get("label"), endings, None)
    return _mc(query, query, endings, answer, id=row.get("ind"))


def _truthfulqa(row: Mapping[str, Any]) -> dict[str, Any]:
    question = _text(row, "question")
    targets = row.get("mc1_targets")
    if isinstance(targets, str):
        targets = json.loads(targets)
    if not isinstance(targets, Mapping):
        raise RowError("'mc1_targets' must hold choices and labels")
    choices = [str(c) for c in _list(targets.get("choices"), "mc1_targets.choices")]
    labels = [int(x) for x in _list(targets.get("labels"), "mc1_targets.labels")]
    if labels.count(1) != 1 or len(labels) != len(choices):
        raise RowError("'mc1_targets' must mark exactly one choice correct")
    return _mc(question, f"Q: {question}\nA:", choices, labels.index(1))


# ---- generation and judged ------------------------------------------------------------------

def _messages(row: Mapping[str, Any]) -> list[dict[str, str]] | None:
    raw = row.get("messages")
    if raw is None or raw == "":
        return None
    msgs = _list(raw, "messages")
    out = []
    for m in msgs:
        if not isinstance(m, Mapping) or not isinstance(m.get("content"), str) \
                or m.get("role") not in ("system", "user", "assistant"):
            raise RowError("each message needs a role (system, user, assistant) and text content")
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    if not out or out[-1]["role"] == "assistant":
        raise RowError("the messages must end with a user (or system) turn for the model to answer")
    return out


def _prompt_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    messages = _messages(row)
    if messages is not None:
        return {"messages": messages}
    return {"prompt": _text(row, "prompt", "input", "question")}


def _metrics(row: Mapping[str, Any], default: tuple[str, ...]) -> list[str]:
    raw = row.get("metrics")
    if raw in (None, "", []):
        return list(default)
    names = ([x.strip() for x in raw.split(",")] if isinstance(raw, str) and not raw.startswith("[")
             else [str(x) for x in _list(raw, "metrics")])
    unknown = [n for n in names if n not in GEN_METRICS]
    if unknown:
        raise RowError(f"unknown metric(s) {', '.join(unknown)}; known: {', '.join(GEN_METRICS)}")
    return names


def _references(row: Mapping[str, Any]) -> list[str]:
    for name in ("references", "reference", "answer", "target", "output"):
        v = row.get(name)
        if v is None or v == "":
            continue
        if isinstance(v, str) and not v.startswith("["):
            return [v]
        refs = [str(x) for x in _list(v, name)]
        if refs:
            return refs
    return []


def _gen(row: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"kind": "gen", **_prompt_fields(row)}
    item["references"] = _references(row)
    item["metrics"] = _metrics(row, DEFAULT_GEN_METRICS)
    for name in ("pattern", "tolerance", "schema", "max_tokens", "id"):
        if row.get(name) not in (None, ""):
            item[name] = row[name]
    if isinstance(item.get("schema"), str):
        try:
            item["schema"] = json.loads(item["schema"])
        except ValueError:
            raise RowError("'schema' is not JSON") from None
    if "regex" in item["metrics"] and not item.get("pattern"):
        raise RowError("the regex metric needs a 'pattern'")
    if "json_schema" in item["metrics"] and not isinstance(item.get("schema"), dict):
        raise RowError("the json_schema metric needs a 'schema' object")
    if "pattern" in item:
        try:
            re.compile(str(item["pattern"]))
        except re.error as exc:
            raise RowError(f"'pattern' is not a regular expression ({exc})") from None
    needs_refs = {"exact_match", "contains", "numeric", "rouge_l", "bleu", "chrf"}
    if needs_refs & set(item["metrics"]) and not item["references"]:
        raise RowError("a generation item needs at least one reference for "
                       + ", ".join(sorted(needs_refs & set(item["metrics"]))))
    return item


def _gsm8k(row: Mapping[str, Any]) -> dict[str, Any]:
    question = _text(row, "question")
    answer = _text(row, "answer")
    m = re.search(r"####\s*(-?[0-9.,]+)", answer)
    if not m:
        raise RowError("a GSM8K answer ends with '#### NUMBER'")
    return {"kind": "gen", "prompt": f"Question: {question}\nAnswer:",
            "references": [m.group(1).replace(",", "")], "metrics": ["numeric", "exact_match"],
            "max_tokens": 256, "solution": answer}


def _judged(row: Mapping[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = {"kind": "judged", **_prompt_fields(row),
                            "rubric": _text(row, "rubric")}
    mode = str(row.get("mode") or "pointwise").strip().lower()
    if mode not in ("pointwise", "pairwise"):
        raise RowError(f"mode {mode!r}: one of pointwise, pairwise")
    item["mode"] = mode
    for name in ("baseline", "max_tokens", "id"):
        if row.get(name) not in (None, ""):
            item[name] = row[name]
    return item


_READERS = {"mc": _generic_mc, "mmlu": _mmlu, "arc": _arc, "hellaswag": _hellaswag,
            "truthfulqa_mc": _truthfulqa, "gsm8k": _gsm8k, "gen": _gen, "judged": _judged}
