"""How much memory a fine-tune needs, against what this machine has, with advice.

An estimate from config.json alone (nothing is loaded): the base weights (4 bytes a
parameter in float32 on CPU, 2 in bfloat16 on a GPU, about 0.55 in nf4 for QLoRA), the
adapter with its gradients and AdamW's two moments (16 bytes a trainable parameter), the
activations kept for the backward pass at the chosen length and batch (per layer about
``tokens x hidden x 34`` bytes at 16 bits, doubled in float32; with gradient checkpointing
only each layer's input and one layer's worth), and the logits (``tokens x vocab x 4``
bytes, twice: the float32 copy and its gradient), plus a fixed overhead for the runtime.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmops_desktop.finetune.config import FinetuneOptions, model_parameters, read_model_config

RUNTIME_OVERHEAD_CPU = 600 * 2**20  # torch + transformers in the process
RUNTIME_OVERHEAD_GPU = 800 * 2**20  # CUDA context and allocator slack
_LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class MemoryEstimate:
    device: str
    weights: int
    adapter: int
    optimizer: int
    activations: int
    overhead: int
    available: int | None
    available_what: str
    trainable_parameters: int
    advice: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.optimizer + self.activations + self.overhead

    @property
    def fits(self) -> bool | None:
        return None if self.available is None else self.total <= self.available

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total, "fits": self.fits}


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def available_memory(device: str) -> tuple[int | None, str]:
    """Free memory on the device that would train: the smallest GPU's free memory (NVML,
    no torch import) or the RAM available to this process."""
    if device == "cuda":
        try:
            import pynvml

            pynvml.nvmlInit()
            try:
                visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                count = pynvml.nvmlDeviceGetCount()
                indices = ([int(x) for x in visible.split(",") if x.strip().isdigit()]
                           if visible else list(range(count)))
                frees = [pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i)).free
                         for i in indices if i < count]
            finally:
                pynvml.nvmlShutdown()
            if frees:
                return int(min(frees)), "free GPU memory"
        except Exception:  # noqa: BLE001 - no NVML: fall back to torch if loaded
            import sys

            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                free, _ = torch.cuda.mem_get_info()
                return int(free), "free GPU memory"
        return None, "GPU memory (unknown)"
    try:
        import psutil

        return int(psutil.virtual_memory().available), "available RAM"
    except Exception:  # noqa: BLE001
        return None, "RAM (unknown)"


def _lora_params(cfg: dict[str, Any], r: int, targets: str | list[str]) -> int:
    h = int(cfg.get("hidden_size", 0))
    i = int(cfg.get("intermediate_size", 4 * h))
    layers = int(cfg.get("num_hidden_layers", 0))
    heads = int(cfg.get("num_attention_heads", 1)) or 1
    kv = int(cfg.get("num_key_value_heads", heads)) or heads
    hd = int(cfg.get("head_dim", h // heads if heads else h))
    shapes = {"q_proj": (h, heads * hd), "k_proj": (h, kv * hd), "v_proj": (h, kv * hd),
              "o_proj": (heads * hd, h), "gate_proj": (h, i), "up_proj": (h, i),
              "down_proj": (i, h)}
    names = _LINEAR_NAMES if targets == "all-linear" else [t for t in targets if t in shapes]
    if targets != "all-linear" and not names:
        names = ["q_proj", "v_proj"]
    return layers * sum(r * (shapes[n][0] + shapes[n][1]) for n in names)


def estimate_memory(model_dir: Path, opts: FinetuneOptions, *, device: str | None = None,
                    metadata: dict[str, Any] | None = None) -> MemoryEstimate:
    from llmops_desktop.quantize.bnb import cuda_available

    cfg = read_model_config(model_dir)
    if device is None or device == "auto":
        device = "cuda" if opts.device in ("auto", "cuda") and cuda_available() else "cpu"
    device = "cuda" if device.startswith("cuda") else "cpu"
    params = model_parameters(model_dir, metadata) or 0
    h = int(cfg.get("hidden_size", 0))
    layers = int(cfg.get("num_hidden_layers", 0))
    vocab = int(cfg.get("vocab_size", 0))
    if opts.quantized:
        embed = 2 * vocab * h
        weights = int((params - embed) * 0.55 + embed * (2 if device == "cuda" else 4))
    else:
        weights = params * (2 if device == "cuda" else 4)
    trainable = _lora_params(cfg, opts.r, opts.targets())
    adapter = trainable * 4 * 2  # float32 weights and their gradients
    optimizer = trainable * 8  # AdamW: two float32 moments
    tokens = opts.batch_size * opts.max_len * (2 if opts.preference else 1)  # chosen+rejected
    bytes_act = 2 if device == "cuda" else 4
    if opts.gradient_checkpointing:
        acts = tokens * h * bytes_act * layers + tokens * h * 17 * bytes_act
    else:
        acts = tokens * h * 17 * bytes_act * layers
    logits = tokens * vocab * 4 * 2
    activations = int(acts + logits)
    overhead = RUNTIME_OVERHEAD_GPU if device == "cuda" else RUNTIME_OVERHEAD_CPU
    available, what = available_memory(device)
    est = MemoryEstimate(device=device, weights=weights, adapter=adapter, optimizer=optimizer,
                         activations=activations, overhead=overhead, available=available,
                         available_what=what, trainable_parameters=trainable)
    est.advice = advice(est, opts)
    return est


def advice(est: MemoryEstimate, opts: FinetuneOptions) -> list[str]:
    """Concrete changes that bring the need under what is available, biggest first."""
    if est.available is None:
        return [f"Needs about {_gb(est.total)}; how much {est.available_what.split(' (')[0]} "
                "this machine has could not be read."]
    if est.total <= est.available * 0.9:
        return []
    out = [f"Needs about {_gb(est.total)} but only {_gb(est.available)} of "
           f"{est.available_what} is there."]
    if opts.method == "lora" and est.weights > est.available * 0.3:
        per = 2 if est.device == "cuda" else 4
        out.append(f"Use QLoRA (--method qlora): the base in 4-bit takes about "
                   f"{_gb(est.weights * 0.55 / per)} instead of {_gb(est.weights)}.")
    if not opts.gradient_checkpointing and est.activations > est.available * 0.2:
        out.append("Turn on gradient checkpointing (--gradient-checkpointing): activations "
                   "shrink by roughly the number of layers, at about a third more time.")
    if opts.batch_size > 1 and est.activations > est.available * 0.2:
        half = max(1, opts.batch_size // 2)
        out.append(f"Lower --batch-size to {half} and raise --grad-accum to "
                   f"{opts.grad_accum * opts.batch_size // half} (same effective batch).")
    if opts.max_len > 512 and est.activations > est.available * 0.2:
        out.append(f"Shorten --max-len (now {opts.max_len}); activations grow with it. Check "
                   "the dataset's token-length histogram for a length that keeps most rows.")
    if opts.r > 16:
        out.append(f"A smaller rank (--r 16, now {opts.r}) trims the adapter and optimizer.")
    return out


def describe(est: MemoryEstimate) -> str:
    lines = [f"memory needed on {est.device}: about {_gb(est.total)} (weights {_gb(est.weights)}, "
             f"adapter {_gb(est.adapter)}, optimizer {_gb(est.optimizer)}, activations "
             f"{_gb(est.activations)}, runtime {_gb(est.overhead)})"]
    if est.available is not None:
        lines.append(f"{est.available_what}: {_gb(est.available)}"
                     + ("" if est.fits else "  -- NOT ENOUGH"))
    lines += [f"  - {a}" for a in est.advice]
    return "\n".join(lines)
