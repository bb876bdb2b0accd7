"""Multiple-choice items per second: the app's torch scorer against lm-evaluation-harness's
HF backend, on the same model, items and device, side by side in one run.

    .venv/bin/python tests/bench/bench_eval.py [--items 200] [--shots 0] [--hidden 256]
                                               [--layers 4] [--batch-size 32] [--device cpu]

Makes a random-weight Llama (``demo.make_demo_model``; ``--hidden``/``--layers`` set its
size) and ``--items`` four-choice items in the ARC prompt, optionally with ``--shots``
seeded examples before each (longer shared contexts). Then, in this process, each side
scores every (context, " " + choice) pair after its model is loaded (loading is outside
the timing), the sides alternating for ``--rounds`` rounds, each side's best round kept
(the machine's other load weighs on both alike):

- the app: ``evaluate.backends.TorchBackend.loglikelihood`` over the items in the chunks
  the eval job uses, then ``scoring.mc_scores`` (each context is evaluated once, its
  choices packed after it under a 4D mask; ``--no-pack`` scores one sequence per choice);
- lm-eval: ``lm_eval.models.huggingface.HFLM(pretrained=DIR, batch_size=B)`` and its
  ``loglikelihood`` on the same requests (``Instance`` objects), once with its default
  batch size 1 and once with ``--batch-size``; acc/acc_norm computed from its figures
  as its multiple_choice task does.

Prints items/s of each, the ratios (goal >= 1.5x against lm-eval's default), and whether
acc and acc_norm are identical item by item. No thresholds.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def make_items(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = ("model data weights machine share quantize serve train token layer context memory "
             "disk file package sign verify catalog import export request reply").split()
    items = []
    for i in range(n):
        q = " ".join(rng.choice(words) for _ in range(rng.randint(8, 30)))
        choices = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) for _ in range(4)]
        items.append({"kind": "mc", "question": q, "context": f"Question: {q}?\nAnswer:",
                      "choices": choices, "answer": i % 4})
    return items


def ours(model_dir: Path, items: list[dict], shots: int, batch_size: int, device: str,
         pack: bool = True):
    """(a function that scores every item and returns (seconds, scores), the contexts)."""
    from llmops_desktop.evaluate.backends import TorchBackend
    from llmops_desktop.evaluate.scoring import fewshot_examples, mc_context, mc_pairs, mc_scores

    backend = TorchBackend(model_dir, batch_size=batch_size, device=device, pack=pack)
    pool = list(enumerate(items))
    contexts = [mc_context(it, fewshot_examples(it, i, pool, shots, 1234))
                for i, it in enumerate(items)]
    per_chunk = batch_size  # as the eval job chunks items

    def run():
        t0 = time.perf_counter()
        scores = []
        for start in range(0, len(items), per_chunk):
            chunk = list(range(start, min(len(items), start + per_chunk)))
            pairs = [p for i in chunk for p in mc_pairs(contexts[i], items[i])]
            lls = backend.loglikelihood(pairs)
            for k, i in enumerate(chunk):
                scores.append(mc_scores(items[i], lls[4 * k:4 * k + 4])[0])
        return time.perf_counter() - t0, scores
    return run, contexts


def lm_eval_side(model_dir: Path, items: list[dict], contexts: list[str], batch_size: int,
                 device: str):
    import numpy as np
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), batch_size=batch_size, device=device)
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(ctx, " " + c), idx=j)
            for ctx, it in zip(contexts, items) for j, c in enumerate(it["choices"])]

    def run():
        t0 = time.perf_counter()
        out = lm.loglikelihood(reqs, disable_tqdm=True)
        elapsed = time.perf_counter() - t0
        scores = []
        for k, it in enumerate(items):
            lls = np.array([o[0] for o in out[4 * k:4 * k + 4]])
            lens = np.array([float(len(c)) for c in it["choices"]])
            scores.append({"acc": float(np.argmax(lls) == it["answer"]),
                           "acc_norm": float(np.argmax(lls / lens) == it["answer"])})
        return elapsed, scores
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--shots", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (best kept)")
    ap.add_argument("--no-pack", action="store_true", help="one sequence per choice (no reuse)")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from llmops_desktop.demo import make_demo_model

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_demo_model(Path(tmp) / "bench-llama", hidden_size=args.hidden,
                                    num_layers=args.layers, intermediate_size=4 * args.hidden)
        items = make_items(args.items)
        run_ours, contexts = ours(model_dir, items, args.shots, args.batch_size, args.device,
                                  not args.no_pack)
        sides = {("app (torch, " + ("one per choice" if args.no_pack else "packed") + ")"): run_ours}
        for bs in dict.fromkeys((1, args.batch_size)):
            sides[f"lm-eval hf, batch_size={bs}"] = lm_eval_side(model_dir, items, contexts, bs,
                                                                 args.device)
        best: dict[str, tuple[float, list]] = {}
        for r in range(args.rounds):  # alternate the sides; keep each one's best round
            for name, fn in sides.items():
                if r and "batch_size=1" in name and args.batch_size != 1:
                    continue  # the slow default is timed once
                t, s = fn()
                if name not in best or t < best[name][0]:
                    best[name] = (t, s)
        rows = [(name, t, s) for name, (t, s) in best.items()]
        t_ours, s_ours = rows[0][1], rows[0][2]
    n = len(items)
    print(f"{n} items x 4 choices, {args.shots}-shot, hidden {args.hidden}, {args.layers} layers, "
          f"device {args.device}")
    print(f"{'side':<30} {'seconds':>9} {'items/s':>9} {'acc':>7} {'acc_norm':>9} {'ratio':>7}")
    for name, t, s in rows:
        acc = sum(x["acc"] for x in s) / n
        norm = sum(x["acc_norm"] for x in s) / n
        print(f"{name:<30} {t:>9.2f} {n / t:>9.1f} {acc:>7.3f} {norm:>9.3f} {t / t_ours:>6.2f}x")
    for name, _, s in rows[1:]:
        same = sum(1 for a, b in zip(s_ours, s) if a == b)
        print(f"identical acc/acc_norm with {name}: {same}/{n} items")


if __name__ == "__main__":
    main()
