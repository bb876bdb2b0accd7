"""The torch engine: a Hugging Face model folder through transformers, on CPU or CUDA.

CPU loads the weights in float32; CUDA in the checkpoint's own dtype. ``quantization``
(``bnb-nf4``, ``bnb-fp4``, ``bnb-int8``), or a checkpoint saved in one of those modes,
loads through :func:`llmops_desktop.quantize.bnb.load_bnb`.

Generation is continuous batching (:mod:`.torch_batch`): ``--parallel N`` sequences
decode together, one forward pass per step over a left-padded batch; requests join and
leave between steps, each with its own sampling (greedy, or temperature + top-p with a
per-request seed), its own grammar (llguidance, for JSON schemas and tool calls) and,
when asked, log-probabilities. ``/v1/embeddings`` is the mean of
the last hidden state over the input's tokens, L2-normalised.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.serving.engines.base import (
    ChatTemplateMissingError,
    Engine,
    EngineSettings,
    Piece,
    PromptTokens,
    SamplingParams,
    check_embed_inputs,
    pin_gpus,
    register_engine,
    scheduled_pieces,
)

DEFAULT_MAX_CTX = 4096


def _adapter_base(adapter_dir: Path) -> Path:
    """The base model folder a PEFT LoRA adapter names (``base_model_name_or_path``)."""
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = Path(str(cfg.get("base_model_name_or_path") or ""))
    if not base.is_absolute() or not (base / "config.json").is_file():
        raise InvalidInputError(
            f"{adapter_dir.name} is a LoRA adapter whose base model ({base or 'not named'}) is "
            "not on this machine. Import the base, or merge the adapter and serve the merge.")
    return base


def device_map_kwargs(settings: EngineSettings, cuda_devices: int) -> dict[str, Any]:
    """``from_pretrained``'s accelerate placement for ``settings.device_map``: the map's
    strategy and, with memory per GPU, ``max_memory`` for each visible (chosen) GPU."""
    if not settings.device_map:
        return {}
    if cuda_devices == 0:
        raise InvalidInputError(f"Device map {settings.device_map}: torch sees no CUDA GPU "
                                "here. Leave the device map empty to serve on one device.")
    out: dict[str, Any] = {"device_map": settings.device_map}
    if settings.max_memory_gib:
        if len(settings.max_memory_gib) != cuda_devices:
            raise InvalidInputError(f"Memory per GPU: {len(settings.max_memory_gib)} numbers "
                                    f"for the {cuda_devices} GPU(s) torch sees; give one per "
                                    "GPU in --gpus.")
        out["max_memory"] = {i: f"{gib:g}GiB" for i, gib in enumerate(settings.max_memory_gib)}
    return out


@register_engine("torch")
class TorchEngine(Engine):
    """One transformers model; up to ``parallel`` generations decode in one batch."""

    supports_logprobs = True
    supports_grammar = True

    def __init__(self, model: Any, tokenizer: Any, *, device: str, n_ctx: int, parallel: int,
                 model_path: Path, quantization: str | None) -> None:
        self.model = model
        self._tok = tokenizer
        self._tok_lock = threading.Lock()  # fast tokenizers are not safe across threads
        self.device = device
        self._n_ctx = n_ctx
        self._n_vocab = int(model.get_input_embeddings().num_embeddings)
        self._parallel = parallel
        self.model_path = model_path
        self.quantization = quantization
        eos = getattr(model.generation_config, "eos_token_id", None)
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(int(tokenizer.eos_token_id))
        self._eos_ids = frozenset(int(e) for e in eos_ids)
        from llmops_desktop.serving.engines.torch_batch import TorchScheduler

        self._scheduler = TorchScheduler(model, self._decode, self._eos_ids, device, parallel)
        self._grammar_tokenizer: Any = None

    @classmethod
    def load(cls, model_path: Path, settings: EngineSettings) -> TorchEngine:
        model_path = Path(model_path)
        adapter_dir = None
        if (model_path / "adapter_config.json").is_file():  # a LoRA adapter: base + adapter
            adapter_dir = model_path
            model_path = (Path(settings.base_path) if settings.base_path
                          else _adapter_base(model_path))
        config_path = model_path / "config.json"
        if not config_path.is_file():
            raise InvalidInputError(
                f"{model_path} is not a Hugging Face model folder (no config.json); the torch "
                "engine serves those. Use --engine llama.cpp for a GGUF file.")
        if settings.parallel < 1:
            raise InvalidInputError("--parallel must be at least 1.")
        pin_gpus(settings.gpus)  # before torch initialises CUDA
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llmops_desktop.quantize.bnb import bnb_mode_of, load_bnb

        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = settings.device or "auto"
        if device == "auto" or settings.device_map:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidInputError(f"--device {device}: torch sees no CUDA GPU here. Use "
                                    "--device cpu, or the llama.cpp engine with a GGUF.")
        placement = device_map_kwargs(settings, torch.cuda.device_count())
        if placement:
            device = "cuda:0"  # the first chosen GPU: the embeddings, where inputs go
        config = json.loads(config_path.read_text(encoding="utf-8"))
        quantization = settings.quantization or bnb_mode_of(config)
        if quantization and placement:
            raise InvalidInputError(f"Device map: a bitsandbytes ({quantization}) model loads "
                                    "on one GPU here; leave the device map empty, or serve "
                                    "the unquantized model across GPUs.")
        try:
            if quantization:
                model = load_bnb(model_path, settings.quantization, device=device)
            else:
                model = AutoModelForCausalLM.from_pretrained(
                    str(model_path), dtype=torch.float32 if device == "cpu" else "auto",
                    **placement)
                if not placement:
                    model.to(device)
                model.eval()
            if adapter_dir is not None:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
                model.eval()
            tok_dir = (adapter_dir if adapter_dir is not None
                       and (adapter_dir / "tokenizer_config.json").is_file() else model_path)
            tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"transformers could not load {model_path}: {exc}") from exc
        if settings.chat_template:  # --chat-template replaces the model's own (or lack)
            tokenizer.chat_template = settings.chat_template
        trained = int(getattr(model.config, "max_position_embeddings", 0) or DEFAULT_MAX_CTX)
        if settings.ctx and settings.ctx > trained:
            raise InvalidInputError(
                f"--ctx {settings.ctx} is more than the {trained} tokens this model takes; "
                f"pass --ctx {trained} or less.")
        n_ctx = settings.ctx or min(trained, DEFAULT_MAX_CTX)
        return cls(model, tokenizer, device=device, n_ctx=n_ctx, parallel=settings.parallel,
                   model_path=model_path, quantization=quantization)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def parallel_slots(self) -> int:
        return self._parallel

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self._tok, "chat_template", None))

    def tokenize(self, text: str) -> PromptTokens:
        with self._tok_lock:
            ids = self._tok(text, add_special_tokens=True)["input_ids"]
        return PromptTokens([int(i) for i in ids])

    def tokenize_chat(self, messages: Sequence[dict[str, Any]]) -> PromptTokens:
        if not self.has_chat_template:
            raise ChatTemplateMissingError(
                f"{self.model_path.name} has no chat template (no chat_template in its "
                "tokenizer files), so chat messages cannot be formatted for it. Use "
                "/v1/completions with a plain prompt, or serve a model that has one.")
        with self._tok_lock:
            try:
                text = self._tok.apply_chat_template(list(messages), add_generation_prompt=True,
                                                     tokenize=False)
                ids = self._tok(text, add_special_tokens=False)["input_ids"]
            except Exception as exc:  # noqa: BLE001 - jinja2 errors and raise_exception()
                raise InvalidInputError(f"The model's chat template refused these messages: "
                                        f"{exc}") from None
        return PromptTokens([int(i) for i in ids])

    def generate(self, prompt: PromptTokens, params: SamplingParams,
                 cancel: threading.Event) -> Iterator[Piece]:
        from llmops_desktop.serving.engines.torch_batch import TorchRequest, grammar_matcher

        if cancel.is_set():
            return
        seed = params.seed if params.seed is not None else random.getrandbits(31)
        matcher = (grammar_matcher(self._llg_tokenizer(), params.grammar)
                   if params.grammar else None)
        req = TorchRequest(list(prompt.ids), params.max_tokens, temperature=params.temperature,
                           top_p=params.top_p, seed=seed, logprobs=params.logprobs,
                           matcher=matcher, cancel=cancel)
        yield from scheduled_pieces(self._scheduler, req, cancel)

    def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        check_embed_inputs(inputs, self._n_ctx)
        return self._scheduler.embed(inputs)

    def stats(self) -> dict[str, int]:
        """Rows in use, queue length, the batch size now (0 when idle), prompt tokens
        read, decode steps so far (no prefix reuse: reused is always 0)."""
        s = self._scheduler.stats
        return {"slots": s.slots, "slots_in_use": s.slots_in_use, "queued": s.queued,
                "batch_size": s.batch_size, "reused_prompt_tokens": 0,
                "prefilled_prompt_tokens": s.prefilled_prompt_tokens, "decode_steps": s.steps}

    def _llg_tokenizer(self) -> Any:
        """llguidance's view of the tokenizer (made once, on the first grammar)."""
        with self._tok_lock:
            if self._grammar_tokenizer is None:
                import llguidance.hf

                try:
                    self._grammar_tokenizer = llguidance.hf.from_tokenizer(
                        self._tok, n_vocab=self._n_vocab, eos_token=sorted(self._eos_ids))
                except Exception as exc:  # noqa: BLE001 - a slow or unusual tokenizer
                    raise InvalidInputError(
                        f"{self.model_path.name}'s tokenizer cannot drive a grammar ({exc}); "
                        "serve it without response_format / forced tool calls, or as a GGUF "
                        "with the llama.cpp engine.") from None
            return self._grammar_tokenizer

    def _decode(self, ids: list[int]) -> str:
        with self._tok_lock:
            return self._tok.decode(ids, skip_special_tokens=True)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": self.device, "quantization": self.quantization,
                "model_path": str(self.model_path), "batching": "continuous"}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._scheduler.close()
        self.model = None

