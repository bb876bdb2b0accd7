"""The shapes of fine-tuning data, how they are recognised, and each row's canonical form.

========================  ===========================================  =====================
shape                     columns                                      canonical row
========================  ===========================================  =====================
``chat``                  ``messages``: [{role, content}, ...]         ``{"messages": [...]}``
``instruction`` (Alpaca)  ``instruction``, ``input`` (optional),       same three keys
                          ``output``
``prompt_completion``     ``prompt``, ``completion``                   same two keys
``text``                  ``text``                                     ``{"text": ...}``
``preference``            ``prompt`` (text or messages), ``chosen``,   same three keys
                          ``rejected``
========================  ===========================================  =====================

A preference row (DPO, ORPO) pairs a better and a worse reply to the same prompt; its
prompt is a text or a conversation (messages without the reply), and ``chosen`` and
``rejected`` are the replies' texts (a one-message list ``[{"role": "assistant", ...}]``,
TRL's conversational form, is taken as its text).

When the columns are named otherwise, a mapping ``{canonical field: column}`` says which
is which (``--map prompt=question --map completion=answer``). ShareGPT-style messages
(``from``/``value``, ``human``/``gpt``) are accepted and turned into role/content.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmops_desktop.errors import InvalidInputError

SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # shape: (required fields, optional fields)
    "chat": (("messages",), ()),
    "instruction": (("instruction", "output"), ("input",)),
    "prompt_completion": (("prompt", "completion"), ()),
    "text": (("text",), ()),
    "preference": (("prompt", "chosen", "rejected"), ()),
}
SHAPE_LABELS = {"chat": "chat messages", "instruction": "instruction / input / output (Alpaca)",
                "prompt_completion": "prompt / completion", "text": "plain text",
                "preference": "prompt / chosen / rejected (preference pairs)"}
# Column names seen in the wild for each canonical field, tried in order.
ALIASES: dict[str, tuple[str, ...]] = {
    "messages": ("messages", "conversations", "conversation", "chat"),
    "instruction": ("instruction",),
    "input": ("input", "context"),
    "output": ("output", "response"),
    "prompt": ("prompt", "question", "query"),
    "completion": ("completion", "answer", "chosen"),
    "text": ("text", "content", "document"),
    "chosen": ("chosen",),
    "rejected": ("rejected",),
}
ROLES = ("system", "user", "assistant", "tool")
_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                   "system": "system", "tool": "tool", "bot": "assistant", "model": "assistant"}
DETECT_ORDER = ("chat", "preference", "instruction", "prompt_completion", "text")


@dataclass(frozen=True)
class BadRow:
    """A row that was not imported: its line (or row number) and why."""

    line: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason}


class RowError(ValueError):
    """One row does not fit the shape; the message says what is wrong."""


def parse_mapping(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["prompt=question", ...]`` (or a dict) to ``{canonical field: column}``."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, Mapping) else (_split_pair(s) for s in items)
    known = {f for req, opt in SHAPES.values() for f in (*req, *opt)}
    out: dict[str, str] = {}
    for field, column in pairs:
        field, column = field.strip(), column.strip()
        if field not in known:
            raise InvalidInputError(f"--map {field}=…: {field!r} is not a field of any shape; "
                                    f"known fields: {', '.join(sorted(known))}.")
        if not column:
            raise InvalidInputError(f"--map {field}=…: give the column name after '='.")
        out[field] = column
    return out


def _split_pair(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise InvalidInputError(f"--map {text!r}: write FIELD=COLUMN, e.g. prompt=question.")
    a, _, b = text.partition("=")
    return a, b


def detect_shape(columns: Iterable[str], mapping: Mapping[str, str] | None = None,
                 shape: str | None = None) -> tuple[str, dict[str, str]]:
    """The shape and the full mapping ``{field: column}`` for these columns.

    An explicit ``shape`` is checked; otherwise the first shape (chat, instruction,
    prompt/completion, text) whose required fields are all present wins.
    """
    cols = list(dict.fromkeys(columns))
    mapping = dict(mapping or {})
    for field, column in mapping.items():
        if column not in cols:
            raise InvalidInputError(
                f"--map {field}={column}: the data has no column {column!r}. Its columns: "
                f"{', '.join(cols) or '(none)'}.")
    if shape is not None and shape not in SHAPES:
        raise InvalidInputError(f"Unknown shape {shape!r}; one of {', '.join(SHAPES)}.")
    candidates = [shape] if shape else list(DETECT_ORDER)
    if not shape and mapping:  # a mapping names the shape it is meant for
        meant = [s for s in DETECT_ORDER if set(mapping) & set(SHAPES[s][0])]
        candidates = meant + [s for s in DETECT_ORDER if s not in meant]
    for s in candidates:
        required, optional = SHAPES[s]
        found: dict[str, str] = {}
        for f in (*required, *optional):
            col = mapping.get(f) or next((a for a in ALIASES[f] if a in cols), None)
            if col is not None:
                found[f] = col
        if all(f in found for f in required):
            return s, found
    if shape:
        required = SHAPES[shape][0]
        missing = [f for f in required if f not in mapping and not any(a in cols for a in ALIASES[f])]
        raise InvalidInputError(
            f"The data has no column for {', '.join(missing)} (shape {shape}). Its columns: "
            f"{', '.join(cols) or '(none)'}. Map them, e.g. --map {missing[0]}=COLUMN.")
    raise InvalidInputError(
        "Cannot tell what shape this data has. Its columns: "
        f"{', '.join(cols) or '(none)'}. Expected one of: 'messages' (chat); 'instruction' + "
        "'output' (Alpaca); 'prompt' + 'completion'; 'text'. Map your columns, e.g. "
        "--map prompt=question --map completion=answer.")


def _as_text(value: Any, field: str, *, optional: bool = False) -> str:
    if value is None:
        if optional:
            return ""
        raise RowError(f"'{field}' is missing")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RowError(f"'{field}' must be text, not {type(value).__name__}")
    return value if isinstance(value, str) else str(value)


def _messages(value: Any, column: str, *, reply_needed: bool = True) -> list[dict[str, str]]:
    if isinstance(value, str):  # a CSV cell or a Parquet string holding JSON
        try:
            value = json.loads(value)
        except ValueError:
            raise RowError(f"'{column}' is text that is not a JSON list of messages") from None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list):
        raise RowError(f"'{column}' must be a list of messages, not {type(value).__name__}")
    if not value:
        raise RowError(f"'{column}' is an empty list")
    out: list[dict[str, str]] = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict):
            raise RowError(f"message {i} is not an object with 'role' and 'content'")
        if "role" in m:
            role, content = m.get("role"), m.get("content")
        elif "from" in m:
            role, content = _SHAREGPT_ROLES.get(str(m.get("from")).lower(), m.get("from")), m.get("value")
        else:
            raise RowError(f"message {i} has no 'role'")
        if role not in ROLES:
            raise RowError(f"message {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise RowError(f"message {i} ({role}) has content that is not text")
        out.append({"role": role, "content": content})
    if reply_needed and not any(m["role"] == "assistant" for m in out):
        raise RowError("no assistant message: nothing to learn from")
    return out


def _reply_text(value: Any, column: str) -> str:
    """A preference reply: text, or TRL's conversational ``[{"role": "assistant", ...}]``."""
    if isinstance(value, list) or hasattr(value, "tolist"):
        turns = _messages(value, column)
        return next(m["content"] for m in reversed(turns) if m["role"] == "assistant")
    return _as_text(value, column)


def _preference(record: dict[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    prompt: Any = record[mapping["prompt"]]
    if isinstance(prompt, list) or hasattr(prompt, "tolist"):
        prompt = _messages(prompt, mapping["prompt"], reply_needed=False)
        if prompt[-1]["role"] == "assistant":
            raise RowError(f"'{mapping['prompt']}' ends with an assistant message; the prompt is "
                           "the conversation before the reply")
    else:
        prompt = _as_text(prompt, mapping["prompt"])
    return {"prompt": prompt, "chosen": _reply_text(record[mapping["chosen"]], mapping["chosen"]),
            "rejected": _reply_text(record[mapping["rejected"]], mapping["rejected"])}


def normalize_row(record: Any, shape: str, mapping: Mapping[str, str]) -> dict[str, Any]:
    """The canonical form of one record; raises :class:`RowError` with the reason."""
    if not isinstance(record, dict):
        raise RowError(f"a row must be an object with named fields, not {type(record).__name__}")
    required, optional = SHAPES[shape]
    for f in required:
        col = mapping[f]
        if col not in record:
            raise RowError(f"no '{col}' field" + (f" (mapped to {f})" if col != f else ""))
    if shape == "chat":
        return {"messages": _messages(record[mapping["messages"]], mapping["messages"])}
    if shape == "preference":
        return _preference(record, mapping)
    out: dict[str, Any] = {}
    for f in required:
        out[f] = _as_text(record[mapping[f]], mapping[f])
    for f in optional:
        col = mapping.get(f)
        out[f] = _as_text(record.get(col) if col else None, col or f, optional=True)
    return out


def is_empty(row: Mapping[str, Any], shape: str) -> bool:
    """A row whose text is all blank (kept, but counted in the statistics)."""
    if shape == "chat":
        return all(not m["content"].strip() for m in row["messages"])
    if shape == "instruction":
        return not row["output"].strip() or not (row["instruction"].strip() or row["input"].strip())
    if shape == "prompt_completion":
        return not row["completion"].strip()
    if shape == "preference":
        return not row["chosen"].strip() or not row["rejected"].strip()
    return not row["text"].strip()


def has_prompts(shape: str) -> bool:
    """Whether rows of this shape split into a prompt and a completion (loss on completions)."""
    return shape != "text"
