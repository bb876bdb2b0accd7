"""Embeddings from a llama.cpp model: a second, small context with ``embeddings`` on.

The context is made on first use, on the scheduler thread (the one thread that runs
llama.cpp compute, see :mod:`.llama_batch`), and embeds inputs between decode steps:
up to ``N_SEQ`` inputs (``MAX_TOKENS`` tokens) per ``llama_decode``, pooled by the
model's own pooling type (an embedding model declares one in its GGUF) or by the mean
over the input's tokens for a model that declares none, then L2-normalised. Rerankers
(rank pooling) give a score, not a vector, and are refused.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.serving.engines.base import EmbeddingsUnsupportedError, check_embed_inputs

N_SEQ = 8  # inputs per decode
MAX_TOKENS = 512  # per decode, so per input too: encoders need a whole batch in one ubatch


@dataclass
class EmbedJob:
    inputs: list[list[int]]
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)


class Embedder:
    """The embedding context of one model; every call on the scheduler thread."""

    def __init__(self, model: Any, threads: int, n_ctx: int) -> None:
        import llama_cpp
        from llama_cpp._utils import suppress_stdout_stderr

        self._lib = llama_cpp
        self.max_tokens = min(MAX_TOKENS, n_ctx)
        arch = model.metadata().get("general.architecture", "")
        declared = model.metadata().get(f"{arch}.pooling_type")
        cp = llama_cpp.llama_context_default_params()
        cp.embeddings = True
        cp.pooling_type = (llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED if declared not in
                           (None, "0") else llama_cpp.LLAMA_POOLING_TYPE_MEAN)
        cp.n_ctx = cp.n_batch = cp.n_ubatch = self.max_tokens  # a decode is one ubatch
        cp.n_seq_max = N_SEQ
        cp.kv_unified = True
        cp.n_threads = cp.n_threads_batch = threads
        cp.no_perf = True
        with suppress_stdout_stderr(disable=False):
            self.ctx = llama_cpp.llama_init_from_model(model.model, cp)
        if not self.ctx:
            raise EmbeddingsUnsupportedError(
                "llama.cpp could not make an embedding context for this model.")
        if llama_cpp.llama_pooling_type(self.ctx) == llama_cpp.LLAMA_POOLING_TYPE_RANK:
            self.close()
            raise EmbeddingsUnsupportedError(
                "This model is a reranker (it scores pairs of texts); it gives no embedding "
                "vectors. Serve an embedding model for /v1/embeddings.")
        self.n_embd = int(llama_cpp.llama_model_n_embd(model.model))
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.max_tokens, 0, N_SEQ)

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """One L2-normalised vector per input, in order."""
        import numpy as np

        check_embed_inputs(inputs, self.max_tokens)
        lib, b = self._lib, self.batch
        vectors: list[list[float]] = []
        for group in self._groups(inputs):
            k = 0
            for seq, ids in enumerate(group):
                for pos, token in enumerate(ids):
                    b.token[k], b.pos[k], b.n_seq_id[k] = token, pos, 1
                    b.seq_id[k][0], b.logits[k] = seq, True
                    k += 1
            b.n_tokens = k
            lib.llama_memory_clear(self.mem, True)
            rc = lib.llama_decode(self.ctx, b)
            if rc != 0:
                raise RuntimeError(f"llama.cpp could not embed these inputs (code {rc})")
            for seq in range(len(group)):
                ptr = lib.llama_get_embeddings_seq(self.ctx, seq)
                if not ptr:
                    raise EmbeddingsUnsupportedError("This model gives no pooled embeddings.")
                vec = np.ctypeslib.as_array(ptr, shape=(self.n_embd,)).astype(np.float64)
                norm = float(np.linalg.norm(vec))
                vectors.append((vec / norm if norm > 0 else vec).tolist())
        lib.llama_memory_clear(self.mem, True)
        return vectors

    def _groups(self, inputs: list[list[int]]) -> list[list[list[int]]]:
        """Consecutive inputs, at most ``N_SEQ`` and ``max_tokens`` tokens per group."""
        groups: list[list[list[int]]] = [[]]
        used = 0
        for ids in inputs:
            if len(groups[-1]) == N_SEQ or used + len(ids) > self.max_tokens:
                groups.append([])
                used = 0
            groups[-1].append(ids)
            used += len(ids)
        return groups

    def close(self) -> None:
        if getattr(self, "batch", None) is not None:
            self._lib.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            self._lib.llama_free(self.ctx)
            self.ctx = None
