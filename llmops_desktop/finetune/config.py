"""Fine-tune options: one typed record, its defaults per model size, and its checks.

Declared with the shared field specification (``llmops_desktop.fields``): the same
labels and descriptions are the CLI's flags and help and the Fine-tune page's form.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.fields import spec

METHODS = ("lora", "qlora", "dpo")
PREFERENCE_METHODS = ("dpo",)  # trained on preference pairs (prompt, chosen, rejected)
STRATEGIES = ("ddp", "fsdp")
SCHEDULERS = ("cosine", "linear", "constant")
DEFAULT_TARGETS = "all-linear"


@dataclass
class FinetuneOptions:
    """Everything a run is made of besides its base model and dataset."""

    method: str = spec("lora", "lora: train a small adapter on the full-precision base. qlora: "
                       "load the base in 4-bit (bitsandbytes nf4) to save memory; needs a GPU "
                       "or a CPU with compatible layer shapes. dpo: train the adapter to prefer "
                       "the chosen reply over the rejected one (Direct Preference Optimization, "
                       "TRL's loss) on a preference dataset.", choices=METHODS,
                       label="Method", group="LoRA")
    four_bit: bool = spec(False, "dpo: load the base in 4-bit as qlora does (QLoRA + DPO).",
                          label="4-bit base (dpo)", group="LoRA")
    beta: float = spec(0.1, "dpo: how strongly the adapter is held near the base (TRL's beta); "
                       "lower lets it move further from the base's replies.",
                       label="DPO beta", group="Preference", minimum=0.0, maximum=1e3)
    r: int = spec(16, "LoRA rank: size of the adapter's low-rank matrices. Higher learns more "
                  "and costs more memory; 8-64 is usual.",
                  label="LoRA rank", group="LoRA", minimum=1, maximum=4096)
    alpha: float = spec(32.0, "LoRA alpha: the adapter's output is scaled by alpha/r; usually "
                        "twice the rank.",
                        label="LoRA alpha", group="LoRA", minimum=0.0, maximum=1e6)
    dropout: float = spec(0.05, "Dropout on the adapter's input during training (0 to 0.1).",
                          label="LoRA dropout", group="LoRA", minimum=0.0, maximum=0.99)
    target_modules: str = spec(DEFAULT_TARGETS, "Layers that get an adapter, comma-separated "
                               "(e.g. q_proj,v_proj), or all-linear for every linear layer "
                               "except the output head.",
                               label="Target modules", group="LoRA")
    epochs: float = spec(1.0, "Passes over the training rows (fractions allowed).",
                         label="Epochs", group="Training", minimum=0.0, maximum=1e6)
    max_steps: int | None = spec(None, "Stop after this many optimizer steps (overrides epochs).",
                                 label="Max steps", group="Training", minimum=1, maximum=10_000_000)
    lr: float = spec(2e-4, "Peak learning rate of the adapter (AdamW), reached after warm-up.",
                     label="Learning rate", group="Training", minimum=0.0, maximum=1e6)
    batch_size: int = spec(4, "Rows per micro-batch on each device.",
                           label="Batch size", group="Training", minimum=1, maximum=10_000_000)
    grad_accum: int = spec(1, "Micro-batches whose gradients add up to one optimizer step: the "
                           "effective batch is batch size x this x devices.",
                           label="Gradient accumulation", group="Training",
                           minimum=1, maximum=10_000_000)
    max_len: int = spec(1024, "Longest sequence in tokens; longer rows are cut (the count is "
                        "reported). Memory grows with it.",
                        label="Max sequence length", group="Training",
                        minimum=8, maximum=10_000_000)
    packing: bool = spec(False, "Pack several short rows into each sequence of max length: "
                         "faster on short rows; rows may then see each other.",
                         label="Packing", group="Training")
    gradient_checkpointing: bool = spec(False, "Recompute activations in the backward pass: "
                                        "much less memory at about a third more time.",
                                        label="Gradient checkpointing", group="Training")
    seed: int = spec(0, "Seed of adapter initialisation, data order and dropout: the same seed "
                     "gives the same run.",
                     label="Seed", group="Training", minimum=0, maximum=2**31 - 1)
    validation: float | None = spec(None, "Fraction of rows held out for validation loss and "
                                    "perplexity (default: the dataset version's split).",
                                    label="Validation fraction", group="Validation",
                                    minimum=0.0, maximum=0.99)
    eval_steps: int = spec(50, "Measure validation loss every this many steps (and at the end).",
                           label="Evaluate every (steps)", group="Validation",
                           minimum=1, maximum=10_000_000)
    save_steps: int = spec(100, "Save a checkpoint every this many steps (and at the end and on "
                           "Cancel); Resume continues from the last one.",
                           label="Checkpoint every (steps)", group="Validation",
                           minimum=1, maximum=10_000_000)
    warmup_ratio: float = spec(0.03, "Fraction of the steps spent warming the learning rate up.",
                               label="Warm-up fraction", group="Training", minimum=0.0, maximum=1.0)
    scheduler: str = spec("cosine", "Learning-rate schedule after warm-up.", choices=SCHEDULERS,
                          label="Learning-rate schedule", group="Training")
    weight_decay: float = spec(0.0, "AdamW weight decay on the adapter.",
                               label="Weight decay", group="Training", minimum=0.0, maximum=1e6)
    max_grad_norm: float = spec(1.0, "Clip the gradient norm to this (0 turns clipping off).",
                                label="Max gradient norm", group="Training",
                                minimum=0.0, maximum=1e6)
    device: str = spec("auto", "auto (CUDA when torch sees a GPU, else CPU), cpu, or cuda.",
                       label="Device", group="Devices")
    nproc: int = spec(1, "Training processes on this machine (one per GPU). More than one "
                      "launches through torchrun (DDP; gloo on CPU, NCCL on GPUs).",
                      label="Processes", group="Devices", minimum=1, maximum=1024)
    strategy: str = spec("ddp", "With several processes: ddp (a full copy of the model per "
                         "device) or fsdp (parameters sharded across devices).",
                         choices=STRATEGIES,
                         label="Strategy", group="Devices")
    nnodes: int = spec(1, "Machines taking part (multi-node: run the same job on each, with "
                       "the same rendezvous endpoint).",
                       label="Nodes", group="Devices", minimum=1, maximum=1024)
    node_rank: int = spec(0, "This machine's rank among the nodes (0 on the first).",
                          label="Node rank", group="Devices", minimum=0, maximum=1023)
    rdzv_endpoint: str = spec("", "host:port of the rendezvous (the first node) for multi-node "
                              "runs; empty for one machine.",
                              label="Rendezvous endpoint", group="Devices")
    threads: int | None = spec(None, "CPU threads for torch (default: torch's choice).",
                               label="Threads", group="Devices", minimum=1, maximum=1024)
    name: str = spec("", "Name of the adapter in the catalog (default: BASE-lora-DATASET).",
                     label="Adapter name", group="Output")
    suites: str = spec("", "Evaluation suites (comma-separated NAME or NAME@VERSION): when "
                       "the run ends, the adapter and its base are evaluated on each and the "
                       "comparison is attached to the adapter.",
                       label="Evaluate on suites", group="Output", metavar="SUITES")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneOptions:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InvalidInputError(f"Unknown fine-tune option(s): {', '.join(sorted(unknown))}.")
        return cls(**data)

    def check(self) -> None:
        if self.method not in METHODS:
            raise InvalidInputError(f"--method must be one of {', '.join(METHODS)}.")
        if self.strategy not in STRATEGIES:
            raise InvalidInputError(f"--strategy must be one of {', '.join(STRATEGIES)}.")
        if self.scheduler not in SCHEDULERS:
            raise InvalidInputError(f"--scheduler must be one of {', '.join(SCHEDULERS)}.")
        for name in ("r", "batch_size", "grad_accum", "max_len", "eval_steps", "save_steps",
                     "nproc", "nnodes"):
            if int(getattr(self, name)) < 1:
                raise InvalidInputError(f"--{name.replace('_', '-')} must be at least 1.")
        if self.max_len < 8:
            raise InvalidInputError("--max-len must be at least 8 tokens.")
        if not 0.0 <= self.dropout < 1.0:
            raise InvalidInputError("--dropout must be at least 0 and below 1.")
        if self.beta <= 0:
            raise InvalidInputError("--beta must be positive.")
        if self.four_bit and self.method not in PREFERENCE_METHODS:
            raise InvalidInputError("--four-bit is for --method dpo; for LoRA in 4-bit use "
                                    "--method qlora.")
        if self.lr <= 0 or self.alpha <= 0:
            raise InvalidInputError("--lr and --alpha must be positive.")
        if self.epochs <= 0 and not self.max_steps:
            raise InvalidInputError("--epochs must be positive (or give --max-steps).")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInputError("--max-steps must be at least 1.")
        if self.validation is not None and not 0.0 <= self.validation < 1.0:
            raise InvalidInputError("--validation must be at least 0 and below 1.")
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise InvalidInputError("A multi-node run needs --rdzv-endpoint HOST:PORT (the "
                                    "first node's address and a free port).")
        if not 0 <= self.node_rank < self.nnodes:
            raise InvalidInputError("--node-rank must be between 0 and nnodes - 1.")

    @property
    def preference(self) -> bool:
        """Trained on preference pairs rather than on completions."""
        return self.method in PREFERENCE_METHODS

    @property
    def quantized(self) -> bool:
        """The base is loaded in 4-bit (bitsandbytes nf4)."""
        return self.method == "qlora" or (self.preference and self.four_bit)

    def targets(self) -> str | list[str]:
        t = self.target_modules.strip()
        if not t or t == DEFAULT_TARGETS:
            return DEFAULT_TARGETS
        return [x.strip() for x in t.split(",") if x.strip()]


def model_parameters(model_dir: Path, metadata: dict[str, Any] | None = None) -> int | None:
    if metadata and isinstance(metadata.get("parameters"), int):
        return int(metadata["parameters"])
    cfg = read_model_config(model_dir)
    try:
        h, n, i, v = (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"],
                      cfg["vocab_size"])
    except (KeyError, TypeError):
        return None
    return int(n * (4 * h * h + 3 * h * i) + 2 * v * h)


def read_model_config(model_dir: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cfg.get("text_config", cfg) if isinstance(cfg, dict) else {}


def defaults_for(parameters: int | None) -> dict[str, Any]:
    """Sensible starting options for a model of this many parameters."""
    p = parameters or 0
    if p < 1.5e9:
        return {"r": 16, "alpha": 32.0, "lr": 2e-4, "batch_size": 8, "grad_accum": 1,
                "max_len": 1024, "gradient_checkpointing": False, "method": "lora"}
    if p < 5e9:
        return {"r": 16, "alpha": 32.0, "lr": 2e-4, "batch_size": 4, "grad_accum": 4,
                "max_len": 2048, "gradient_checkpointing": True, "method": "lora"}
    if p < 16e9:
        return {"r": 16, "alpha": 32.0, "lr": 1e-4, "batch_size": 2, "grad_accum": 8,
                "max_len": 2048, "gradient_checkpointing": True, "method": "qlora"}
    return {"r": 8, "alpha": 16.0, "lr": 1e-4, "batch_size": 1, "grad_accum": 16,
            "max_len": 2048, "gradient_checkpointing": True, "method": "qlora"}
