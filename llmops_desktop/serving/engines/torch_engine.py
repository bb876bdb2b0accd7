"""The torch engine: a Hugging Face model folder through transformers, on CPU or CUDA.

CPU loads the weights in float32; CUDA in the checkpoint's own dtype. ``quantization``
(``bnb-nf4``, ``bnb-fp4``, ``bnb-int8``), or a checkpoint saved in one of those modes,
loads through :func:`llmops_desktop.quantize.bnb.load_bnb`. Generation is a plain token
loop over the KV cache (greedy, or temperature + top-p sampling with a per-request
seed) that checks the cancel flag before every token.

Parallel requests: one generation at a time by default. ``--parallel N`` lets N requests
run their token loops at once on threads that share the one model (no batching: on a CPU
they share torch's threads; on a GPU their kernels interleave).
"""

from __future__ import annotations

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
    register_engine,
)

DEFAULT_MAX_CTX = 4096
_CONTEXT_OVERLAP = 5  # tokens of left context re-decoded so spaces come out right


def _adapter_base(adapter_dir: Path) -> Path:
    """The base model folder a PEFT LoRA adapter names (``base_model_name_or_path``)."""
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = Path(str(cfg.get("base_model_name_or_path") or ""))
    if not base.is_absolute() or not (base / "config.json").is_file():
        raise InvalidInputError(
            f"{adapter_dir.name} is a LoRA adapter whose base model ({base or 'not named'}) is "
            "not on this machine. Import the base, or merge the adapter and serve the merge.")
    return base


@register_engine("torch")
class TorchEngine(Engine):
    """One transformers model, shared by up to ``parallel`` generating threads."""

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
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llmops_desktop.quantize.bnb import bnb_mode_of, load_bnb

        if settings.threads:
            torch.set_num_threads(settings.threads)
        device = settings.device or "auto"
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InvalidInputError(f"--device {device}: torch sees no CUDA GPU here. Use "
                                    "--device cpu, or the llama.cpp engine with a GGUF.")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        quantization = settings.quantization or bnb_mode_of(config)
        try:
            if quantization:
                model = load_bnb(model_path, settings.quantization, device=device)
            else:
                model = AutoModelForCausalLM.from_pretrained(
                    str(model_path), dtype=torch.float32 if device == "cpu" else "auto")
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
        import torch

        if cancel.is_set():
            return
        rng = torch.Generator(device=self.device)
        rng.manual_seed(params.seed if params.seed is not None else random.getrandbits(31))
        ids = list(prompt.ids)
        prefix, read = max(len(ids) - _CONTEXT_OVERLAP, 0), len(ids)
        produced = 0
        past = None
        step = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            while produced < params.max_tokens and not cancel.is_set():
                out = self.model(input_ids=step, past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = _sample(out.logits[0, -1].float(), params, rng)
                if token in self._eos_ids:
                    break
                produced += 1
                ids.append(token)
                text, prefix, read = self._decode_new(ids, prefix, read)
                yield Piece(text)
                step = torch.tensor([[token]], device=self.device)
        if read < len(ids):  # an unfinished multi-byte character at the very end
            with self._tok_lock:
                before = self._tok.decode(ids[prefix:read], skip_special_tokens=True)
                after = self._tok.decode(ids[prefix:], skip_special_tokens=True)
            if len(after) > len(before):
                yield Piece(after[len(before):], 0)

    def _decode_new(self, ids: list[int], prefix: int, read: int) -> tuple[str, int, int]:
        """The text the newest tokens add, held back while it ends in half a character."""
        with self._tok_lock:
            before = self._tok.decode(ids[prefix:read], skip_special_tokens=True)
            after = self._tok.decode(ids[prefix:], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            return after[len(before):], read, len(ids)
        return "", prefix, read

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "device": self.device, "quantization": self.quantization,
                "model_path": str(self.model_path)}

    def close(self) -> None:
        self.model = None


def _sample(logits: Any, params: SamplingParams, rng: Any) -> int:
    import torch

    if params.temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) < params.top_p
        choice = torch.multinomial(sorted_probs * keep, 1, generator=rng)
        return int(order[choice])
    return int(torch.multinomial(probs, 1, generator=rng))
