"""Continuous batching for the torch engine: one scheduler thread, one padded batch.

Every running sequence is a row of one left-padded KV cache (a transformers
``DynamicCache`` whose layers hold ``[rows, heads, length, dim]`` tensors). A decode step
feeds each row its last sampled token at the row's own position, with an attention mask
that hides the row's padding, so one forward pass computes a token for every sequence. Between steps, finished and cancelled rows leave (their rows are dropped and
padding every remaining row shares is trimmed) and new requests join: a new prompt is
read alone, in chunks of ``prefill_chunk`` tokens, one chunk between two decode steps,
then its cache is left-padded to the batch's length and stacked onto it.

Each request keeps its own sampling (temperature, top-p, its own seeded generator), its
own grammar (an llguidance matcher whose token mask is applied to its logits row before
sampling; the row ends when the grammar is complete) and, when asked, the log-softmax of
its raw logits row. Embedding requests run on the same
thread between steps. The same code runs on CPU, CUDA and bitsandbytes models.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.serving.engines.base import Piece
from llmops_desktop.serving.engines.llama_batch import LogprobPiece, TokenLogprob, TopLogprob

_END = object()
_CONTEXT_OVERLAP = 5  # tokens of left context re-decoded so spaces come out right
EMBED_BATCH = 8  # inputs per embedding forward pass


@dataclass
class TorchRequest:
    """One generation handed to the scheduler; pieces come back on :attr:`out`."""

    ids: list[int]
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    logprobs: int | None = None  # None: none; 0: the chosen token's only; N: and the top N
    matcher: Any = None  # an llguidance LLMatcher the output must satisfy
    cancel: threading.Event = field(default_factory=threading.Event)
    out: queue.SimpleQueue[Any] = field(default_factory=queue.SimpleQueue)

    def pieces(self) -> Iterator[Piece]:
        """Pieces until the end (raises what the scheduler reported)."""
        while True:
            item = self.out.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


@dataclass
class _Row:
    req: TorchRequest
    rng: Any
    ids: list[int]  # prompt and generated tokens, for decoding text
    prefix: int
    read: int
    length: int = 0  # real tokens in this row's cache
    todo: list[int] = field(default_factory=list)  # prompt tokens still to read
    cache: Any = None  # its own cache while the prompt is read
    produced: int = 0
    next_token: int | None = None
    bitmask: Any = None  # the grammar's allowed tokens, refilled before every sample


@dataclass
class BatchStats:
    slots: int
    slots_in_use: int = 0
    queued: int = 0
    batch_size: int = 0
    prefilled_prompt_tokens: int = 0
    steps: int = 0


class TorchScheduler:
    """Runs every generation of one model on one thread, batched per decode step."""

    def __init__(self, model: Any, decode: Callable[[list[int]], str], eos_ids: frozenset[int],
                 device: str, slots: int, prefill_chunk: int = 512) -> None:
        self.model = model
        self._decode = decode
        self._eos = eos_ids
        self.device = device
        self.slots = slots
        self.prefill_chunk = prefill_chunk
        self._cache_arg = _cache_argument(model)
        self.stats = BatchStats(slots=slots)
        self._pending: list[TorchRequest] = []
        self._jobs: list[tuple[list[list[int]], queue.SimpleQueue[Any]]] = []
        self._reading: list[_Row] = []  # admitted, prompt not fully read yet
        self._rows: list[_Row] = []  # in the batch, in cache-row order
        self._cache: Any = None
        self._pads: list[int] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="torch-batch", daemon=True)
        self._thread.start()

    # ---- the other threads' side ----------------------------------------------------------

    def submit(self, req: TorchRequest) -> TorchRequest:
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._pending.append(req)
            self.stats.queued = len(self._pending)
            self._cond.notify()
        return req

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        with self._cond:
            if self._closed:
                raise RuntimeError("the engine is closed")
            self._jobs.append((inputs, done))
            self._cond.notify()
        result = done.get()
        if isinstance(result, BaseException):
            raise result
        return result

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(30)

    # ---- the scheduler thread ----------------------------------------------------------------

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._cond:
                    while not (self._closed or self._pending or self._jobs or self._rows
                               or self._reading):
                        self.stats.batch_size = 0
                        self._cond.wait()
                    if self._closed:
                        break
                    jobs, self._jobs = self._jobs, []
                try:
                    for inputs, done in jobs:
                        try:
                            done.put(self._embed(inputs))
                        except Exception as exc:  # noqa: BLE001 - handed to the caller
                            done.put(exc)
                    self._tick()
                except Exception as exc:  # noqa: BLE001 - every running request hears of it
                    self._fail_all(exc)
        self._fail_all(RuntimeError("the engine was closed"))

    def _tick(self) -> None:
        self._drop_cancelled()
        with self._cond:
            while self._pending and len(self._rows) + len(self._reading) < self.slots:
                req = self._pending.pop(0)
                if req.cancel.is_set():
                    req.out.put(_END)
                    continue
                self._reading.append(self._admit(req))
            self.stats.queued = len(self._pending)
        self.stats.slots_in_use = len(self._rows) + len(self._reading)
        if self._reading:
            self._read_chunk(self._reading[0])
        if self._rows:
            self._step()
        self.stats.slots_in_use = len(self._rows) + len(self._reading)

    def _admit(self, req: TorchRequest) -> _Row:
        import torch

        rng = torch.Generator(device=self.device)
        rng.manual_seed(req.seed)
        n = len(req.ids)
        return _Row(req, rng, list(req.ids), max(n - _CONTEXT_OVERLAP, 0), n,
                    todo=list(req.ids))

    def _read_chunk(self, row: _Row) -> None:
        """One chunk of a new prompt, read alone; the last one samples its first token."""
        import torch
        from transformers import DynamicCache

        if row.cache is None:
            row.cache = DynamicCache()
        chunk, row.todo = row.todo[:self.prefill_chunk], row.todo[self.prefill_chunk:]
        out = self.model(input_ids=torch.tensor([chunk], device=self.device),
                         use_cache=True, logits_to_keep=1, **{self._cache_arg: row.cache})
        row.length += len(chunk)
        self.stats.prefilled_prompt_tokens += len(chunk)
        if row.todo:
            return
        self._reading.remove(row)
        if self._emit(row, out.logits[0, -1]):
            self._join(row)
        row.cache = None

    def _step(self) -> None:
        """One decode step: every row's pending token through the model at once."""
        import torch

        rows = self._rows
        width = self._cache.get_seq_length() + 1
        pads = torch.tensor(self._pads).unsqueeze(1)
        mask = (torch.arange(width).unsqueeze(0) >= pads).long().to(self.device)
        tokens = torch.tensor([[r.next_token] for r in rows], device=self.device)
        positions = torch.tensor([[r.length] for r in rows], device=self.device)
        out = self.model(input_ids=tokens, attention_mask=mask, position_ids=positions,
                         use_cache=True, **{self._cache_arg: self._cache})  # grows in place
        self.stats.batch_size = len(rows)
        self.stats.steps += 1
        logits = out.logits[:, -1]
        greedy = logits.argmax(dim=-1).tolist()  # one device sync for every greedy row
        leaving = []
        for i, row in enumerate(rows):
            row.length += 1
            if not self._emit(row, logits[i], greedy[i]):
                leaving.append(i)
        self._leave(leaving)

    def _emit(self, row: _Row, logits: Any, greedy: int | None = None) -> bool:
        """Sample the row's next token and hand its text over; False when the row ends.
        ``greedy`` is the row's argmax when the step already computed it."""
        req = row.req
        if req.cancel.is_set():
            req.out.put(_END)
            return False
        if greedy is not None and req.temperature <= 0 and req.matcher is None:
            token = greedy
        else:
            scores = logits.float()
            if req.matcher is not None:
                scores = self._constrain(row, scores)
            token = sample(scores, req.temperature, req.top_p, row.rng)
        if token in self._eos:
            self._finish(row)
            return False
        if req.matcher is not None:
            req.matcher.consume_token(token)
        row.produced += 1
        row.ids.append(token)
        text = self._new_text(row)
        if req.logprobs is not None:
            req.out.put(LogprobPiece(text, 1, self._logprob(row, logits, token, text,
                                                            req.logprobs)))
        else:
            req.out.put(Piece(text))
        if row.produced >= req.max_tokens or (req.matcher is not None
                                               and req.matcher.is_stopped()):
            self._finish(row)
            return False
        row.next_token = token
        return True

    def _constrain(self, row: _Row, scores: Any) -> Any:
        """The logits row with every token the grammar forbids next at -inf."""
        import llguidance.torch as llg

        if row.bitmask is None:
            row.bitmask = llg.allocate_token_bitmask(1, scores.shape[-1])
        llg.fill_next_token_bitmask(row.req.matcher, row.bitmask, 0)
        scores = scores.clone()
        llg.apply_token_bitmask_inplace(scores, row.bitmask.to(scores.device))
        return scores

    def _finish(self, row: _Row) -> None:
        if row.read < len(row.ids):  # an unfinished multi-byte character at the very end
            before = self._decode(row.ids[row.prefix:row.read])
            after = self._decode(row.ids[row.prefix:])
            if len(after) > len(before):
                row.req.out.put(Piece(after[len(before):], 0))
        row.req.out.put(_END)

    def _new_text(self, row: _Row) -> str:
        before = self._decode(row.ids[row.prefix:row.read])
        after = self._decode(row.ids[row.prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            row.prefix, row.read = row.read, len(row.ids)
            return after[len(before):]
        return ""

    def _logprob(self, row: _Row, logits: Any, token: int, text: str, top: int
                 ) -> TokenLogprob:
        import torch

        values = torch.log_softmax(logits.double(), dim=-1)
        best: tuple[TopLogprob, ...] = ()
        if top > 0:
            k = min(top, values.shape[-1])
            top_values, top_ids = torch.topk(values, k)
            context = row.ids[-1 - _CONTEXT_OVERLAP:-1]
            shown = self._decode(context)
            best = tuple(TopLogprob(s, s.encode(), float(v))
                         for v, t in zip(top_values.tolist(), top_ids.tolist())
                         for s in [self._decode([*context, int(t)])[len(shown):]])
        return TokenLogprob(text, text.encode(), float(values[token]), best)

    # ---- the batched cache -------------------------------------------------------------------

    def _join(self, row: _Row) -> None:
        """Stack the row's own cache onto the batch, left-padding the shorter side."""
        import torch
        import torch.nn.functional as F

        if not self._rows:
            self._cache, self._pads, self._rows = row.cache, [0], [row]
            return
        old = self._cache.get_seq_length()
        new = row.cache.get_seq_length()
        width = max(old, new)
        for mine, theirs in zip(self._cache.layers, row.cache.layers):
            mine.keys = torch.cat([F.pad(mine.keys, (0, 0, width - old, 0)),
                                   F.pad(theirs.keys, (0, 0, width - new, 0))])
            mine.values = torch.cat([F.pad(mine.values, (0, 0, width - old, 0)),
                                     F.pad(theirs.values, (0, 0, width - new, 0))])
        self._pads = [p + width - old for p in self._pads] + [width - new]
        self._rows.append(row)

    def _leave(self, gone: list[int]) -> None:
        if not gone:
            return
        import torch

        keep = [i for i in range(len(self._rows)) if i not in set(gone)]
        self._rows = [self._rows[i] for i in keep]
        self._pads = [self._pads[i] for i in keep]
        if not keep:
            self._cache, self._pads = None, []
            self.stats.slots_in_use = len(self._reading)
            return
        index = torch.tensor(keep, device=self.device)
        trim = min(self._pads)
        for layer in self._cache.layers:
            layer.keys = layer.keys.index_select(0, index)[:, :, trim:]
            layer.values = layer.values.index_select(0, index)[:, :, trim:]
        self._pads = [p - trim for p in self._pads]
        self.stats.slots_in_use = len(self._rows) + len(self._reading)

    def _drop_cancelled(self) -> None:
        for row in [r for r in self._reading if r.req.cancel.is_set()]:
            self._reading.remove(row)
            row.req.out.put(_END)
        gone = [i for i, r in enumerate(self._rows) if r.req.cancel.is_set()]
        for i in gone:
            self._rows[i].req.out.put(_END)
        self._leave(gone)

    def _fail_all(self, exc: BaseException) -> None:
        with self._cond:
            pending, self._pending = self._pending, []
            jobs, self._jobs = self._jobs, []
        for row in self._rows + self._reading:
            row.req.out.put(exc)
        for req in pending:
            req.out.put(exc)
        for _, done in jobs:
            done.put(exc)
        self._rows, self._reading, self._cache, self._pads = [], [], None, []

    # ---- embeddings ----------------------------------------------------------------------------

    def _embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """Mean of the last hidden state over each input's tokens, L2-normalised."""
        import torch

        decoder = self.model.get_decoder()
        vectors: list[list[float]] = []
        for start in range(0, len(inputs), EMBED_BATCH):
            group = inputs[start:start + EMBED_BATCH]
            width = max(len(ids) for ids in group)
            ids = torch.zeros((len(group), width), dtype=torch.long, device=self.device)
            mask = torch.zeros((len(group), width), dtype=torch.long, device=self.device)
            for i, row in enumerate(group):  # right padding: real tokens never see it
                ids[i, :len(row)] = torch.tensor(row, device=self.device)
                mask[i, :len(row)] = 1
            hidden = decoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
            summed = (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(dim=1, keepdim=True)
            unit = torch.nn.functional.normalize(summed, dim=-1)
            vectors.extend(unit.cpu().tolist())
        return vectors


def grammar_matcher(tokenizer: Any, gbnf: str) -> Any:
    """An llguidance matcher for a GBNF grammar (as :mod:`..structured` writes them)."""
    import llguidance
    from llguidance.gbnf_to_lark import any_to_lark

    # code points no tokenizer produces; llguidance's regexes take Unicode scalars only
    for dead in ("\\uD800-\\uDFFF", "\\U00110000-\\U001FFFFF"):
        gbnf = gbnf.replace(dead, "")
    try:
        lark = any_to_lark(gbnf)
        matcher = llguidance.LLMatcher(tokenizer, llguidance.LLMatcher.grammar_from_lark(lark))
    except Exception as exc:  # noqa: BLE001 - the converter raises its own error types
        raise InvalidInputError(f"The output grammar cannot be used: {exc}") from None
    if matcher.is_error():
        raise InvalidInputError(f"The output grammar cannot be used: {matcher.get_error()}")
    return matcher


def _cache_argument(model: Any) -> str:
    """``cache`` (transformers 5.2x) or ``past_key_values`` (before it, and PEFT wrappers
    that pass keywords on), whichever the model's forward names."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = inspect.signature(base.forward).parameters
    return "cache" if "cache" in names else "past_key_values"


def sample(logits: Any, temperature: float, top_p: float, rng: Any) -> int:
    """Greedy at temperature 0; else temperature, then top-p, drawn with ``rng``."""
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) < top_p
        choice = torch.multinomial(sorted_probs * keep, 1, generator=rng)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=rng))
