"""The app's LoRA fine-tune job against a plain transformers ``Trainer`` + peft script.

    .venv/bin/python tests/bench/bench_finetune.py [--params 150e6] [--steps 8]
                                                   [--max-len 128] [--batch-size 4]
                                                   [--grad-accum 1] [--device auto]

Makes a random-weight Llama of about ``--params`` parameters (``demo.make_demo_model``,
hidden 1024, layers to fit) and a chat dataset of random-length rows, imports both into a
temporary LLMOps home, then runs, one after the other and each as its own process:

- the app: ``llmops finetune base bench --json --max-steps N --validation 0 ...`` (the CLI
  starts the job's child; the child trains in-process with ``finetune/train.py``);
- the baseline: a script written here, ``Trainer`` + ``peft.LoraConfig`` with the same
  r/alpha/dropout/target modules, lr, cosine schedule and warm-up, grad clipping, batch,
  grad-accum, seed and dtype, fed the same tokenized rows (the app's own chat-template
  rendering and completion-only labels, in the app's data order; right padding with -100
  labels by ``DataCollatorForSeq2Seq``) with ``train_sampling_strategy="sequential"``.

Tokens/s is non-pad tokens (attention-mask sum, as both sides count them) over the summed
wall time of the optimizer steps, each side timing its own steps (model load, the app's
checkpoint and catalog registration are outside it); "steady" leaves the first step out.
Peak memory is the peak RSS of the largest process of each side (``os.wait4``'s rusage:
the process and its waited-for descendants), the sampled sum over each side's process
tree (the app's includes the CLI process waiting on its job), and with CUDA
``torch.cuda.max_memory_allocated`` as each side reports it. Prints a table with the
ratios app/baseline (goal: tokens/s >= 1.0x, peak memory <= 1.0x). No thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BASELINE = r'''
import json, sys, time
cfg = json.load(open(sys.argv[1]))
import torch
from peft import LoraConfig, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq,
                          Trainer, TrainerCallback, TrainingArguments)
o = cfg["options"]
t0 = time.monotonic()
tok = AutoTokenizer.from_pretrained(cfg["model"])
if tok.pad_token is None:
    tok.pad_token = tok.eos_token or tok.unk_token
tok.padding_side = "right"
rows = [{"input_ids": i, "attention_mask": [1] * len(i), "labels": l} for i, l in cfg["rows"]]
cuda = torch.cuda.is_available() and o["device"] != "cpu"
dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
model = AutoModelForCausalLM.from_pretrained(cfg["model"], dtype=dtype)
model.config.use_cache = False
torch.manual_seed(o["seed"])
targets = o["target_modules"]
targets = targets if targets == "all-linear" else targets.split(",")
model = get_peft_model(model, LoraConfig(r=o["r"], lora_alpha=o["alpha"],
                       lora_dropout=o["dropout"], target_modules=targets,
                       task_type="CAUSAL_LM", bias="none"))

class Clock(TrainerCallback):
    steps = []
    def on_train_begin(self, *a, **k):
        self.t = time.monotonic()
    def on_step_end(self, *a, **k):
        now = time.monotonic()
        self.steps.append(now - self.t)
        self.t = now

args = TrainingArguments(
    output_dir=cfg["out"], per_device_train_batch_size=o["batch_size"],
    gradient_accumulation_steps=o["grad_accum"], max_steps=o["max_steps"],
    learning_rate=o["lr"], lr_scheduler_type=o["scheduler"],
    warmup_steps=int(o["max_steps"] * o["warmup_ratio"]), weight_decay=o["weight_decay"],
    max_grad_norm=o["max_grad_norm"], seed=o["seed"], train_sampling_strategy="sequential",
    logging_steps=10**9, save_strategy="no", report_to="none", disable_tqdm=True,
    include_num_input_tokens_seen="non_padding", use_cpu=not cuda, dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[Clock()],
                  data_collator=DataCollatorForSeq2Seq(tok, label_pad_token_id=-100))
load_s = time.monotonic() - t0
out = trainer.train()
print(json.dumps({"step_seconds": Clock.steps, "tokens": trainer.state.num_input_tokens_seen,
                  "load_s": load_s, "mean_loss": out.training_loss,
                  "cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                  "optim": args.optim}))
'''

HIDDEN, INTERMEDIATE = 1024, 2816  # demo model: heads = hidden // 16, kv heads half of them


def layers_for(params: float) -> int:
    per_layer = 3 * HIDDEN * HIDDEN + 3 * HIDDEN * INTERMEDIATE  # q,o + k,v (half) + MLP
    return max(1, round(params / per_layer))


def make_rows(n: int, max_len: int, seed: int) -> list[dict]:
    """Chat rows whose lengths spread from short to past ``max_len`` (some get cut)."""
    from llmops_desktop.demo import _WORDS

    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(_WORDS) for _ in range(k)).capitalize() + "."

    rows = []
    for _ in range(n):
        total = rng.randint(max_len // 12, max_len // 4)  # words; ~3 tokens each
        user = rng.randint(2, max(3, total // 3))
        rows.append({"messages": [{"role": "user", "content": words(user)},
                                  {"role": "assistant", "content": words(total - user)}]})
    return rows


def run_measured(cmd: list[str], out: Path) -> dict:
    """Run ``cmd``; its stdout goes to ``out``. Wall time, peak RSS of the largest process
    (wait4) and the sampled peak of the process tree's summed RSS."""
    import psutil

    t = time.perf_counter()
    with open(out, "w") as fh, open(out.with_suffix(".err"), "w") as err:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=err, stdin=subprocess.DEVNULL)
    peak_tree = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak_tree
        parent = psutil.Process(proc.pid)
        while not done.is_set():
            total = 0
            try:
                for p in [parent, *parent.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            peak_tree = max(peak_tree, total)
            done.wait(0.2)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    poller.join()
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} … failed ({proc.returncode}):\n"
                 f"{out.with_suffix('.err').read_text()[-3000:]}")
    return {"wall_s": wall, "rss_mb": usage.ru_maxrss / 1024, "tree_mb": peak_tree / 2**20}


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

    opts = FinetuneOptions(r=args.r, alpha=2.0 * args.r, max_steps=args.steps,
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
        n_params = sum(p.stat().st_size for p in model.glob("*.safetensors")) // 4
        print(f"random Llama: ~{n_params / 1e6:.0f}M parameters ({layers} layers x hidden "
              f"{HIDDEN}), made in {time.perf_counter() - t:.0f} s", flush=True)
        home = tmp / "home"
        cli = [py, "-m", "llmops_desktop.cli", "--home", str(home)]
        # One epoch (no reshuffle) with a batch to spare, should a row have nothing to learn.
        n_rows = (args.steps * args.grad_accum + 1) * args.batch_size
        data = tmp / "rows.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in
                                make_rows(n_rows, args.max_len, args.seed)))
        for cmd in (["import", str(model), "--name", "base", "--mode", "reference"],
                    ["dataset", "import", str(data), "--name", "bench", "--validation", "0"]):
            subprocess.run(cli + cmd, check=True, capture_output=True)

        # The app's own rows and data order, for the baseline and for counting tokens.
        from transformers import AutoTokenizer

        from llmops_desktop.catalog import Catalog
        from llmops_desktop.datasets.store import resolve_version
        from llmops_desktop.finetune.data import Schedule, encode_dataset
        from llmops_desktop.paths import Home

        tok = AutoTokenizer.from_pretrained(str(model))
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        version = resolve_version(Catalog.open(Home.resolve(home)), "bench")
        enc = encode_dataset(version, tok, max_len=args.max_len, validation=0.0,
                             seed=args.seed, packing=False)
        sched = Schedule(len(enc.train), args.batch_size, args.grad_accum, 1, 1.0,
                         args.steps, args.seed)
        micro = [m for k in range(args.steps) for m in sched.step(k, 0)]
        ordered = [enc.train[i] for m in micro for i in m]
        step_tokens = [sum(len(enc.train[i][0]) for m in sched.step(k, 0) for i in m)
                       for k in range(args.steps)]
        padded = sum(len(m) * max(len(enc.train[i][0]) for i in m) for m in micro)
        print(f"{len(enc.train)} rows, {sum(step_tokens)} tokens in {args.steps} steps "
              f"({100 * (1 - sum(step_tokens) / padded):.0f}% of each batch is padding, "
              f"{enc.truncated} rows cut at {args.max_len})", flush=True)

        flags = ["--method", "lora", "--r", str(opts.r), "--alpha", str(opts.alpha),
                 "--dropout", str(opts.dropout), "--target-modules", opts.target_modules,
                 "--lr", str(opts.lr), "--batch-size", str(opts.batch_size),
                 "--grad-accum", str(opts.grad_accum), "--max-len", str(opts.max_len),
                 "--max-steps", str(opts.max_steps), "--seed", str(opts.seed),
                 "--validation", "0", "--eval-steps", str(opts.eval_steps),
                 "--save-steps", str(opts.save_steps), "--no-gradient-checkpointing",
                 "--no-packing", "--device", opts.device, "--scheduler", opts.scheduler,
                 "--warmup-ratio", str(opts.warmup_ratio)]
        app = run_measured(cli + ["finetune", "base", "bench", "--json", *flags], tmp / "app.out")
        result = json.loads((tmp / "app.out").read_text())
        meta = result["artifact"]["metadata"]
        points = [json.loads(line) for line in
                  (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        points = [p for p in points if "tokens_per_s" in p]
        app["step_seconds"] = [n / p["tokens_per_s"] for n, p in zip(step_tokens, points)]
        app["tokens"] = meta["tokens_seen"]
        app["cuda_mb"] = max((p.get("gpu_memory_mb") or 0 for p in points), default=0) or None
        app["mean_loss"] = sum(p["loss"] for p in points) / len(points)
        print(f"app: {app['wall_s']:.0f} s in all, {meta['train_seconds']:.1f} s of steps",
              flush=True)

        cfg = {"model": str(model), "rows": ordered, "out": str(tmp / "trainer"),
               "options": opts.to_dict()}
        (tmp / "baseline.json").write_text(json.dumps(cfg))
        (tmp / "baseline.py").write_text(BASELINE)
        base = run_measured([py, str(tmp / "baseline.py"), str(tmp / "baseline.json")],
                            tmp / "base.out")
        base.update(json.loads((tmp / "base.out").read_text().strip().splitlines()[-1]))
        print(f"Trainer: {base['wall_s']:.0f} s in all, {sum(base['step_seconds']):.1f} s of "
              f"steps (optimizer {base['optim']})", flush=True)

    if app["tokens"] != sum(step_tokens) or base["tokens"] != sum(step_tokens):
        print(f"note: tokens counted: app {app['tokens']}, Trainer {base['tokens']}, "
              f"expected {sum(step_tokens)}")
    total = sum(step_tokens)
    steady = total - step_tokens[0]

    def tps(side: dict, first: int) -> float:
        return (total if first == 0 else steady) / max(sum(side["step_seconds"][first:]), 1e-9)

    rows = [("tokens/s, all steps", tps(app, 0), tps(base, 0), "higher"),
            ("tokens/s, steady (step 2+)", tps(app, 1), tps(base, 1), "higher"),
            ("peak RSS, largest process MB", app["rss_mb"], base["rss_mb"], "lower"),
            ("peak RSS, process tree MB", app["tree_mb"], base["tree_mb"], "lower"),
            ("wall time incl. load s", app["wall_s"], base["wall_s"], "lower")]
    if app["cuda_mb"] or base["cuda_mb"]:
        rows.insert(4, ("CUDA max allocated MB", app["cuda_mb"] or 0.0, base["cuda_mb"] or 0.0,
                        "lower"))
    print(f"\n{'':32}{'app':>10}{'Trainer':>10}{'app/Trainer':>13}  better")
    for name, a, b, better in rows:
        print(f"{name:32}{a:10.1f}{b:10.1f}{a / b if b else float('nan'):12.3f}x  {better}")
    for name, side in (("app", app), ("Trainer", base)):
        print(f"{name} step seconds: " + " ".join(f"{x:.2f}" for x in side["step_seconds"]))
    print(f"mean training loss over the steps: app {app['mean_loss']:.4f}, "
          f"Trainer {base['mean_loss']:.4f}")
    print(f"benchmark took {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
