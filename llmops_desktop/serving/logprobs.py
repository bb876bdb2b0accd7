"""Token log-probabilities in the two shapes OpenAI returns them.

Engines hand over one :class:`~.engines.llama_batch.TokenLogprob` per generated token
(the chosen token's log-probability and the top N, from the log-softmax of the raw
logits). Completions get the legacy shape (``tokens``, ``token_logprobs``,
``top_logprobs`` as token -> logprob maps, ``text_offset``); chat gets ``content``, a
list of ``{token, logprob, bytes, top_logprobs}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

MAX_TOP_LOGPROBS = 20  # what OpenAI allows for chat; completions allow 5, we allow 20


def completion_logprobs(entries: Sequence[Any], text_offset: int = 0) -> dict[str, Any]:
    """The completions shape; ``text_offset`` is where the first token starts in the
    completion text (streamed chunks continue from the previous ones)."""
    tokens, values, tops, offsets = [], [], [], []
    offset = text_offset
    for e in entries:
        tokens.append(e.token)
        values.append(e.logprob)
        top: dict[str, float] = {}
        for t in e.top:
            top.setdefault(t.token, t.logprob)
        tops.append(top)
        offsets.append(offset)
        offset += len(e.token)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops,
            "text_offset": offsets}


def chat_logprobs(entries: Sequence[Any]) -> dict[str, Any]:
    """The chat shape."""
    return {"content": [{"token": e.token, "logprob": e.logprob, "bytes": list(e.bytes),
                         "top_logprobs": [{"token": t.token, "logprob": t.logprob,
                                           "bytes": list(t.bytes)} for t in e.top]}
                        for e in entries], "refusal": None}


def logprobs_body(kind: str, entries: Sequence[Any], text_offset: int = 0) -> dict[str, Any]:
    """``chat`` or ``completion`` shape for these tokens."""
    if kind == "chat":
        return chat_logprobs(entries)
    return completion_logprobs(entries, text_offset)
