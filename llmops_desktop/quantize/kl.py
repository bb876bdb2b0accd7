"""KL divergence and top-1 agreement of a quantized variant against its parent.

What llama.cpp's ``llama-perplexity --kl-divergence`` reports: for every scored
position of the held-out text, the KL divergence KL(parent ‖ variant) between the two
next-token distributions over the whole vocabulary, and whether both put the same
token first. The parent's log-probabilities are computed once (through torch for a
Hugging Face parent, through llama.cpp for a GGUF one) and kept in a file while the
job runs; each variant is then read over exactly the same token ids, in the same
windows as :func:`~llmops_desktop.quantize.perplexity.perplexity`. Two models whose
tokenizers give different ids, or whose vocabularies differ in size, are not compared.

The functions are generators of :class:`Progress` events (one per window, so a job
cancels between windows) that return their result.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_desktop.errors import DiskFullError, InvalidInputError
from llmops_desktop.jobs.events import Event, Progress

KL_METRIC = "kl_divergence"
TOP1_METRIC = "top1_agreement"
CHUNK_ROWS = 64
"""Positions converted to float64 at a time (64 × a 128k vocabulary = 64 MiB)."""


@dataclass(frozen=True)
class Reference:
    """The parent's log-probabilities at every scored position (a float32 file of
    ``positions × n_vocab``) and the token windows they were computed on."""

    path: Path
    windows: tuple[tuple[int, ...], ...]
    n_vocab: int
    engine: str
    text_sha256: str
    n_ctx: int

    @property
    def positions(self) -> int:
        return sum(len(w) - 1 for w in self.windows)

    def log_probs(self) -> Any:
        import numpy as np

        return np.memmap(self.path, dtype=np.float32, mode="r",
                         shape=(self.positions, self.n_vocab))


@dataclass(frozen=True)
class KLResult:
    kl_mean: float
    kl_ci95: tuple[float, float]
    kl_median: float
    kl_p99: float
    kl_max: float
    top1_agreement: float
    top1_ci95: tuple[float, float]
    tokens_scored: int

    def params(self) -> dict[str, Any]:
        """The figures stored beside the mean (evaluation params)."""
        return {"kl_ci95": list(self.kl_ci95), "kl_median": self.kl_median,
                "kl_p99": self.kl_p99, "kl_max": self.kl_max,
                "top1_ci95": list(self.top1_ci95), "tokens": self.tokens_scored}


def windows_of(tokens: list[int], bos: int | None, n_ctx: int) -> list[list[int]]:
    """The perplexity windows: ``n_ctx - 1`` tokens each, after the BOS token if any."""
    step = n_ctx - 1
    out = []
    for start in range(0, len(tokens) - 1, step):
        window = ([bos] if bos is not None and bos >= 0 else []) + tokens[start:start + step]
        if len(window) < 2:
            break
        out.append(window)
    return out


def log_softmax(logits: Any) -> Any:
    """Rows of logits to log-probabilities, in float64."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    top = x.max(axis=1, keepdims=True)
    return x - (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))


def _open_llama(gguf: Path, n_ctx: int, threads: int) -> Any:
    from llama_cpp import Llama

    return Llama(model_path=str(gguf), n_ctx=n_ctx, n_batch=n_ctx, logits_all=True,
                 n_threads=threads, verbose=False, seed=0)


def _llama_windows(llm: Any, text: str, n_ctx: int, max_tokens: int) -> list[list[int]]:
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=False)[:max_tokens]
    return windows_of(tokens, llm.token_bos(), n_ctx)


def _llama_logits(llm: Any, window: list[int]) -> Any:
    """The logits at every position of ``window`` but the last (a view, float32)."""
    llm.reset()
    llm.eval(window)
    return llm.scores[: len(window) - 1]


def _chunks(n: int) -> range:
    """Row offsets of CHUNK_ROWS-row slices: float64 temporaries stay at CHUNK_ROWS rows."""
    return range(0, n, CHUNK_ROWS)


def _check_space(folder: Path, positions: int, n_vocab: int) -> None:
    needed = positions * n_vocab * 4
    free = shutil.disk_usage(folder).free
    if free < needed + 64 * 1024 * 1024:
        raise DiskFullError(
            f"Not enough disk space for the parent's log-probabilities (KL divergence): "
            f"{needed / 1e9:.2f} GB is needed and {free / 1e9:.2f} GB is free at {folder}. "
            "Free some space, or quantize with --no-eval.")


def reference_from_gguf(gguf: Path, text: str, out: Path, *, n_ctx: int = 512,
                        threads: int = 2, max_tokens: int = 4096) -> Iterator[Event]:
    """The parent GGUF's log-probabilities on ``text`` (f16/f32 ideally), written to
    ``out``; returns a :class:`Reference`."""
    llm = _open_llama(gguf, n_ctx, threads)
    try:
        windows = _llama_windows(llm, text, n_ctx, max_tokens)
        return (yield from _write(out, windows, int(llm.n_vocab()), "llama.cpp", text, n_ctx,
                                  lambda w: _llama_logits(llm, w)))
    finally:
        if hasattr(llm, "close"):
            llm.close()


def reference_from_hf(model_dir: Path, text: str, out: Path, *, n_ctx: int = 512,
                      threads: int = 2, max_tokens: int = 4096) -> Iterator[Event]:
    """A Hugging Face parent's log-probabilities through torch (its own tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(max(1, threads))
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto").eval()
    tokens = list(tok(text, add_special_tokens=False, verbose=False)["input_ids"])[:max_tokens]
    windows = windows_of(tokens, tok.bos_token_id, n_ctx)
    n_vocab = int(model.get_output_embeddings().weight.shape[0])

    def logits_of(window: list[int]) -> Any:
        with torch.inference_mode():
            return model(torch.tensor([window])).logits[0, : len(window) - 1].float().numpy()

    return (yield from _write(out, windows, n_vocab, "torch", text, n_ctx, logits_of))


def _write(out: Path, windows: list[list[int]], n_vocab: int, engine: str, text: str,
           n_ctx: int, logits_of: Any) -> Iterator[Event]:
    import numpy as np

    if not windows:
        raise InvalidInputError("The evaluation text is too short to compare a variant with its "
                                "parent. Choose a longer text.")
    positions = sum(len(w) - 1 for w in windows)
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_space(out.parent, positions, n_vocab)
    table = np.memmap(out, dtype=np.float32, mode="w+", shape=(positions, n_vocab))
    row = 0
    for i, window in enumerate(windows):
        yield Progress(i, len(windows), "windows",
                       f"computing the parent's log-probabilities ({engine})")
        logits = logits_of(window)
        for at in _chunks(len(logits)):
            chunk = log_softmax(logits[at: at + CHUNK_ROWS])
            table[row + at: row + at + len(chunk)] = chunk
        row += len(window) - 1
    table.flush()
    del table
    return Reference(path=out, windows=tuple(tuple(w) for w in windows), n_vocab=n_vocab,
                     engine=engine, text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                     n_ctx=n_ctx)


def compare_gguf(reference: Reference, gguf: Path, text: str, *,
                 threads: int = 2, max_tokens: int = 4096) -> Iterator[Event]:
    """KL(parent ‖ variant) and top-1 agreement of ``gguf`` over the reference's token
    ids; returns a :class:`KLResult`. Raises :class:`InvalidInputError` when the two
    cannot be compared (different vocabulary or tokenization)."""
    import numpy as np

    llm = _open_llama(gguf, reference.n_ctx, threads)
    try:
        n_vocab = int(llm.n_vocab())
        if n_vocab != reference.n_vocab:
            raise InvalidInputError(
                f"{gguf.name} cannot be compared with its parent: its vocabulary has {n_vocab:,} "
                f"tokens, the parent's {reference.n_vocab:,}.")
        windows = _llama_windows(llm, text, reference.n_ctx, max_tokens)
        mismatch = _first_difference(windows, reference.windows)
        if mismatch is not None:
            raise InvalidInputError(
                f"{gguf.name} cannot be compared with its parent: the two tokenize the "
                f"evaluation text differently ({mismatch}), so their predictions are not for "
                "the same tokens.")
        parent = reference.log_probs()
        kl = np.empty(reference.positions, dtype=np.float64)
        same = np.empty(reference.positions, dtype=bool)
        row = 0
        for i, window in enumerate(windows):
            yield Progress(i, len(windows), "windows",
                           f"comparing {gguf.name} with the parent (KL divergence, top-1)")
            logits = _llama_logits(llm, window)
            n = len(window) - 1
            for at in _chunks(n):
                part = slice(row + at, row + min(at + CHUNK_ROWS, n))
                kl[part], same[part] = kl_rows(parent[part],
                                               log_softmax(logits[at: at + CHUNK_ROWS]))
            row += n
        del parent
    finally:
        if hasattr(llm, "close"):
            llm.close()
    return summarize(kl, same)


def kl_rows(parent_log_probs: Any, variant_log_probs: Any) -> tuple[Any, Any]:
    """Per row: KL(P ‖ Q) = Σ p (log p − log q) over the vocabulary, and whether
    argmax P == argmax Q."""
    import numpy as np

    p_log = np.asarray(parent_log_probs, dtype=np.float64)
    q_log = np.asarray(variant_log_probs, dtype=np.float64)
    kl = (np.exp(p_log) * (p_log - q_log)).sum(axis=1)
    return np.maximum(kl, 0.0), p_log.argmax(axis=1) == q_log.argmax(axis=1)


def summarize(kl: Any, same: Any) -> KLResult:
    """Mean KL with its 95 % interval (mean ± 1.96 standard errors, as llama.cpp prints
    ``Mean KLD: x ± y``), median, 99th percentile and maximum; the share of positions
    whose top token agrees, with its 95 % interval."""
    import numpy as np

    n = int(len(kl))
    mean = float(kl.mean())
    err = 1.96 * float(kl.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    agree = float(same.mean())
    agree_err = 1.96 * math.sqrt(agree * (1 - agree) / (n - 1)) if n > 1 else 0.0
    return KLResult(
        kl_mean=mean, kl_ci95=(max(0.0, mean - err), mean + err),
        kl_median=float(np.median(kl)), kl_p99=float(np.percentile(kl, 99)),
        kl_max=float(kl.max()), top1_agreement=agree,
        top1_ci95=(max(0.0, agree - agree_err), min(1.0, agree + agree_err)), tokens_scored=n)


def _first_difference(mine: list[list[int]], theirs: tuple[tuple[int, ...], ...]) -> str | None:
    a = [t for w in mine for t in w]
    b = [t for w in theirs for t in w]
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"token {i}: id {x} here, {y} in the parent"
    if len(a) != len(b):
        return f"{len(a)} tokens here, {len(b)} in the parent"
    return None
