"""The llama.cpp engine: a GGUF file through llama-cpp-python's low-level API.

One model and one context of ``--parallel N`` sequences, decoded together by a
scheduler thread (continuous batching, see :mod:`.llama_batch`): N streams share each
``llama_decode`` instead of N contexts taking turns on the cores, a new request's prompt
is read in chunks between steps so it joins running streams, and a prompt that starts
with tokens a free slot already holds (the next turn of a chat, a shared system prompt)
reuses them. Each sequence gets ``--ctx`` cells of the KV cache, so memory grows with
``ctx x parallel``; the weights are loaded once (memory-mapped on CPU, uploaded once with
``--gpu-layers``).

Threads: llama.cpp computes with OpenMP, whose worker threads belong to the thread that
calls it, so every decode (and the warm-up) runs on the one scheduler thread; request
threads only tokenize and read pieces from a queue.
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
    Piece,
    PromptTokens,
    SamplingParams,
    pin_gpus,
    register_engine,
    scheduled_pieces,
)
from llmops_desktop.serving.engines.llama_batch import BatchScheduler, SequenceRequest

DEFAULT_MAX_CTX = 4096  # when --ctx is not given: the model's own, at most this


def _default_threads() -> int:
    """llama-cpp-python's default: half the logical CPUs (about the physical cores)."""
    import os

    return max(1, (os.cpu_count() or 2) // 2)


def model_params(settings: EngineSettings) -> tuple[Any, Any]:
    """llama.cpp's model parameters for ``settings`` (what ``llama_cpp.Llama(n_gpu_layers=,
    tensor_split=, split_mode=)`` sets), and the float array ``tensor_split`` points into,
    which must outlive the model's loading."""
    import ctypes

    import llama_cpp

    params = llama_cpp.llama_model_default_params()
    params.n_gpu_layers = settings.gpu_layers if settings.gpu_layers >= 0 else 0x7FFFFFFF
    params.use_mmap = not settings.lora_path  # llama-cpp-python's rule with a LoRA
    split = None
    if settings.tensor_split:
        if len(settings.tensor_split) > llama_cpp.LLAMA_MAX_DEVICES:
            raise InvalidInputError(f"Tensor split: this llama.cpp takes at most "
                                    f"{llama_cpp.LLAMA_MAX_DEVICES} GPUs.")
        split = (ctypes.c_float * llama_cpp.LLAMA_MAX_DEVICES)(*settings.tensor_split)
        params.tensor_split = split
    if settings.split_mode:
        params.split_mode = {"layer": llama_cpp.LLAMA_SPLIT_MODE_LAYER,
                             "row": llama_cpp.LLAMA_SPLIT_MODE_ROW}[settings.split_mode]
    return params, split


@register_engine("llama.cpp")
class LlamaCppEngine(Engine):
    """One GGUF model, one context, ``parallel`` sequences batched by a scheduler."""

    supports_logprobs = True
    supports_grammar = True

    def __init__(self, model: Any, scheduler: BatchScheduler, model_path: Path,
                 template: str | None, lora: Any = None) -> None:
        self._model = model
        self._scheduler = scheduler
        self._lora = lora
        self.model_path = model_path
        self._template = template
        self._formatter: Any = None
        self._add_bos = bool(model.add_bos_token())
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

        pin_gpus(settings.gpus)  # before llama.cpp's CUDA backend counts the devices
        import llama_cpp
        from llama_cpp._internals import LlamaModel

        params, _split = model_params(settings)  # _split: the array params points into
        try:
            model = LlamaModel(path_model=str(model_path), params=params, verbose=False)
        except ValueError as exc:  # "Failed to load model from file"
            raise CorruptFileError(
                f"llama.cpp could not load {model_path.name} ({exc}). The file may be "
                "truncated or made by a newer llama.cpp; re-import or re-quantize it.") from exc
        lora = None
        try:
            if settings.lora_path:
                lora = llama_cpp.llama_adapter_lora_init(model.model,
                                                         str(settings.lora_path).encode())
                if not lora:
                    raise InvalidInputError(f"llama.cpp could not load the LoRA adapter "
                                            f"{settings.lora_path}; convert it to GGUF again.")
            scheduler = BatchScheduler(model, n_ctx=n_ctx, n_seq=settings.parallel,
                                       threads=settings.threads or _default_threads(),
                                       n_batch=settings.batch, lora=lora)
        except BaseException:
            if lora:
                llama_cpp.llama_adapter_lora_free(lora)
            model.close()
            raise
        template = settings.chat_template or model.metadata().get("tokenizer.chat_template") \
            or None
        return cls(model, scheduler, model_path, template, lora)

    @property
    def n_ctx(self) -> int:
        return self._scheduler.n_ctx

    @property
    def n_vocab(self) -> int:
        return self._scheduler.n_vocab

    @property
    def parallel_slots(self) -> int:
        return len(self._scheduler.slots)

    @property
    def has_chat_template(self) -> bool:
        return self._template is not None

    def tokenize(self, text: str) -> PromptTokens:
        # The vocabulary is read-only: any thread may tokenize while the scheduler decodes.
        ids = self._model.tokenize(text.encode("utf-8"), add_bos=self._add_bos, special=True)
        return PromptTokens(list(ids))

    @property
    def chat_template(self) -> str | None:
        """The Jinja template chat requests go through (the model's, or --chat-template)."""
        return self._template

    def tokenize_chat(self, messages: Sequence[dict[str, Any]],
                      tools: list[dict[str, Any]] | None = None) -> PromptTokens:
        if self._template is None:
            raise ChatTemplateMissingError(
                f"{self.model_path.name} has no chat template (no tokenizer.chat_template in "
                "its GGUF metadata), so chat messages cannot be formatted for it. Use "
                "/v1/completions with a plain prompt, or serve a model that has one.")
        formatter = self._chat_formatter()
        try:
            result = formatter(messages=list(messages), tools=tools)
        except Exception as exc:  # noqa: BLE001 - jinja2 errors and raise_exception()
            raise InvalidInputError(f"The model's chat template refused these messages: "
                                    f"{exc}") from None
        ids = self._model.tokenize(result.prompt.encode("utf-8"),
                                   add_bos=not result.added_special, special=True)
        return PromptTokens(list(ids))

    def _chat_formatter(self) -> Any:
        with self._lock:
            if self._formatter is None:
                from llama_cpp.llama_chat_format import Jinja2ChatFormatter

                model = self._model
                eos, bos = model.token_eos(), model.token_bos()
                self._formatter = Jinja2ChatFormatter(
                    template=self._template or "",
                    eos_token=model.token_get_text(eos) if eos != -1 else "",
                    bos_token=model.token_get_text(bos) if bos != -1 else "",
                    stop_token_ids=[eos])
            return self._formatter

    def generate(self, prompt: PromptTokens, params: SamplingParams,
                 cancel: threading.Event) -> Iterator[Piece]:
        if cancel.is_set():
            return
        seed = params.seed if params.seed is not None else random.getrandbits(31)
        req = SequenceRequest(list(prompt.ids), params.max_tokens,
                              temperature=params.temperature, top_p=params.top_p, seed=seed,
                              logprobs=params.logprobs, grammar=params.grammar,
                              cancel=cancel)
        yield from scheduled_pieces(self._scheduler, req, cancel)

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        return self._scheduler.embed(inputs)

    def stats(self) -> dict[str, int]:
        """Slots in use, queue length, the batch size now (0 when idle), prompt tokens
        reused and read, decode steps so far."""
        s = self._scheduler.stats
        return {"slots": s.slots, "slots_in_use": s.slots_in_use, "queued": s.queued,
                "batch_size": s.batch_size, "reused_prompt_tokens": s.reused_prompt_tokens,
                "prefilled_prompt_tokens": s.prefilled_prompt_tokens, "decode_steps": s.steps}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "model_path": str(self.model_path),
                "batching": "continuous"}

    def close(self) -> None:
        import llama_cpp

        with contextlib.suppress(Exception):
            self._scheduler.close()
        if self._lora:
            llama_cpp.llama_adapter_lora_free(self._lora)
            self._lora = None
        with contextlib.suppress(Exception):
            self._model.close()
