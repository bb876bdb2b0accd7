"""The LoRA / QLoRA training loop: one process, or one rank of a torchrun launch.

A plain loop rather than ``transformers.Trainer``, so that every piece of state a resume
needs is saved and restored by us: adapter weights, optimizer and scheduler, the RNG
states of torch, Python and NumPy, the step (which fixes the data position, see
:class:`~llmops_desktop.finetune.data.Schedule`) and the curve so far. A checkpoint is a
folder written under a temporary name and renamed into place, then named in ``latest``
(also replaced atomically), so a kill at any moment leaves the previous one intact.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_desktop.datasets.store import DatasetVersion
from llmops_desktop.errors import CancelledError, InvalidInputError
from llmops_desktop.finetune.config import FinetuneOptions
from llmops_desktop.finetune.data import IGNORE, Schedule, collate, encode_dataset
from llmops_desktop.jobs.events import Event, Log, Metric, Progress, Result

LATEST = "latest"
ADAPTER_DIR = "adapter"
METRICS_FILE = "metrics.jsonl"
KEEP_CHECKPOINTS = 2
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                   "special_tokens_map.json", "chat_template.jinja", "chat_template.json")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Dist:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


@dataclass
class TrainSpec:
    """What one run trains: JSON-safe, written to the run folder for torchrun workers."""

    base_path: str
    base_ref: str
    dataset: dict[str, Any]  # DatasetVersion.to_json(with_indices=True)
    options: dict[str, Any]
    resume_from: str | None = None  # a checkpoint folder
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"base_path": self.base_path, "base_ref": self.base_ref, "dataset": self.dataset,
                "options": self.options, "resume_from": self.resume_from, "extra": self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainSpec:
        return cls(**data)

    def version(self) -> DatasetVersion:
        d = self.dataset
        return DatasetVersion(
            id=d["id"], dataset_id=0, name=d["name"], version=d["version"], path=Path(d["path"]),
            source=d["source"], format=d["format"], sha256=d["sha256"],
            source_sha256=d["source_sha256"], rows=d["rows"], shape=d["shape"],
            mapping=d["mapping"], split=d["split"], metadata=d["metadata"],
            created_at=d["created_at"])


# ---- checkpoints --------------------------------------------------------------------------

def latest_checkpoint(run_dir: Path) -> Path | None:
    try:
        name = (run_dir / LATEST).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = run_dir / name
    return path if (path / "state.json").is_file() else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rng_state() -> tuple[dict[str, Any], dict[str, Any]]:
    import numpy as np
    import torch

    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state_all()
    py = random.getstate()
    npst = np.random.get_state()
    plain = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [npst[0], npst[1].tolist(), int(npst[2]), int(npst[3]), float(npst[4])]}
    return tensors, plain


def _set_rng_state(tensors: dict[str, Any], plain: dict[str, Any]) -> None:
    import numpy as np
    import torch

    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["cuda"])
    v, state, gauss = plain["python"]
    random.setstate((v, tuple(state), gauss))
    n = plain["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def _stable_adapter_config(path: Path) -> None:
    """peft writes ``target_modules`` from a set, in an order that changes from one process
    to the next; sort it so the same training gives the same files (and digest)."""
    cfg = json.loads(path.read_text(encoding="utf-8"))
    for key, value in cfg.items():
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            cfg[key] = sorted(value)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


# ---- the loop -----------------------------------------------------------------------------

class Trainer:
    """One run of :func:`run_training`; kept as an object so the pieces stay readable."""

    def __init__(self, spec: TrainSpec, run_dir: Path, dist: Dist,
                 should_stop: Callable[[], bool]) -> None:
        self.spec = spec
        self.opts = FinetuneOptions.from_dict(spec.options)
        self.run_dir = run_dir
        self.dist = dist
        self.should_stop = should_stop
        self.history: list[dict[str, Any]] = []
        self.base_val_loss: float | None = None
        self.step = 0
        self.tokens_seen = 0
        self.train_seconds = 0.0
        self.objective: Any = None  # DPO: TRL's loss (finetune/dpo.py)
        self.step_metrics: dict[str, float] = {}  # DPO: reward margin, log-probabilities
        self.val_metrics: dict[str, float] = {}

    # -- set-up --
    def _device(self) -> Any:
        import torch

        want = self.opts.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise InvalidInputError("--device cuda: torch sees no CUDA GPU here. Use "
                                        "--device cpu (slow) or run on a machine with a GPU.")
            if self.dist.world > 1 or want == "cuda":
                return torch.device("cuda", self.dist.local_rank)
            return torch.device(want)
        return torch.device("cpu")

    def setup(self) -> Iterator[Event]:
        import torch
        from transformers import AutoTokenizer

        opts = self.opts
        if opts.threads:
            torch.set_num_threads(opts.threads)
        seed_everything(opts.seed)
        self.device = self._device()
        base = Path(self.spec.base_path)
        yield Progress(0, None, "steps", "loading the tokenizer and the data")
        tok = AutoTokenizer.from_pretrained(str(base))
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        self.tokenizer = tok
        if opts.preference:
            yield Progress(0, None, "steps", f"loading {self.spec.base_ref}")
            self._load_preference()
        else:
            self.data = encode_dataset(self.spec.version(), tok, max_len=opts.max_len,
                                       validation=opts.validation, seed=opts.seed,
                                       packing=opts.packing)
        if not self.data.train:
            raise InvalidInputError(
                "No training rows are left: every row is in the validation split or has "
                "nothing to learn within --max-len. Lower --validation or raise --max-len.")
        if self.data.truncated:
            yield Log(f"{self.data.truncated} rows are longer than {opts.max_len} tokens and "
                      "were cut; raise --max-len to keep them whole", level="warning")
        if self.data.nothing_to_learn:
            yield Log(f"{self.data.nothing_to_learn} rows have no completion tokens within "
                      f"{opts.max_len} tokens and are left out of training", level="warning")
        self.schedule = Schedule(len(self.data.train), opts.batch_size, opts.grad_accum,
                                 self.dist.world, opts.epochs, opts.max_steps, opts.seed)
        if not opts.preference:
            yield Progress(0, None, "steps", f"loading {self.spec.base_ref}")
            self.model = self._load_model()
        self._make_optimizer()
        if self.spec.resume_from:
            self._restore(Path(self.spec.resume_from))
            yield Log(f"resumed from {self.spec.resume_from} at step {self.step}")
        yield Log(f"{len(self.data.train)} training sequences, {len(self.data.validation)} "
                  f"validation rows; {self.schedule.total_steps} steps of "
                  f"{opts.batch_size}x{opts.grad_accum}x{self.dist.world} on {self.device}")

    def _load_preference(self) -> None:
        """DPO: TRL's DPOTrainer wraps the base with the adapter and tokenizes the pairs;
        our loop trains with its loss (see :mod:`llmops_desktop.finetune.dpo`)."""
        import torch

        from llmops_desktop.datasets.store import iter_rows, split_indices
        from llmops_desktop.finetune.dpo import DPOObjective

        opts = self.opts
        if self.dist.world > 1:
            raise InvalidInputError("DPO trains in one process for now: use --nproc 1 on one "
                                    "node.")
        version = self.spec.version()
        if version.shape != "preference":
            raise InvalidInputError(f"{version.ref} is {version.shape} data; DPO needs a "
                                    "preference dataset (prompt, chosen, rejected).")
        if opts.validation is None:
            val_idx = list(version.split.get("validation_indices", []))
            split = {k: v for k, v in version.split.items() if k != "validation_indices"}
        else:
            val_idx = split_indices(version.rows, opts.validation, opts.seed)
            split = {"validation_fraction": opts.validation, "seed": opts.seed,
                     "validation_rows": len(val_idx), "train_rows": version.rows - len(val_idx)}
        base = self._load_base()
        torch.manual_seed(opts.seed)
        self.objective = DPOObjective.load(base, self._lora_config(), self.tokenizer,
                                           list(iter_rows(version)), opts, self.run_dir,
                                           self.device)
        self.data = self.objective.split(val_idx, opts.max_len)
        self.data.split = split
        torch.manual_seed(opts.seed)
        model = self.objective.model
        model.train()
        self.peft_model = self.model = model

    def _lora_config(self) -> Any:
        from peft import LoraConfig

        opts = self.opts
        return LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                          target_modules=opts.targets(), task_type="CAUSAL_LM", bias="none")

    def _load_model(self) -> Any:
        import torch
        from peft import get_peft_model

        opts = self.opts
        model = self._load_base()
        torch.manual_seed(opts.seed)  # adapter initialisation does not depend on loading
        model = get_peft_model(model, self._lora_config())
        torch.manual_seed(opts.seed)
        model.train()
        self.peft_model = model
        if self.dist.world > 1:
            model = self._wrap_distributed(model)
        return model

    def _load_base(self) -> Any:
        import torch
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM

        opts, base = self.opts, Path(self.spec.base_path)
        if opts.quantized:
            from llmops_desktop.quantize.bnb import load_bnb

            model = load_bnb(base, "bnb-nf4", device=str(self.device))
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=opts.gradient_checkpointing)
        else:
            dtype = torch.float32
            if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
                dtype = torch.bfloat16
            model = AutoModelForCausalLM.from_pretrained(str(base), dtype=dtype)
            model.to(self.device)
            if opts.gradient_checkpointing:
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False})
                model.enable_input_require_grads()
        model.config.use_cache = False
        return model

    def _wrap_distributed(self, model: Any) -> Any:
        if self.opts.strategy == "fsdp":
            from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

            kwargs: dict[str, Any] = {"use_orig_params": True}
            if self.device.type == "cuda":
                kwargs["device_id"] = self.device
            return FSDP(model, **kwargs)
        from torch.nn.parallel import DistributedDataParallel as DDP

        if self.device.type == "cuda":
            return DDP(model, device_ids=[self.device.index])
        return DDP(model)

    def _make_optimizer(self) -> None:
        import torch
        from transformers import get_scheduler

        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.opts.lr,
                                           weight_decay=self.opts.weight_decay)
        total = self.schedule.total_steps
        name = {"cosine": "cosine", "linear": "linear",
                "constant": "constant_with_warmup"}[self.opts.scheduler]
        self.scheduler = get_scheduler(name, self.optimizer,
                                       num_warmup_steps=int(total * self.opts.warmup_ratio),
                                       num_training_steps=total)

    # -- checkpoints --
    def _adapter_state(self) -> dict[str, Any]:
        from peft import get_peft_model_state_dict

        if self.opts.strategy == "fsdp" and self.dist.world > 1:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_model_state_dict,
            )

            full = get_model_state_dict(self.model, options=StateDictOptions(
                full_state_dict=True, cpu_offload=True))
            full = {k.replace("_fsdp_wrapped_module.", ""): v for k, v in full.items()}
            return get_peft_model_state_dict(self.peft_model, state_dict=full)
        return get_peft_model_state_dict(self.peft_model)

    def _optimizer_state(self) -> dict[str, Any]:
        if self.opts.strategy == "fsdp" and self.dist.world > 1:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                get_optimizer_state_dict,
            )

            return get_optimizer_state_dict(self.model, self.optimizer, options=StateDictOptions(
                full_state_dict=True, cpu_offload=True))
        return self.optimizer.state_dict()

    def save_checkpoint(self) -> Path | None:
        """Write checkpoint-<step> atomically (rank 0) and point ``latest`` at it."""
        import torch
        from safetensors.torch import save_file

        adapter = {k: v.detach().to("cpu").contiguous() for k, v in self._adapter_state().items()}
        optim = self._optimizer_state()
        if not self.dist.main:
            self._barrier()
            return None
        name = f"checkpoint-{self.step:07d}"
        final = self.run_dir / name
        tmp = self.run_dir / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_file(adapter, str(tmp / "adapter_model.safetensors"))
        self.peft_model.peft_config["default"].save_pretrained(str(tmp))
        _stable_adapter_config(tmp / "adapter_config.json")
        torch.save(optim, tmp / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), tmp / "scheduler.pt")
        tensors, plain = _rng_state()
        torch.save(tensors, tmp / "rng.pt")
        state = {"step": self.step, "total_steps": self.schedule.total_steps,
                 "epoch": self.schedule.epoch_of(self.step), "history": self.history,
                 "base_val_loss": self.base_val_loss, "tokens_seen": self.tokens_seen,
                 "train_seconds": self.train_seconds, "rng": plain,
                 "options": self.spec.options, "world": self.dist.world,
                 "dataset_sha256": self.spec.dataset["sha256"]}
        (tmp / "state.json").write_text(json.dumps(state), encoding="utf-8")
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(self.run_dir)
        _write_atomic(self.run_dir / LATEST, name + "\n")
        old = sorted(p for p in self.run_dir.glob("checkpoint-*") if p.is_dir() and p != final)
        for p in old[:max(0, len(old) - (KEEP_CHECKPOINTS - 1))]:
            shutil.rmtree(p, ignore_errors=True)
        self._barrier()
        return final

    def _restore(self, ckpt: Path) -> None:
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        state = json.loads((ckpt / "state.json").read_text(encoding="utf-8"))
        if state.get("dataset_sha256") not in (None, self.spec.dataset["sha256"]):
            raise InvalidInputError("The checkpoint was made from other data (its dataset "
                                    "sha256 differs); it cannot be resumed with this dataset.")
        if int(state.get("world", 1)) != self.dist.world:
            raise InvalidInputError(
                f"The checkpoint was made by {state.get('world', 1)} process(es); resume it "
                f"with the same number (--nproc) to get the same data order.")
        weights = load_file(str(ckpt / "adapter_model.safetensors"))
        set_peft_model_state_dict(self.peft_model, weights)
        optim = torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=True)
        if self.opts.strategy == "fsdp" and self.dist.world > 1:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_optimizer_state_dict,
            )

            set_optimizer_state_dict(self.model, self.optimizer, optim,
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(optim)
        self.scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
        self.step = int(state["step"])
        self.history = list(state.get("history", []))
        self.base_val_loss = state.get("base_val_loss")
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        _set_rng_state(torch.load(ckpt / "rng.pt", weights_only=False), state["rng"])

    # -- steps --
    def _barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as tdist

            tdist.barrier()

    def _all_sum(self, values: list[float]) -> list[float]:
        if self.dist.world == 1:
            return values
        import torch
        import torch.distributed as tdist

        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        tdist.all_reduce(t)
        return t.tolist()

    def _comm_device(self) -> Any:
        return self.device if self.device.type == "cuda" else "cpu"

    def _loss_sum(self, batch: dict[str, Any]) -> tuple[Any, int]:
        import torch.nn.functional as F

        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        logits = out.logits[:, :-1].float()
        target = batch["labels"][:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                               ignore_index=IGNORE, reduction="sum")
        return loss, int((target != IGNORE).sum())

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.device) for k, v in batch.items()}

    def train_step(self) -> tuple[float, int]:
        """One optimizer step; returns (mean loss per trained token, tokens processed)."""
        import contextlib

        import torch

        micro = self.schedule.step(self.step, self.dist.rank)
        if self.objective is not None:
            return self._preference_step(micro)
        pad = int(self.tokenizer.pad_token_id)
        batches = [self._to_device(collate([self.data.train[i] for i in m], pad)) for m in micro]
        group_tokens = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in batches)
        group_tokens = max(1, group_tokens)
        loss_total = 0.0
        processed = 0
        for n, batch in enumerate(batches):
            last = n == len(batches) - 1
            ctx = (self.model.no_sync() if self.dist.world > 1 and not last
                   and hasattr(self.model, "no_sync") else contextlib.nullcontext())
            with ctx:
                loss_sum, _ = self._loss_sum(batch)
                (loss_sum / group_tokens).backward()
            loss_total += float(loss_sum.detach())
            processed += int(batch["attention_mask"].sum())
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.opts.max_grad_norm > 0:
            if hasattr(self.model, "clip_grad_norm_"):  # FSDP
                self.model.clip_grad_norm_(self.opts.max_grad_norm)
            else:
                torch.nn.utils.clip_grad_norm_(params, self.opts.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        loss_total, group_tokens_all, processed_all = self._all_sum(
            [loss_total, float(group_tokens), float(processed)])
        return loss_total / max(1.0, group_tokens_all), int(processed_all)

    def _preference_step(self, micro: list[list[int]]) -> tuple[float, int]:
        """One optimizer step of DPO: TRL's loss (mean over pairs) per micro-batch."""
        import torch

        loss_total, processed = 0.0, 0
        for m in micro:
            loss, tokens = self.objective.loss(self.model, [self.data.train[i] for i in m],
                                               self.device)
            (loss / len(micro)).backward()
            loss_total += float(loss.detach())
            processed += tokens
        if self.opts.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], self.opts.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_metrics = self.objective.pop_metrics("train")
        return loss_total / max(1, len(micro)), processed

    def _evaluate_preference(self) -> float | None:
        import torch

        pairs, bs = self.data.validation, self.opts.batch_size
        self.model.eval()
        total = 0.0
        try:
            with torch.no_grad():
                for i in range(0, len(pairs), bs):
                    chunk = pairs[i:i + bs]
                    loss, _ = self.objective.loss(self.model, chunk, self.device)
                    total += float(loss) * len(chunk)
        finally:
            self.model.train()
        self.val_metrics = {f"val_{k}": v for k, v in self.objective.pop_metrics("eval").items()}
        return total / len(pairs)

    def evaluate(self, *, base: bool = False) -> float | None:
        """Mean loss per completion token on the validation rows (all ranks share them);
        DPO: the mean DPO loss of the validation pairs (the base's is ln 2 by definition,
        so it is not measured)."""
        import contextlib

        import torch

        if not self.data.validation:
            return None
        if self.objective is not None:
            return None if base else self._evaluate_preference()
        pad = int(self.tokenizer.pad_token_id)
        self.model.eval()
        total = 0.0
        count = 0
        ctx = self.peft_model.disable_adapter() if base else contextlib.nullcontext()
        mine = self.data.validation[self.dist.rank::self.dist.world]
        bs = self.opts.batch_size
        try:
            with torch.no_grad(), ctx:
                for i in range(0, len(mine), bs):
                    batch = self._to_device(collate(mine[i:i + bs], pad))
                    loss_sum, n = self._loss_sum(batch)
                    total += float(loss_sum)
                    count += n
        finally:
            self.model.train()
        total, count = self._all_sum([total, float(count)])
        return total / count if count else None

    def memory_metrics(self) -> list[Metric]:
        import torch

        out: list[Metric] = []
        if self.device.type == "cuda":
            out.append(Metric("gpu_memory_mb", torch.cuda.max_memory_allocated(self.device) / 2**20,
                              self.step))
        try:
            import psutil

            out.append(Metric("ram_mb", psutil.Process().memory_info().rss / 2**20, self.step))
        except Exception:  # noqa: BLE001
            pass
        return out


def _record(run_dir: Path, point: dict[str, Any]) -> None:
    with open(run_dir / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(point) + "\n")


def run_training(spec: TrainSpec, run_dir: Path, *, should_stop: Callable[[], bool],
                 dist: Dist | None = None) -> Iterator[Event]:
    """Train; yields progress, metrics and logs, checkpoints on the way, ends with a Result.

    ``should_stop()`` is asked after every optimizer step: when it says so, the state is
    saved as a checkpoint and :class:`CancelledError` is raised.
    """
    dist = dist or Dist()
    run_dir.mkdir(parents=True, exist_ok=True)
    t = Trainer(spec, run_dir, dist, should_stop)
    yield from t.setup()
    opts, total = t.opts, t.schedule.total_steps
    resumed = t.step > 0
    if not resumed:
        (run_dir / METRICS_FILE).unlink(missing_ok=True)
    else:
        # The curve so far comes with the checkpoint: the new run's file starts from it.
        with open(run_dir / METRICS_FILE, "w", encoding="utf-8") as fh:
            for point in t.history:
                fh.write(json.dumps(point) + "\n")
    if not resumed and t.data.validation and t.objective is None:
        yield Progress(0, total, "steps", "measuring the base model on the validation rows")
        t.base_val_loss = t.evaluate(base=True)
        point = {"step": 0, "val_loss": t.base_val_loss}
        t.history.append(point)
        if dist.main:
            _record(run_dir, point)
        yield Metric("val_loss", float(t.base_val_loss or 0.0), 0)
        yield Log(f"base model: validation loss {t.base_val_loss:.4f} (perplexity "
                  f"{math.exp(t.base_val_loss):.3f})")
    last_val = t.base_val_loss if not resumed else next(
        (p["val_loss"] for p in reversed(t.history) if p.get("val_loss") is not None), None)
    started = time.monotonic()
    steps_here = 0
    last_loss = next((p["loss"] for p in reversed(t.history) if "loss" in p), None)
    while t.step < total:
        step_start = time.monotonic()
        loss, processed = t.train_step()
        elapsed = time.monotonic() - step_start
        t.step += 1
        steps_here += 1
        t.tokens_seen += processed
        t.train_seconds += elapsed
        last_loss = loss
        lr = float(t.scheduler.get_last_lr()[0])
        avg = (time.monotonic() - started) / steps_here
        eta = avg * (total - t.step)
        point: dict[str, Any] = {"step": t.step, "loss": loss, "lr": lr,
                                 "tokens_per_s": processed / max(elapsed, 1e-9),
                                 "eta_s": eta, "epoch": t.schedule.epoch_of(t.step),
                                 **t.step_metrics}
        if t.step % opts.eval_steps == 0 or t.step == total:
            last_val = t.evaluate()
            if last_val is not None:
                point["val_loss"] = last_val
                point.update(t.val_metrics)
        for m in t.memory_metrics():
            point[m.name] = m.value
        t.history.append(point)
        if dist.main:
            _record(run_dir, point)
        for name in ("loss", "val_loss", "lr", "tokens_per_s", "eta_s", "gpu_memory_mb", "ram_mb",
                     *t.step_metrics, *t.val_metrics):
            if name in point and point[name] is not None:
                yield Metric(name, float(point[name]), t.step)
        yield Progress(t.step, total, "steps", f"step {t.step}/{total}, loss {loss:.4f}")
        stop = t._all_sum([1.0 if should_stop() else 0.0])[0] > 0
        if t.step % opts.save_steps == 0 or t.step == total or stop:
            path = t.save_checkpoint()
            if dist.main:
                yield Log(f"checkpoint saved at step {t.step}: {path}")
        if stop:
            yield Log(f"cancelled at step {t.step} of {total}; the checkpoint is saved and "
                      "Resume continues from it", level="warning")
            raise CancelledError(f"Cancelled at step {t.step} of {total}; the checkpoint is "
                                 "saved, and Resume continues from it.")
    adapter_dir = run_dir / ADAPTER_DIR
    if dist.main:
        tmp = run_dir / f".{ADAPTER_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        ckpt = latest_checkpoint(run_dir)
        assert ckpt is not None
        tmp.mkdir()
        for f in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy2(ckpt / f, tmp / f)
        base = Path(spec.base_path)
        for f in TOKENIZER_FILES:
            if (base / f).is_file():
                shutil.copy2(base / f, tmp / f)
        (tmp / "README.md").write_text(
            f"---\nbase_model: {spec.base_ref}\nlibrary_name: peft\ntags:\n- lora\n---\n\n"
            f"# LoRA adapter of {spec.base_ref}\n\nTrained by LLMOps Desktop on "
            f"{spec.dataset['name']}@{spec.dataset['version']} (sha256 "
            f"{spec.dataset['sha256'][:16]}…) for {t.step} steps.\n", encoding="utf-8")
        if adapter_dir.exists():
            shutil.rmtree(adapter_dir)
        os.replace(tmp, adapter_dir)
    yield Result({
        "adapter_dir": str(adapter_dir), "steps": t.step, "final_loss": last_loss,
        "final_val_loss": last_val, "base_val_loss": t.base_val_loss,
        "tokens_seen": t.tokens_seen, "train_seconds": round(t.train_seconds, 3),
        "validation_rows": len(t.data.validation), "train_sequences": len(t.data.train),
        "truncated_rows": t.data.truncated, "split": t.data.split,
        "resumed": resumed, "world": dist.world, "method": opts.method,
        "final_reward_margin": t.step_metrics.get("reward_margin"),
        "final_val_reward_margin": t.val_metrics.get("val_reward_margin"),
    })
