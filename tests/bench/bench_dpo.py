"""The app's DPO fine-tune against TRL's ``DPOTrainer.train()`` on the same data and settings.

    .venv/bin/python tests/bench/bench_dpo.py [--params 150e6] [--steps 8] [--max-len 128]
                                              [--batch-size 4] [--grad-accum 1]
                                              [--device auto]

Makes a random-weight Llama of about ``--params`` parameters (as bench_finetune.py does) and
preference pairs of random lengths (a conversation's prompt, a chosen and a rejected reply),
imports both into a temporary LLMOps home, then runs, one after the other and each as its
own process:

- the app: ``llmops finetune base bench --method dpo --json ...`` (TRL's DPO loss inside the
  app's loop, :mod:`llmops_desktop.finetune.dpo`);
- the baseline: a script written here that runs ``trl.DPOTrainer(...).train()`` with the
  same ``DPOConfig`` (``finetune.dpo.dpo_config``: batch, grad-accum, lr, beta, max length,
  seed, schedule and warm-up, clipping, dtype), the same ``LoraConfig``, fed the same pairs
  in the app's data order (``train_sampling_strategy="sequential"``).

Tokens/s is non-pad tokens (the attention mask's sum: chosen and rejected sequences both)
over the summed wall time of the optimizer steps, each side timing its own. Peak memory is
the peak RSS of the largest process of each side (``os.wait4``), the sampled sum over the
process tree, and with CUDA ``torch.cuda.max_memory_allocated``. Prints the ratios
app/TRL (goal: tokens/s >= 1.0x, peak memory <= 1.0x). No thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_finetune import HIDDEN, INTERMEDIATE, layers_for, run_measured  # noqa: E402

BASELINE = r'''
import json, sys, time
from types import SimpleNamespace
cfg = json.load(open(sys.argv[1]))
import torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import DPOTrainer
from llmops_desktop.finetune.dpo import dpo_config, trl_examples
o = SimpleNamespace(**cfg["options"])
t0 = time.monotonic()
tok = AutoTokenizer.from_pretrained(cfg["model"])
if tok.pad_token is None:
    tok.pad_token = tok.eos_token or tok.unk_token
cuda = torch.cuda.is_available() and o.device != "cpu"
dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
model = AutoModelForCausalLM.from_pretrained(cfg["model"], dtype=dtype)
model.config.use_cache = False
targets = o.target_modules if o.target_modules == "all-linear" else o.target_modules.split(",")
lora = LoraConfig(r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, target_modules=targets,
                  task_type="CAUSAL_LM", bias="none")

class Clock(TrainerCallback):
    steps = []
    def on_train_begin(self, *a, **k):
        self.t = time.monotonic()
    def on_step_end(self, *a, **k):
        now = time.monotonic()
        self.steps.append(now - self.t)
        self.t = now

args = dpo_config(o, cfg["out"], torch.device("cuda" if cuda else "cpu"), max_steps=o.max_steps,
                  warmup_steps=int(o.max_steps * o.warmup_ratio),
                  train_sampling_strategy="sequential")
trainer = DPOTrainer(model=model, args=args, processing_class=tok, peft_config=lora,
                     train_dataset=Dataset.from_list(trl_examples(cfg["rows"], tok)),
                     callbacks=[Clock()])
load_s = time.monotonic() - t0
out = trainer.train()
print(json.dumps({"step_seconds": Clock.steps, "tokens": trainer._total_train_tokens,
                  "load_s": load_s, "mean_loss": out.training_loss,
                  "cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}))
'''


def make_pairs(n: int, max_len: int, seed: int) -> list[dict]:
    from llmops_desktop.demo import _WORDS

    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(max(1, k))).capitalize() + "."

    rows = []
    for _ in range(n):
        total = rng.randint(max_len // 16, max_len // 6)  # words; ~3 tokens each
        user = rng.randint(2, max(3, total // 2))
        rows.append({"prompt": [{"role": "user", "content": words(user)}],
                     "chosen": words(total - user), "rejected": words(rng.randint(2, total))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", type=float, default=150e6, help="model size (default 150e6)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--r", type=int, default=16)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    started = time.perf_counter()
    py = sys.executable
    from llmops_desktop.demo import make_demo_model
    from llmops_desktop.finetune.config import FinetuneOptions
    from llmops_desktop.finetune.data import Schedule

    opts = FinetuneOptions(method="dpo", r=args.r, alpha=2.0 * args.r, max_steps=args.steps,
                           batch_size=args.batch_size, grad_accum=args.grad_accum,
                           max_len=args.max_len, seed=args.seed, validation=0.0,
                           eval_steps=10**6, save_steps=10**6, device=args.device)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        layers = layers_for(args.params)
        model = make_demo_model(tmp / "model", hidden_size=HIDDEN, num_layers=layers,
                                intermediate_size=INTERMEDIATE,
                                context_length=max(512, args.max_len))
        print(f"random Llama: {layers} layers x hidden {HIDDEN}, made in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        home = tmp / "home"
        cli = [py, "-m", "llmops_desktop.cli", "--home", str(home)]
        n_rows = args.steps * args.grad_accum * args.batch_size  # one epoch, no reshuffle
        rows = make_pairs(n_rows, args.max_len, args.seed)
        data = tmp / "pairs.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        for cmd in (["import", str(model), "--name", "base", "--mode", "reference"],
                    ["dataset", "import", str(data), "--name", "bench", "--validation", "0"]):
            subprocess.run(cli + cmd, check=True, capture_output=True)
        sched = Schedule(n_rows, args.batch_size, args.grad_accum, 1, 1.0, args.steps,
                         args.seed)
        ordered = [rows[i] for k in range(args.steps) for m in sched.step(k, 0) for i in m]

        flags = ["--method", "dpo", "--beta", str(opts.beta), "--r", str(opts.r),
                 "--alpha", str(opts.alpha), "--dropout", str(opts.dropout),
                 "--target-modules", opts.target_modules, "--lr", str(opts.lr),
                 "--batch-size", str(opts.batch_size), "--grad-accum", str(opts.grad_accum),
                 "--max-len", str(opts.max_len), "--max-steps", str(opts.max_steps),
                 "--seed", str(opts.seed), "--validation", "0",
                 "--eval-steps", str(opts.eval_steps), "--save-steps", str(opts.save_steps),
                 "--no-gradient-checkpointing", "--device", opts.device,
                 "--scheduler", opts.scheduler, "--warmup-ratio", str(opts.warmup_ratio)]
        app = run_measured(cli + ["finetune", "base", "bench", "--json", *flags], tmp / "app.out")
        result = json.loads((tmp / "app.out").read_text())
        points = [json.loads(line) for line in
                  (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        points = [p for p in points if "tokens_per_s" in p]
        meta = result["artifact"]["metadata"]
        app["tokens"] = meta["tokens_seen"]
        app["steps_s"] = meta["train_seconds"]  # the sum of the optimizer steps' times
        app["cuda_mb"] = max((p.get("gpu_memory_mb") or 0 for p in points), default=0) or None
        app["mean_loss"] = sum(p["loss"] for p in points) / len(points)
        app["margin"] = points[-1].get("reward_margin")
        print(f"app: {app['wall_s']:.0f} s in all, {meta['train_seconds']:.1f} s of steps",
              flush=True)

        cfg = {"model": str(model), "rows": ordered, "out": str(tmp / "trl"),
               "options": opts.to_dict()}
        (tmp / "baseline.json").write_text(json.dumps(cfg))
        (tmp / "baseline.py").write_text(BASELINE)
        base = run_measured([py, str(tmp / "baseline.py"), str(tmp / "baseline.json")],
                            tmp / "base.out")
        base.update(json.loads((tmp / "base.out").read_text().strip().splitlines()[-1]))
        base["steps_s"] = sum(base["step_seconds"])
        print(f"DPOTrainer: {base['wall_s']:.0f} s in all, {sum(base['step_seconds']):.1f} s "
              "of steps", flush=True)

    if app["tokens"] != base["tokens"]:
        print(f"note: tokens counted: app {app['tokens']}, DPOTrainer {base['tokens']}")

    def tps(side: dict) -> float:
        return side["tokens"] / max(side["steps_s"], 1e-9)

    rows_out = [("tokens/s", tps(app), tps(base), "higher"),
                ("peak RSS, largest process MB", app["rss_mb"], base["rss_mb"], "lower"),
                ("peak RSS, process tree MB", app["tree_mb"], base["tree_mb"], "lower"),
                ("wall time incl. load s", app["wall_s"], base["wall_s"], "lower")]
    if app["cuda_mb"] or base["cuda_mb"]:
        rows_out.insert(1, ("CUDA max allocated MB", app["cuda_mb"] or 0.0,
                            base["cuda_mb"] or 0.0, "lower"))
    print(f"\n{'':32}{'app':>10}{'DPOTrainer':>12}{'app/TRL':>10}  better")
    for name, a, b, better in rows_out:
        print(f"{name:32}{a:10.1f}{b:12.1f}{a / b if b else float('nan'):9.3f}x  {better}")
    print("DPOTrainer step seconds: " + " ".join(f"{x:.2f}" for x in base["step_seconds"]))
    print(f"mean DPO loss over the steps: app {app['mean_loss']:.4f}, DPOTrainer "
          f"{base['mean_loss']:.4f}; app's last reward margin {app['margin']}")
    print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
