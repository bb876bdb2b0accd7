"""Continuous batching over one llama.cpp context: slots, a scheduler thread, prefix reuse.

One context holds ``n_seq`` sequences (``n_seq_max``); each slot owns one sequence id
and its share of the KV cache (``n_ctx`` cells per sequence, so an admitted request
always fits). A single scheduler thread runs the loop llama.cpp's own server runs:

- every step, each generating slot contributes its last sampled token, and slots still
  reading their prompt add a chunk of it (up to ``n_batch`` rows in all); one
  ``llama_decode`` computes them all, so a new request starts while others stream;
- each slot samples from its own row with its own sampler chain (top-k, top-p, min-p,
  temperature, seed, optional GBNF grammar; greedy at temperature 0);
- a request takes the free slot whose cached tokens share the longest prefix with its
  prompt, and only the cells past that prefix are removed (``llama_memory_seq_rm``) and
  prefilled again; among slots that would reuse about as much, it takes the one that
  keeps the busy sequence ids contiguous (see :meth:`BatchScheduler._admit`), then the
  least recently used;
- a finished or cancelled request gives its slot back at once; its cells stay as that
  slot's cache (they are that sequence's own KV stream, no other sequence could use
  them) until a request that shares less of them cuts them.

All llama.cpp compute runs on the scheduler thread: OpenMP's workers belong to the
thread that calls llama.cpp, so one thread keeps one team (see llama_cpp.py).
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.serving.engines.base import IncrementalText, Piece

TOP_K = 40  # llama.cpp server's defaults; OpenAI's API only exposes temperature and top_p
MIN_P = 0.05
_END = object()


@dataclass(frozen=True)
class TopLogprob:
    token: str
    bytes: bytes
    logprob: float


@dataclass(frozen=True)
class TokenLogprob:
    """The chosen token's log-probability and the ``top`` most likely ones (sorted), from
    the log-softmax of the raw logits (before any sampler)."""

    token: str
    bytes: bytes
    logprob: float
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class LogprobPiece(Piece):
    """A piece that also carries its token's log-probabilities."""

    logprob: TokenLogprob | None = None


@dataclass
class SequenceRequest:
    """One generation handed to the scheduler; pieces come back on :attr:`out`."""

    ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = TOP_K
    min_p: float = MIN_P
    seed: int = 0
    grammar: str | None = None
    logprobs: int | None = None  # None: none; 0: the chosen token's only; N: and the top N
    cancel: threading.Event = field(default_factory=threading.Event)
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)

    def pieces(self) -> Any:
        """Pieces until the end (raises what the scheduler reported)."""
        while True:
            item = self.out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class _Slot:
    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.cache: list[int] = []  # tokens whose cells are in this sequence's KV cache
        self.req: SequenceRequest | None = None
        self.todo: list[int] = []  # prompt tokens still to decode
        self.next_token: int | None = None  # sampled, not decoded yet
        self.produced = 0
        self.text: IncrementalText | None = None
        self.sampler: Any = None
        self.used_at = 0  # when a request last took this slot (admission count)


@dataclass
class SchedulerStats:
    slots: int
    slots_in_use: int = 0
    queued: int = 0
    batch_size: int = 0  # sequences in the last decode step
    reused_prompt_tokens: int = 0
    prefilled_prompt_tokens: int = 0
    steps: int = 0


class BatchScheduler:
    """Owns a llama.cpp context of ``n_seq`` sequences and the thread that decodes them."""

    def __init__(self, model: Any, *, n_ctx: int, n_seq: int, threads: int,
                 n_batch: int | None = None, lora: Any = None) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.model = model  # llama_cpp._internals.LlamaModel
        self.vocab = model.vocab
        self.n_vocab = int(model.n_vocab())
        self.n_batch = max(n_batch or 512, n_seq)
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx, cp.n_seq_max = n_ctx * n_seq, n_seq
        cp.n_batch, cp.n_ubatch = self.n_batch, min(self.n_batch, 512)
        cp.n_threads = cp.n_threads_batch = threads
        cp.kv_unified = False  # a stream of n_ctx cells per sequence: admitted work fits
        cp.no_perf = True
        from llama_cpp._logger import set_verbose
        from llama_cpp._utils import suppress_stdout_stderr

        set_verbose(False)  # what llama_cpp.Llama(verbose=False) does: errors only
        with suppress_stdout_stderr(disable=False):
            self.ctx = llama_cpp.llama_init_from_model(model.model, cp)
        if not self.ctx:
            raise MemoryError(f"llama.cpp could not make a context of {n_seq} x {n_ctx} "
                              "tokens; lower --ctx or --parallel.")
        if lora is not None:
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(lora)
            scales = (ctypes.c_float * 1)(1.0)
            if llama_cpp.llama_set_adapters_lora(self.ctx, adapters, 1, scales):
                raise ValueError("llama.cpp could not apply the LoRA adapter")
        self.n_ctx = min(n_ctx, int(llama_cpp.llama_n_ctx_seq(self.ctx)))
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(self.n_batch, 0, n_seq)
        self.slots = [_Slot(s) for s in range(n_seq)]
        self.stats = SchedulerStats(slots=n_seq)
        self._pending: deque[SequenceRequest] = deque()
        self._embed_jobs: deque[Any] = deque()
        self._admitted = 0
        self._embedder: Any = None  # llama_embed.Embedder, made on first use
        self._threads = threads
        self._cond = threading.Condition()
        self._stopping = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self.close()
            raise self._error

    # ---- the public side (any thread) ----------------------------------------------------

    def submit(self, req: SequenceRequest) -> SequenceRequest:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the engine is closed")
            self._pending.append(req)
            self.stats.queued = len(self._pending)
            self._cond.notify()
        return req

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """L2-normalised embedding vectors, computed on the scheduler thread between
        decode steps (see :mod:`.llama_embed`)."""
        from llmops_desktop.serving.engines.llama_embed import EmbedJob

        job = EmbedJob(inputs)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the engine is closed")
            self._embed_jobs.append(job)
            self._cond.notify()
        result = job.out.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def wake(self) -> None:
        """Let the scheduler notice a cancel flag while it waits for work."""
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()
        lib = self._lib
        for slot in self.slots:
            if slot.sampler is not None:
                lib.llama_sampler_free(slot.sampler)
                slot.sampler = None
        if self.batch is not None:
            lib.llama_batch_free(self.batch)
            self.batch = None
        if self.ctx:
            lib.llama_free(self.ctx)
            self.ctx = None

    # ---- the scheduler thread ------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._warm_up()
        except BaseException as exc:  # noqa: BLE001 - raised on the loading thread
            self._error = exc
        self._ready.set()
        if self._error is not None:
            return
        while True:
            with self._cond:
                while not self._stopping and not self._pending and not self._embed_jobs \
                        and not any(s.req for s in self.slots):
                    self.stats.batch_size = 0
                    self._cond.wait()
                if self._stopping:
                    break
                self._drop_cancelled()
                self._admit()
                jobs = list(self._embed_jobs)
                self._embed_jobs.clear()
            for job in jobs:
                self._embed(job)
            try:
                self._step()
            except BaseException as exc:  # noqa: BLE001 - fail the requests, keep serving
                for slot in self.slots:
                    if slot.req is not None:
                        self._finish(slot, exc)
                        self._forget(slot)
        for slot in self.slots:
            if slot.req is not None:
                self._finish(slot)
        while self._pending:
            self._pending.popleft().out.put(_END)
        while self._embed_jobs:
            self._embed_jobs.popleft().out.put(RuntimeError("the engine is closed"))
        if self._embedder is not None:
            self._embedder.close()

    def _embed(self, job: Any) -> None:
        try:
            if self._embedder is None:
                from llmops_desktop.serving.engines.llama_embed import Embedder

                self._embedder = Embedder(self.model, self._threads, self.n_ctx)
            job.out.put(self._embedder.embed(job.inputs))
        except BaseException as exc:  # noqa: BLE001 - the caller raises it
            job.out.put(exc)

    def _warm_up(self) -> None:
        """Decode one token so the first request does not pay llama.cpp's lazy set-up."""
        bos = self.model.token_bos()
        self._add(0, bos if bos >= 0 else 0, 0, 0, True)
        self.batch.n_tokens = 1
        if self._lib.llama_decode(self.ctx, self.batch) != 0:
            raise RuntimeError("llama.cpp could not decode a first token")
        self._lib.llama_memory_seq_rm(self.mem, 0, -1, -1)

    def _drop_cancelled(self) -> None:
        for req in [r for r in self._pending if r.cancel.is_set()]:
            self._pending.remove(req)
            req.out.put(_END)
        for slot in self.slots:
            if slot.req is not None and slot.req.cancel.is_set():
                self._finish(slot)
        self.stats.queued = len(self._pending)

    def _admit(self) -> None:
        """Give each waiting request (in arrival order) a free slot.

        Reuse first: the slots whose cache shares about the longest real prefix with the
        prompt (a tenth of it, at least 2 tokens: more than a BOS) are the candidates.
        Among them, the one that keeps the busy sequence ids in the fewest contiguous
        runs: with a KV stream per sequence, llama.cpp splits a step into one ubatch per
        run of consecutive ids (``split_equal`` with ``sequential``), so four streams on
        ids 0,2,4,6 cost 2.3x a step on 0,1,2,3 (measured: 92 vs 39 ms with Gemma 3
        270M): a step split in two costs more than any cache it could save. Then the
        least recently used, so other conversations keep their caches as long as they
        can."""
        while self._pending:
            free = [s for s in self.slots if s.req is None]
            if not free:
                break
            req = self._pending.popleft()
            busy = {s.seq for s in self.slots if s.req is not None}

            shared = {s.seq: _common_prefix(s.cache, req.ids) for s in free}
            real = max(2, len(req.ids) // 10)
            reuse = {q: n if n >= real else 0 for q, n in shared.items()}
            best = max(reuse.values())
            near = [s for s in free if reuse[s.seq] >= best - max(8, best // 8)]
            slot = max(near, key=lambda s: (-_runs(busy | {s.seq}), -s.used_at, reuse[s.seq]))
            self._admitted += 1
            slot.used_at = self._admitted
            keep = min(shared[slot.seq], len(req.ids) - 1)
            if not self._lib.llama_memory_seq_rm(self.mem, slot.seq, keep, -1):
                self._forget(slot)  # this memory cannot cut a sequence: start over
                keep = 0
            slot.cache = slot.cache[:keep]
            slot.todo = list(req.ids[keep:])
            slot.req, slot.produced, slot.next_token = req, 0, None
            slot.text = IncrementalText()
            try:
                slot.sampler = self._sampler(req, slot.sampler)
            except ValueError as exc:  # a grammar llama.cpp refuses
                slot.sampler = None
                self._finish(slot, exc)
                continue
            self.stats.reused_prompt_tokens += keep
        self.stats.queued = len(self._pending)
        self.stats.slots_in_use = sum(1 for s in self.slots if s.req is not None)

    def _step(self) -> None:
        rows: list[tuple[_Slot, int]] = []  # slots that sample after this decode, and row
        added: list[tuple[_Slot, list[int]]] = []
        n = 0
        for slot in self.slots:
            if slot.req is not None and slot.next_token is not None:
                self._add(n, slot.next_token, len(slot.cache), slot.seq, True)
                rows.append((slot, n))
                added.append((slot, [slot.next_token]))
                n += 1
        for slot in self.slots:
            if slot.req is None or not slot.todo or n >= self.n_batch:
                continue
            chunk = slot.todo[:self.n_batch - n]
            last = len(chunk) == len(slot.todo)
            pos = len(slot.cache)
            for i, token in enumerate(chunk):
                self._add(n, token, pos + i, slot.seq, last and i == len(chunk) - 1)
                n += 1
            if last:
                rows.append((slot, n - 1))
            added.append((slot, chunk))
        if n == 0:
            return
        self.batch.n_tokens = n
        self.stats.batch_size = len(added)
        self.stats.steps += 1
        rc = self._lib.llama_decode(self.ctx, self.batch)
        if rc != 0:
            raise RuntimeError(f"llama.cpp could not decode this step (code {rc})")
        for slot, tokens in added:
            slot.cache.extend(tokens)
            if slot.todo:
                del slot.todo[:len(tokens)]
                self.stats.prefilled_prompt_tokens += len(tokens)
            else:
                slot.next_token = None
        for slot, row in rows:
            self._sample(slot, row)

    def _add(self, k: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b = self.batch
        b.token[k], b.pos[k], b.n_seq_id[k] = token, pos, 1
        b.seq_id[k][0] = seq
        b.logits[k] = logits

    def _sample(self, slot: _Slot, row: int) -> None:
        lib, req = self._lib, slot.req
        assert req is not None and slot.text is not None
        if req.cancel.is_set():
            self._finish(slot)
            return
        token = int(lib.llama_sampler_sample(slot.sampler, self.ctx, row))
        if lib.llama_vocab_is_eog(self.vocab, token):
            self._finish(slot)
            return
        data = self._piece(token)
        lp = self._logprob(row, token, data, req.logprobs) if req.logprobs is not None else None
        text = slot.text.feed(data)
        req.out.put(LogprobPiece(text, 1, lp) if lp is not None else Piece(text))
        slot.produced += 1
        if slot.produced >= req.max_tokens or len(slot.cache) >= self.n_ctx:
            # the sequence's KV stream is full: it ends here instead of failing the step
            # (and with it every other stream in the batch)
            self._finish(slot)
        else:
            slot.next_token = token

    def _finish(self, slot: _Slot, error: BaseException | None = None) -> None:
        req = slot.req
        if req is not None:
            if error is None and slot.text is not None:
                rest = slot.text.flush()
                if rest:
                    req.out.put(Piece(rest, 0))
            req.out.put(error if error is not None else _END)
            if error is not None:
                req.out.put(_END)
        slot.req, slot.todo, slot.next_token, slot.text = None, [], None, None
        self.stats.slots_in_use = sum(1 for s in self.slots if s.req is not None)

    def _forget(self, slot: _Slot) -> None:
        self._lib.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        slot.cache = []

    def _sampler(self, req: SequenceRequest, old: Any) -> Any:
        lib = self._lib
        if old is not None:
            lib.llama_sampler_free(old)
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if req.grammar:
            grammar = lib.llama_sampler_init_grammar(self.vocab, req.grammar.encode("utf-8"),
                                                     b"root")
            if not grammar:
                lib.llama_sampler_free(chain)
                raise ValueError("llama.cpp could not parse the grammar")
            lib.llama_sampler_chain_add(chain, grammar)
        if req.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
            return chain
        if req.top_k > 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(req.top_k))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(req.top_p, 1))
        if req.min_p > 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(req.min_p, 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(req.temperature))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(req.seed & 0xFFFFFFFF))
        return chain

    def _piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
        return buf.raw[:n]

    def _logprob(self, row: int, token: int, data: bytes, top: int) -> TokenLogprob:
        import numpy as np

        ptr = self._lib.llama_get_logits_ith(self.ctx, row)
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        peak = logits.max()
        logz = peak + np.log(np.exp(logits - peak).sum())
        best: tuple[TopLogprob, ...] = ()
        if top > 0:
            k = min(top, self.n_vocab)
            ids = np.argpartition(-logits, k - 1)[:k]
            ids = ids[np.argsort(-logits[ids], kind="stable")]
            best = tuple(TopLogprob(_show(b), b, float(logits[i] - logz))
                         for i in ids for b in [self._piece(int(i))])
        return TokenLogprob(_show(data), data, float(logits[token] - logz), best)


def _show(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _runs(seqs: set[int]) -> int:
    """How many runs of consecutive ids ``seqs`` makes ({0, 1, 3} makes 2)."""
    return sum(1 for q in seqs if q - 1 not in seqs)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
