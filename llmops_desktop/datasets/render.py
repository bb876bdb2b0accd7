"""Turn a canonical row into the text a model trains on, and mark which part it learns.

Chat rows (and Alpaca rows when the tokenizer has a chat template) go through the
tokenizer's own chat template; the trained spans are the assistant turns. Prompt /
completion rows learn the completion; plain text rows learn everything. The same
rendering serves the token-length statistics and the fine-tune, so the histogram shows
what training will see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALPACA_PROMPT = ("Below is an instruction that describes a task{ctx}. Write a response that "
                 "appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
                 "{input_block}### Response:\n")


@dataclass(frozen=True)
class Rendered:
    text: str
    spans: tuple[tuple[int, int], ...]  # character ranges whose tokens carry the loss
    add_special_tokens: bool  # whether the tokenizer should add its BOS itself


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def _apply(tokenizer: Any, messages: list[dict[str, str]], gen: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def _fallback_chat(messages: list[dict[str, str]], eos: str) -> Rendered:
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in messages:
        head = f"<|{m['role']}|>\n"
        body = m["content"] + (eos if m["role"] == "assistant" else "") + "\n"
        parts += [head, body]
        if m["role"] == "assistant":
            spans.append((pos + len(head), pos + len(head) + len(body)))
        pos += len(head) + len(body)
    return Rendered("".join(parts), tuple(spans), True)


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> Rendered:
    eos = getattr(tokenizer, "eos_token", None) or ""
    if not has_chat_template(tokenizer):
        return _fallback_chat(messages, eos)
    full = _apply(tokenizer, messages, False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _apply(tokenizer, messages[:i], True) if i else ""
        upto = _apply(tokenizer, messages[: i + 1], False)
        if full.startswith(upto) and upto.startswith(before) and len(upto) > len(before):
            spans.append((len(before), len(upto)))
            cursor = len(upto)
            continue
        # A template that rewrites earlier turns: find the reply itself in the full text.
        at = full.find(m["content"], cursor)
        if at >= 0:
            end = at + len(m["content"])
            if eos and full.startswith(eos, end):
                end += len(eos)
            spans.append((at, end))
            cursor = end
    # As transformers does for chat templates: the template writes any BOS it wants.
    return Rendered(full, tuple(spans), False)


def render_row(tokenizer: Any, row: dict[str, Any], shape: str) -> Rendered:
    eos = getattr(tokenizer, "eos_token", None) or ""
    if shape == "chat":
        return render_chat(tokenizer, row["messages"])
    if shape == "preference":  # measured (and SFT-trained) as its prompt and chosen reply
        if isinstance(row["prompt"], list):
            return render_chat(tokenizer, [*row["prompt"],
                                           {"role": "assistant", "content": row["chosen"]}])
        return render_row(tokenizer, {"prompt": row["prompt"], "completion": row["chosen"]},
                          "prompt_completion")
    if shape == "instruction":
        if has_chat_template(tokenizer):
            user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
            return render_chat(tokenizer, [{"role": "user", "content": user},
                                           {"role": "assistant", "content": row["output"]}])
        prompt = ALPACA_PROMPT.format(
            ctx=", paired with an input that provides further context" if row.get("input") else "",
            instruction=row["instruction"],
            input_block=f"### Input:\n{row['input']}\n\n" if row.get("input") else "")
        text = prompt + row["output"] + eos
        return Rendered(text, ((len(prompt), len(text)),), True)
    if shape == "prompt_completion":
        text = row["prompt"] + row["completion"] + eos
        return Rendered(text, ((len(row["prompt"]), len(text)),), True)
    text = row["text"] + eos
    return Rendered(text, ((0, len(text)),), True)


def encode_row(tokenizer: Any, row: dict[str, Any], shape: str) -> tuple[list[int], list[bool]]:
    """Token ids and, for each, whether it is trained (its label kept)."""
    r = render_row(tokenizer, row, shape)
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(r.text, add_special_tokens=r.add_special_tokens,
                        return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        mask = [any(e > s0 and s < e0 for s0, e0 in r.spans) and e > s
                for s, e in enc["offset_mapping"]]
        return ids, mask
    # Slow tokenizers have no offsets: tokenize each piece on its own.
    ids: list[int] = []
    mask: list[bool] = []
    bounds = sorted({0, len(r.text), *[p for span in r.spans for p in span]})
    first = True
    for a, b in zip(bounds, bounds[1:]):
        piece = tokenizer(r.text[a:b], add_special_tokens=r.add_special_tokens and first)
        first = False
        trained = any(a >= s0 and b <= e0 for s0, e0 in r.spans)
        ids += piece["input_ids"]
        mask += [trained] * len(piece["input_ids"])
    return ids, mask
