"""bitsandbytes 4-bit (nf4, fp4) and 8-bit (LLM.int8) checkpoints for the torch engine.

What transformers 5 quantizes (``replace_with_bnb_linear``): every module whose type is
exactly ``nn.Linear`` (or GPT-2's ``Conv1D``), except the output embeddings (``lm_head``),
the module of the model's last parameter, tied weights, ``_keep_in_fp32_modules`` and
``llm_int8_skip_modules``. Embeddings and norms stay as they are. So ``vocab_size`` never
matters; for a Llama-family model the quantized layers are q/k/v/o and gate/up/down.

bitsandbytes 0.50 on CPU: 8-bit works for any sizes. 4-bit works for any sizes on CPUs
without AVX512-BF16; on CPUs with it, bitsandbytes repacks each 4-bit weight for its fused
kernel, which needs the layer's output size to be a multiple of 32 (``AssertionError: N
must be divisible by block_n``) and its input size a multiple of the 4-bit block size, 64
(a reshape error otherwise). A checkpoint is a file that travels to colleagues' machines,
so the CPU rule is applied on every CPU, not only where it would fail. Real models pass it.

:func:`bnb_support` is what the window calls to enable or disable a mode: it reads
config.json and looks for packages and a GPU without importing torch. :func:`quantize_bnb`
repeats the check exactly on the model built on the meta device before loading weights.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops_desktop.errors import InvalidInputError, JobError
from llmops_desktop.jobs.events import Event, Log, Metric, Progress
from llmops_desktop.quantize.targets import BNB_MODES

CPU_4BIT_OUT_MULTIPLE = 32  # bitsandbytes' CPU packing block (block_n)
CPU_4BIT_IN_MULTIPLE = 64  # the 4-bit quantization block size (Params4bit's default)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_VERIFY_PROMPT = "The quick brown fox"


def bnb_config_kwargs(mode: str, double_quant: bool = True, compute_dtype: str | None = None,
                      *, device: str = "cpu") -> dict[str, Any]:
    """The ``BitsAndBytesConfig`` arguments for a mode; JSON-safe (dtypes are names).

    The 4-bit compute dtype defaults to float32 on CPU and to bfloat16 on CUDA (float16
    on GPUs without bfloat16; that one check imports torch, so only for a CUDA device).
    """
    if mode == "bnb-int8":
        return {"load_in_8bit": True}
    if mode not in ("bnb-nf4", "bnb-fp4"):
        raise InvalidInputError(
            f"Unknown bitsandbytes mode {mode!r}; one of {', '.join(BNB_MODES)}.")
    if compute_dtype is None:
        compute_dtype = "float32"
        if device.startswith("cuda"):
            import torch

            compute_dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return {"load_in_4bit": True, "bnb_4bit_quant_type": mode.removeprefix("bnb-"),
            "bnb_4bit_use_double_quant": double_quant, "bnb_4bit_compute_dtype": compute_dtype}


def bnb_mode_of(config: dict[str, Any]) -> str | None:
    """The bnb mode a config.json's ``quantization_config`` records, or None."""
    qc = config.get("quantization_config")
    if not isinstance(qc, dict) or qc.get("quant_method") != "bitsandbytes":
        return None
    if qc.get("load_in_8bit"):
        return "bnb-int8"
    if qc.get("load_in_4bit"):
        return f"bnb-{qc.get('bnb_4bit_quant_type', 'fp4')}"
    return None


@functools.lru_cache(maxsize=1)
def cuda_available() -> bool:
    """Whether torch here can use an NVIDIA GPU, without importing torch when it is not loaded.

    With torch already imported this is ``torch.cuda.is_available()``. Otherwise it needs a
    torch build with CUDA (``torch/version.py`` names a CUDA version; a ``+cpu`` build does
    not) and an NVIDIA driver (``/proc/driver/nvidia/version`` or ``nvidia-smi`` on PATH),
    and ``CUDA_VISIBLE_DEVICES`` must not hide every GPU. The child that does the work asks
    torch itself, so an optimistic answer here ends in a clear error, never a wrong file.
    """
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.origin:
        return False
    try:
        version_py = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return False
    m = re.search(r"^cuda\s*(?::[^=]*)?=\s*['\"]([^'\"]+)['\"]", version_py, re.M)
    if not m:
        return False
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _read_config(model_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(config, None) or (None, the reason this is not a model bitsandbytes can take)."""
    model_dir = Path(model_dir)
    if model_dir.is_file():
        return None, (f"{model_dir.name} is a single file; bitsandbytes quantizes a Hugging Face "
                      "model folder.")
    if (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file():
        return None, "This is a LoRA adapter; merge it into its base model, then quantize that."
    path = model_dir / "config.json"
    if not path.is_file():
        return None, f"{model_dir} is not a Hugging Face model folder (it has no config.json)."
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"config.json in {model_dir} cannot be read ({exc})."
    if not isinstance(config, dict) or not config.get("model_type"):
        return None, f"config.json in {model_dir} does not name a model type (model_type)."
    return config, None


def _size_fields(config: dict[str, Any]) -> dict[str, int]:
    """Sizes of a decoder's linear layers, named as config.json names them."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    c = {**config, **{k: v for k, v in text.items() if v is not None}}

    def pick(*keys: str) -> tuple[str, int] | None:
        for k in keys:
            if isinstance(c.get(k), int) and not isinstance(c.get(k), bool):
                return k, c[k]
        return None

    out: dict[str, int] = {}
    hidden = pick("hidden_size", "n_embd", "d_model")
    if hidden:
        out[hidden[0]] = hidden[1]
    inter = pick("intermediate_size", "n_inner", "ffn_dim")
    if inter:
        out[inter[0]] = inter[1]
    elif hidden and c.get("model_type") == "gpt2":
        out["4*n_embd"] = 4 * hidden[1]
    heads = pick("num_attention_heads", "n_head")
    if heads and hidden:
        head_dim = c.get("head_dim") if isinstance(c.get("head_dim"), int) else None
        head_dim = head_dim or hidden[1] // max(1, heads[1])
        out[f"{heads[0]}*head_dim"] = heads[1] * head_dim
        kv = pick("num_key_value_heads")
        if kv:
            out[f"{kv[0]}*head_dim"] = kv[1] * head_dim
    return out


_CPU_4BIT_RULE = (f"4-bit on CPU needs every quantized layer's output size to be a multiple "
                  f"of {CPU_4BIT_OUT_MULTIPLE} and its input size a multiple of "
                  f"{CPU_4BIT_IN_MULTIPLE}")
_CPU_4BIT_WAY_OUT = "use bnb-int8, or a CUDA GPU."


def _cpu_4bit_reason(named: dict[str, int]) -> str | None:
    """The CPU 4-bit rule over the sizes config.json names.

    In a Llama-style block every one of them is some quantized layer's output size, and all
    but the key/value width are also one's input size (hidden feeds q/k/v/gate/up,
    heads*head_dim feeds o_proj, intermediate feeds down_proj).
    """
    odd = []
    for key, size in named.items():
        if size % CPU_4BIT_OUT_MULTIPLE:
            odd.append(f"{key} {size} (not a multiple of {CPU_4BIT_OUT_MULTIPLE})")
        elif size % CPU_4BIT_IN_MULTIPLE and not key.startswith("num_key_value_heads"):
            odd.append(f"{key} {size} (not a multiple of {CPU_4BIT_IN_MULTIPLE})")
    if not odd:
        return None
    return f"{_CPU_4BIT_RULE}, and this model has {', '.join(odd)}; {_CPU_4BIT_WAY_OUT}"


def bnb_support(model_dir: Path, mode: str, *, device: str | None = None) -> str | None:
    """None when this machine can quantize this model to ``mode``; else one sentence why not.

    Cheap enough for the window to call when it draws a menu: reads config.json, looks for
    packages with ``find_spec`` and for a GPU with :func:`cuda_available`; imports nothing
    heavy. ``device`` ("cpu", "cuda") asks about a device other than the one that would be
    used; the CPU rule for 4-bit is read from config.json (Llama-family key names) and
    checked again exactly by :func:`quantize_bnb`.
    """
    if mode not in BNB_MODES:
        return f"Unknown bitsandbytes mode {mode!r}; choose one of {', '.join(BNB_MODES)}."
    for pkg in ("bitsandbytes", "torch", "transformers", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            return f"{pkg} is not installed; install it (pip install {pkg}) to use {mode}."
    config, reason = _read_config(model_dir)
    if reason:
        return reason
    assert config is not None
    have = config.get("quantization_config")
    if isinstance(have, dict):
        method = bnb_mode_of(config) or have.get("quant_method") or "another method"
        return f"This model is already quantized ({method}); quantize its original instead."
    folder = Path(model_dir)
    if not any(p.suffix in (".safetensors", ".bin") for p in folder.iterdir() if p.is_file()):
        return f"{folder} has config.json but no weights (*.safetensors)."
    if device is None:
        device = "cuda" if cuda_available() else "cpu"
    if device.startswith("cuda"):
        return None if cuda_available() else (
            "No CUDA GPU is usable here (no NVIDIA driver, or torch was built without CUDA).")
    if mode == "bnb-int8":
        return None
    return _cpu_4bit_reason(_size_fields(config))


def _layers_to_quantize(config: Any) -> list[tuple[str, int, int]]:
    """(name, in_features, out_features) of every layer transformers would make 4/8-bit,
    found by building the model on the meta device (no weights read) and asking
    transformers which modules it keeps (``get_keys_to_not_convert``)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    try:
        from transformers.quantizers.base import get_keys_to_not_convert
        from transformers.quantizers.quantizers_utils import should_convert_module

        skip = list(get_keys_to_not_convert(model)) + list(model._keep_in_fp32_modules or [])
    except ImportError:  # a transformers without these helpers: keep the head, like it does
        head = model.get_output_embeddings()
        skip = [n for n, m in model.named_modules() if head is not None and m is head]

        def should_convert_module(name: str, patterns: list[str] | None) -> bool:
            return not any(name == p or name.startswith(p + ".") or name.endswith("." + p)
                           for p in patterns or [])
    out = []
    for name, module in model.named_modules():
        if not should_convert_module(name, skip):
            continue
        if type(module) is torch.nn.Linear:
            out.append((name, module.in_features, module.out_features))
        elif isinstance(module, Conv1D):
            k, n = module.weight.shape
            out.append((name, k, n))
    return out


def _exact_cpu_4bit_reason(layers: list[tuple[str, int, int]]) -> str | None:
    bad = [(n, k, o) for n, k, o in layers
           if o % CPU_4BIT_OUT_MULTIPLE or k % CPU_4BIT_IN_MULTIPLE]
    if not bad:
        return None
    shown = ", ".join(f"{n} ({k} in, {o} out)" for n, k, o in bad[:3])
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{_CPU_4BIT_RULE}, and this model has {shown}{more}; {_CPU_4BIT_WAY_OUT}"


def _quiet_int8_cast_notice() -> None:
    """Drop bitsandbytes' per-call "MatMul8bitLt: inputs will be cast … to float16" notice,
    logged on every forward of an 8-bit layer fed float32 (as on CPU); idempotent."""
    log = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(getattr(f, "_llmops", False) for f in log.filters):
        class _Drop(logging.Filter):
            _llmops = True

            def filter(self, record: logging.LogRecord) -> bool:
                return "inputs will be cast" not in str(record.msg)
        log.addFilter(_Drop())


def _from_pretrained_kwargs(mode: str | None, device: str) -> dict[str, Any]:
    """device_map, dtype and (for a mode) the quantization config for ``from_pretrained``."""
    from transformers import BitsAndBytesConfig

    _quiet_int8_cast_notice()
    kwargs: dict[str, Any] = {"device_map": "cpu" if device == "cpu" else
                              ("auto" if device == "cuda" else {"": device}),
                              "dtype": "auto"}  # as config.json says; transformers: float32
    if mode is not None:
        q = bnb_config_kwargs(mode, device=device)
        kwargs["quantization_config"] = BitsAndBytesConfig(**q)
        if device != "cpu":  # what stays unquantized (embeddings, head, norms) in 16 bits
            kwargs["dtype"] = q.get("bnb_4bit_compute_dtype", "float16")
    return kwargs


def load_bnb(model_dir: Path, mode: str | None = None, *, device: str | None = None) -> Any:
    """An HF causal LM in 4/8-bit, for the torch engine, in eval mode.

    ``model_dir`` is either an original model (quantized as it loads, ``mode`` required) or a
    checkpoint saved by :func:`quantize_bnb` (its config.json says the mode; ``mode`` may be
    None, and must match when given). ``device`` defaults to CUDA when torch sees a GPU.
    """
    from transformers import AutoModelForCausalLM

    config, reason = _read_config(Path(model_dir))
    if reason:
        raise InvalidInputError(reason)
    assert config is not None
    saved = bnb_mode_of(config)
    if saved is not None:
        if mode is not None and mode != saved:
            raise InvalidInputError(
                f"{model_dir} is a {saved} checkpoint; it cannot load as {mode}.")
        mode_to_apply = None
    elif mode is None:
        raise InvalidInputError(f"{model_dir} is not quantized; say which mode to load it in "
                                f"({', '.join(BNB_MODES)}).")
    else:
        reason = bnb_support(Path(model_dir), mode, device=device)
        if reason:
            raise InvalidInputError(reason)
        mode_to_apply = mode
    device = device or _default_device()
    model = AutoModelForCausalLM.from_pretrained(str(model_dir),
                                                 **_from_pretrained_kwargs(mode_to_apply, device))
    model.eval()
    return model


def _copy_side_files(src: Path, dst: Path) -> list[str]:
    """Copy every top-level non-weight file save_pretrained did not write (tokenizer.*,
    chat_template*, special_tokens_map.json, README.md, LICENSE…)."""
    copied = []
    for p in sorted(src.iterdir()):
        if (not p.is_file() or p.name.startswith(".") or p.suffix in _WEIGHT_SUFFIXES
                or p.name in _WEIGHT_INDEXES or (dst / p.name).exists()):
            continue
        shutil.copy2(p, dst / p.name)
        copied.append(p.name)
    return copied


def _verify(out_dir: Path, device: str, new_tokens: int = 4) -> str:
    """Reload the checkpoint and generate greedily; returns the generated text (or ids)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out_dir),
                                                 **_from_pretrained_kwargs(None, device))
    model.eval()
    if bnb_mode_of(model.config.to_dict()) is None:
        raise JobError(f"The checkpoint in {out_dir} reloaded without its quantization.")
    tokenizer = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(out_dir))
        ids = tokenizer(_VERIFY_PROMPT, return_tensors="pt").input_ids
    except (OSError, ValueError, TypeError):
        bos = model.config.bos_token_id
        ids = torch.tensor([[bos if isinstance(bos, int) else 1]])
    ids = ids.to(model.device)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logits = model(ids).logits
        if not torch.isfinite(logits).all():
            raise JobError("The quantized model produces NaN or infinite values.")
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             pad_token_id=model.config.eos_token_id)
    new = out[0, ids.shape[1]:]
    if new.numel() != new_tokens:
        raise JobError(f"The quantized model generated {new.numel()} tokens, not {new_tokens}.")
    del model
    return tokenizer.decode(new) if tokenizer is not None else str(new.tolist())


def _dir_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def quantize_bnb(model_dir: Path, out_dir: Path, mode: str, *,
                 device: str | None = None) -> Iterator[Event]:
    """Save a bitsandbytes checkpoint of ``model_dir`` in ``out_dir`` (which must not exist or
    be empty), then reload it and generate a few tokens to prove it works.

    Yields Progress ("steps": check, load + quantize, save, verify) and Log events; the last
    event is ``Metric("bnb_bytes", size of out_dir)``. What was made is recorded in
    ``out_dir/config.json`` under ``quantization_config`` (see :func:`bnb_mode_of`).
    Raises InvalidInputError, before any heavy work, when the mode cannot be done here.
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    reason = bnb_support(model_dir, mode, device=device)
    if reason:
        raise InvalidInputError(reason)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise InvalidInputError(f"{out_dir} already exists and is not empty.")
    total = 4
    yield Progress(0, total, "steps", f"checking {model_dir.name} for {mode}")
    from transformers import AutoConfig, AutoModelForCausalLM

    device = device or _default_device()
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InvalidInputError("torch sees no CUDA GPU here; quantize on the CPU instead.")
    config = AutoConfig.from_pretrained(str(model_dir))
    layers = _layers_to_quantize(config)
    if not layers:
        raise InvalidInputError(f"{model_dir.name} has no linear layers bitsandbytes can quantize.")
    if device == "cpu" and mode != "bnb-int8":
        reason = _exact_cpu_4bit_reason(layers)
        if reason:
            raise InvalidInputError(reason)
    q = bnb_config_kwargs(mode, device=device)
    yield Log(f"{mode} on {device}: {len(layers)} linear layers to quantize; "
              f"settings {json.dumps(q, sort_keys=True)}")

    yield Progress(1, total, "steps", f"loading and quantizing to {mode} on {device}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(str(model_dir),
                                                     **_from_pretrained_kwargs(mode, device))
    yield Log(f"in memory: {model.get_memory_footprint() / 1e6:.1f} MB")

    yield Progress(2, total, "steps", "saving the checkpoint")
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    del model
    copied = _copy_side_files(model_dir, out_dir)
    if copied:
        yield Log(f"copied {', '.join(copied)}")
    saved, _ = _read_config(out_dir)
    if not saved or bnb_mode_of(saved) != mode:
        raise JobError(f"The saved config.json does not record {mode} quantization.")

    yield Progress(3, total, "steps", "verifying: reloading and generating")
    text = _verify(out_dir, device)
    yield Log(f"verified: the reloaded checkpoint generated {text!r}")
    size = _dir_bytes(out_dir)
    before = _dir_bytes(model_dir)
    yield Progress(4, total, "steps", f"{mode} checkpoint saved")
    yield Log(f"{mode}: {size / 1e6:.2f} MB on disk (the original: {before / 1e6:.2f} MB)")
    yield Metric("bnb_bytes", float(size))
