"""Perplexity of a GGUF on a held-out text, through llama.cpp.

The text is tokenized by the model, cut into windows of ``n_ctx`` tokens, and each
token after the first of its window is scored from the logits llama.cpp computes
for the tokens before it. Same text, same tokenizer, same windows: the figures of
a parent and its quantized children are comparable.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    tokens_scored: int
    n_ctx: int
    text_sha256: str


def default_eval_text() -> Path:
    from llmops_desktop.resources import RESOURCES_DIR

    return RESOURCES_DIR / "eval" / "heldout-en.txt"


def perplexity(gguf: Path, text: str, *, n_ctx: int = 512, threads: int = 2,
               max_tokens: int = 4096) -> PerplexityResult:
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
                n_threads=threads, verbose=False, seed=0)
    try:
        tokens = llm.tokenize(text.encode("utf-8"), add_bos=False)[:max_tokens]
        bos = llm.token_bos()
        nll = 0.0
        scored = 0
        step = n_ctx - 1
        for start in range(0, len(tokens) - 1, step):
            window = ([bos] if bos >= 0 else []) + tokens[start:start + step]
            if len(window) < 2:
                break
            llm.reset()
            llm.eval(window)
            logits = np.asarray(llm.scores[: len(window)], dtype=np.float64)
            top = logits.max(axis=1, keepdims=True)
            logz = (top[:, 0] + np.log(np.exp(logits - top).sum(axis=1)))
            targets = np.asarray(window[1:])
            picked = logits[np.arange(len(window) - 1), targets]
            nll += float((logz[:-1] - picked).sum())
            scored += len(window) - 1
    finally:
        if hasattr(llm, "close"):
            llm.close()
    if scored == 0:
        raise ValueError("The evaluation text is too short to measure perplexity.")
    return PerplexityResult(perplexity=math.exp(nll / scored), tokens_scored=scored, n_ctx=n_ctx,
                            text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())
