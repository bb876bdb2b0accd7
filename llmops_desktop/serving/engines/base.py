"""One interface for every inference engine, and the registry the server picks from.

The HTTP layer only ever talks to an :class:`Engine`: it asks for the prompt's tokens
(plain text, or chat messages through the model's own template), then iterates
:meth:`Engine.generate` on a worker thread and reads text pieces until the engine stops
(end of sequence, ``max_tokens``) or the cancel flag is set. Stop strings, SSE, queueing
and metrics live above, so a new engine (vLLM, say) is one module with one
``@register_engine("name")`` class and no change to the server.

Engine modules import their heavy libraries (llama_cpp, torch, transformers) inside
functions: importing this package loads none of them.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from llmops_desktop.errors import InvalidInputError, NotFoundError


def check_embed_inputs(inputs: Sequence[Sequence[int]], limit: int) -> None:
    """Each input has 1..``limit`` token ids (what an engine can embed in one pass), else
    InvalidInputError naming the input and what to do."""
    for i, ids in enumerate(inputs):
        if not ids:
            raise InvalidInputError(f"input[{i}] is empty.")
        if len(ids) > limit:
            raise InvalidInputError(
                f"input[{i}] has {len(ids)} tokens; this deployment embeds at most {limit} "
                "per input. Split the text.")


def scheduled_pieces(scheduler: Any, request: Any, cancel: threading.Event) -> Iterator[Piece]:
    """Hand ``request`` to a batching ``scheduler`` (``submit``, ``wake``) and yield its
    pieces (``request.pieces()``) until it ends or ``cancel`` is set. A reader that stops
    early (a client gone, a stop string matched) sets ``cancel`` and wakes the scheduler,
    so the request's place in the batch is freed at the next step, not when it would have
    finished."""
    scheduler.submit(request)
    done = False
    try:
        for piece in request.pieces():
            if cancel.is_set():
                return
            yield piece
        done = True
    finally:
        if not done and not cancel.is_set():
            cancel.set()
            scheduler.wake()


class ChatTemplateMissingError(InvalidInputError):
    """The model carries no chat template, so chat requests cannot be formatted."""


class EngineNotFoundError(NotFoundError):
    """No engine is registered under the name the user gave."""


class EmbeddingsUnsupportedError(InvalidInputError):
    """This model (or engine) does not produce embedding vectors."""


@dataclass(frozen=True)
class EngineSettings:
    """How to load a model; engines ignore what does not apply to them."""

    ctx: int | None = None  # context length in tokens; None: the model's own (capped)
    threads: int | None = None  # CPU threads; None: the engine's default
    gpu_layers: int = 0  # llama.cpp: layers offloaded to the GPU (-1: all)
    parallel: int = 1  # requests the engine runs at the same time
    device: str = "auto"  # torch: cpu, cuda, cuda:N or auto
    quantization: str | None = None  # torch: bnb-nf4, bnb-fp4 or bnb-int8
    batch: int | None = None  # llama.cpp: prompt batch size (n_batch)
    lora_path: str | None = None  # llama.cpp: a LoRA GGUF applied on top of the model
    base_path: str | None = None  # torch, serving a LoRA adapter: its base model's folder
    chat_template: str | None = None  # Jinja text that replaces the model's own (or lack)
    gpus: str | None = None  # CUDA_VISIBLE_DEVICES for the process ("0,1"); None: as it is
    tensor_split: tuple[float, ...] | None = None  # llama.cpp: a share per chosen GPU
    split_mode: str | None = None  # llama.cpp: "layer" (default) or "row"
    device_map: str | None = None  # torch: accelerate's "auto", "balanced", "sequential"
    max_memory_gib: tuple[float, ...] | None = None  # torch device map: GiB per chosen GPU


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks of generation. ``temperature`` 0 means greedy."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    logprobs: int | None = None  # None: none; N: the chosen token's and the N most likely
    grammar: str | None = None  # GBNF the output must match (JSON schema, tool calls)


@dataclass(frozen=True)
class Piece:
    """Text produced by ``tokens`` new tokens (text may be empty while a multi-byte
    character is still incomplete)."""

    text: str
    tokens: int = 1


@dataclass
class PromptTokens:
    """A prompt ready for generation."""

    ids: list[int]
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


class Engine(ABC):
    """A loaded model that turns prompt tokens into a stream of text pieces.

    Implementations must let :meth:`generate` run on up to :attr:`parallel_slots` threads
    at once, and :meth:`tokenize`/:meth:`tokenize_chat` from any thread at any time.
    """

    name: ClassVar[str] = ""
    supports_logprobs: ClassVar[bool] = False  # pieces carry log-probabilities when asked
    supports_grammar: ClassVar[bool] = False  # SamplingParams.grammar constrains the output

    @classmethod
    @abstractmethod
    def load(cls, model_path: Path, settings: EngineSettings) -> Engine:
        """Load the model; raise an ``LLMOpsError`` whose message says what to do."""

    @property
    @abstractmethod
    def n_ctx(self) -> int:
        """Context length: prompt plus completion tokens must fit in it."""

    @property
    @abstractmethod
    def n_vocab(self) -> int:
        """Vocabulary size: token ids a prompt may contain are 0 .. n_vocab - 1."""

    @property
    @abstractmethod
    def parallel_slots(self) -> int:
        """How many generations may run at the same time."""

    @property
    @abstractmethod
    def has_chat_template(self) -> bool:
        """Whether the model carries a chat template (else chat requests get a 400)."""

    @abstractmethod
    def tokenize(self, text: str) -> PromptTokens:
        """A completion prompt's tokens, with a BOS token when the model wants one."""

    @abstractmethod
    def tokenize_chat(self, messages: Sequence[dict[str, Any]]) -> PromptTokens:
        """Chat messages rendered by the model's template (generation prompt added).

        Raises :class:`ChatTemplateMissingError` without a template and
        ``InvalidInputError`` when the template refuses the messages."""

    @abstractmethod
    def generate(self, prompt: PromptTokens, params: SamplingParams,
                 cancel: threading.Event) -> Iterator[Piece]:
        """Text pieces, one per new token, until end of sequence, ``max_tokens`` or
        ``cancel`` is set (checked before every token). Runs on a worker thread."""

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """One L2-normalised vector per token list; runs on a worker thread. Raises
        :class:`EmbeddingsUnsupportedError` for an engine or model that cannot embed."""
        raise EmbeddingsUnsupportedError(
            f"The {self.name} engine does not serve embeddings; serve a GGUF with the "
            "llama.cpp engine for /v1/embeddings.")

    def describe(self) -> dict[str, Any]:
        """What /health shows and the deployment record keeps about the engine."""
        return {"engine": self.name, "n_ctx": self.n_ctx, "parallel": self.parallel_slots,
                "chat_template": self.has_chat_template}

    def close(self) -> None:
        """Free the model's memory."""


# ---- the registry ------------------------------------------------------------------------

_ENGINES: dict[str, type[Engine]] = {}
# Engines that ship with the app; their modules register themselves on import.
_BUILTIN_MODULES = {"llama.cpp": "llmops_desktop.serving.engines.llama_cpp",
                    "torch": "llmops_desktop.serving.engines.torch_engine"}
E = TypeVar("E", bound=type[Engine])


def register_engine(name: str) -> Callable[[E], E]:
    """Class decorator: make an engine available as ``--engine NAME``."""

    def deco(cls: E) -> E:
        cls.name = name
        _ENGINES[name] = cls
        return cls

    return deco


def engine_names() -> list[str]:
    return sorted(set(_ENGINES) | set(_BUILTIN_MODULES))


def get_engine(name: str) -> type[Engine]:
    """The engine class registered as ``name`` (importing a built-in one on first use)."""
    if name not in _ENGINES and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    try:
        return _ENGINES[name]
    except KeyError:
        raise EngineNotFoundError(
            f"No serving engine called {name!r}; choose one of "
            f"{', '.join(engine_names())}.") from None


def pin_gpus(gpus: str | None) -> None:
    """Make only ``gpus`` (nvidia-smi's indexes) visible to CUDA in this process, before an
    engine imports its CUDA library: the server child's environment already says so when
    the window or the gateway started it; ``llmops serve --gpus`` serves in-process."""
    import os

    if gpus is None:
        return
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # CUDA's numbering = nvidia-smi's
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus


class IncrementalText:
    """Bytes in, complete UTF-8 text out: a character split across tokens waits for the
    rest (what llama.cpp's byte-level pieces need)."""

    def __init__(self) -> None:
        import codecs

        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
