"""The llama.cpp engine: a GGUF file through llama-cpp-python.

Parallel requests: one ``llama_cpp.Llama`` context runs one generation at a time, so the
engine keeps a pool of ``parallel`` contexts (``--parallel N``, default 1) and each
request takes one for its whole generation. On CPU the weights are memory-mapped and
shared by every context; each context has its own KV cache (``ctx`` tokens). With
``--gpu-layers`` each context uploads its own copy of the offloaded layers, so keep
``parallel`` at 1 on a small GPU. There is no batching across requests yet: N contexts
share the CPU threads, so N parallel requests gain little total throughput on a CPU.

Threads: llama.cpp computes with OpenMP, whose worker threads belong to the thread that
calls it. A context used from one thread and then another leaves two teams of workers
competing for the cores (decode ran at 0.5-0.7x in our measurements), so each context
sticks to the thread that used it last, and the warm-up runs on a short-lived thread.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llmops_desktop.errors import CorruptFileError, InvalidInputError
from llmops_desktop.serving.engines.base import (
    ChatTemplateMissingError,
    Engine,
    EngineSettings,
    IncrementalText,
    Piece,
    PromptTokens,
    SamplingParams,
    register_engine,
)

DEFAULT_MAX_CTX = 4096  # when --ctx is not given: the model's own, at most this
# llama.cpp's own server defaults; OpenAI's API only exposes temperature and top_p.
TOP_K = 40
MIN_P = 0.05


def _default_threads() -> int:
    """llama-cpp-python's default: half the logical CPUs (about the physical cores)."""
    import os

    return max(1, (os.cpu_count() or 2) // 2)


@register_engine("llama.cpp")
class LlamaCppEngine(Engine):
    """A pool of llama.cpp contexts over one memory-mapped GGUF."""

    def __init__(self, contexts: list[Any], model_path: Path, template: str | None) -> None:
        self._contexts = contexts
        self._free = list(contexts)
        self._owner: dict[int, int] = {}  # id(context) -> the thread that used it last
        self._free_changed = threading.Condition()
        self.model_path = model_path
        self._template = template
        self._formatter: Any = None
        first = contexts[0]
        self._n_ctx = int(first.n_ctx())
        self._n_vocab = int(first.n_vocab())
        self._add_bos = bool(first._model.add_bos_token())
        self._bos = int(first.token_bos())
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_path: Path, settings: EngineSettings) -> LlamaCppEngine:
        from llmops_desktop.formats.gguf_meta import read_gguf_info

        model_path = Path(model_path)
        if model_path.is_dir():
            ggufs = sorted(model_path.glob("*.gguf"))
            if len(ggufs) != 1:
                raise InvalidInputError(
                    f"{model_path} is not one GGUF file; the llama.cpp engine serves GGUF "
                    "artifacts. Quantize the model to GGUF first, or use --engine torch.")
            model_path = ggufs[0]
        if model_path.suffix.lower() != ".gguf":
            raise InvalidInputError(
                f"{model_path.name} is not a GGUF file; the llama.cpp engine serves GGUF "
                "artifacts. Use --engine torch for a Hugging Face model folder.")
        info = read_gguf_info(model_path)
        trained = info.context_length or DEFAULT_MAX_CTX
        n_ctx = settings.ctx or min(trained, DEFAULT_MAX_CTX)
        if settings.ctx and settings.ctx > trained:
            raise InvalidInputError(
                f"--ctx {settings.ctx} is more than the {trained} tokens this model was "
                f"trained for; pass --ctx {trained} or less.")
        if settings.parallel < 1:
            raise InvalidInputError("--parallel must be at least 1.")

        import llama_cpp

        threads = settings.threads or _default_threads()
        kwargs: dict[str, Any] = {
            "model_path": str(model_path), "n_ctx": n_ctx, "n_threads": threads,
            "n_threads_batch": threads, "n_gpu_layers": settings.gpu_layers, "verbose": False}
        if settings.batch:
            kwargs["n_batch"] = settings.batch
        if settings.lora_path:  # a LoRA GGUF applied on top
            kwargs["lora_path"] = str(settings.lora_path)
        contexts: list[Any] = []
        try:
            for _ in range(settings.parallel):
                llm = llama_cpp.Llama(**kwargs)
                contexts.append(llm)
                _warm_up(llm)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            for llm in contexts:
                llm.close()
            raise CorruptFileError(
                f"llama.cpp could not load {model_path.name} ({exc}). The file may be "
                "truncated or made by a newer llama.cpp; re-import or re-quantize it.") from exc
        template = contexts[0].metadata.get("tokenizer.chat_template") or None
        return cls(contexts, model_path, template)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def parallel_slots(self) -> int:
        return len(self._contexts)

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def tokenize(self, text: str) -> PromptTokens:
        # The vocabulary is read-only, so any context may tokenize while others generate.
        ids = self._contexts[0].tokenize(text.encode("utf-8"), add_bos=self._add_bos,
                                         special=True)
        return PromptTokens(list(ids))

    def tokenize_chat(self, messages: Sequence[dict[str, Any]]) -> PromptTokens:
        if self._template is None:
            raise ChatTemplateMissingError(
                f"{self.model_path.name} has no chat template (no tokenizer.chat_template in "
                "its GGUF metadata), so chat messages cannot be formatted for it. Use "
                "/v1/completions with a plain prompt, or serve a model that has one.")
        formatter = self._chat_formatter()
        try:
            result = formatter(messages=list(messages))
        except Exception as exc:  # noqa: BLE001 - jinja2 errors and raise_exception()
            raise InvalidInputError(f"The model's chat template refused these messages: "
                                    f"{exc}") from None
        ids = self._contexts[0].tokenize(result.prompt.encode("utf-8"),
                                         add_bos=not result.added_special, special=True)
        return PromptTokens(list(ids))

    def _chat_formatter(self) -> Any:
        with self._lock:
            if self._formatter is None:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                llm = self._contexts[0]
                eos, bos = llm.token_eos(), llm.token_bos()
                self._formatter = Jinja2ChatFormatter(
                    template=self._template or "",
                    eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
                    bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
                    stop_token_ids=[eos])
            return self._formatter

    def generate(self, prompt: PromptTokens, params: SamplingParams,
                 cancel: threading.Event) -> Iterator[Piece]:
        import llama_cpp

        if cancel.is_set():
            return
        llm = self._take()
        try:
            llm.set_seed(params.seed if params.seed is not None else random.getrandbits(31))
            vocab = llm._model.vocab
            text = IncrementalText()
            produced = 0
            tokens = llm.generate(prompt.ids, temp=params.temperature, top_p=params.top_p,
                                  top_k=TOP_K, min_p=MIN_P, repeat_penalty=1.0)
            with contextlib.closing(tokens):
                for token in tokens:
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        break
                    produced += 1
                    yield Piece(text.feed(llm.detokenize([token])))
                    if produced >= params.max_tokens or cancel.is_set():
                        break
            rest = text.flush()
            if rest:
                yield Piece(rest, 0)
        finally:
            with self._free_changed:
                self._free.append(llm)
                self._free_changed.notify()

    def _take(self) -> Any:
        """A free context: the one this thread used last if it can, else one no thread has
        used, else any (see the module docstring for why)."""
        me = threading.get_ident()
        with self._free_changed:
            while not self._free:
                self._free_changed.wait()
            mine = [c for c in self._free if self._owner.get(id(c)) == me]
            unused = [c for c in self._free if id(c) not in self._owner]
            llm = (mine or unused or self._free)[0]
            self._free.remove(llm)
            self._owner[id(llm)] = me
            return llm

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model_path": str(self.model_path)}

    def close(self) -> None:
        for llm in self._contexts:
            with contextlib.suppress(Exception):
                llm.close()


def _warm_up(llm: Any) -> None:
    """Decode one token so the first request does not pay llama.cpp's lazy set-up; on a
    thread that then ends, so no OpenMP team stays behind on the caller's thread."""

    def run() -> None:
        bos = llm.token_bos()
        llm.eval([bos if bos != -1 else 0])
        llm.reset()

    errors: list[BaseException] = []
    thread = threading.Thread(target=lambda: _capture(run, errors), name="llama-warm-up")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _capture(fn: Any, errors: list[BaseException]) -> None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - re-raised on the loading thread
        errors.append(exc)
