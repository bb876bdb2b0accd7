"""The torch engine's continuous batching against ``model.generate`` on a padded batch.

    .venv/bin/python tests/bench/bench_serve_torch.py [--model HF_FOLDER] [--threads N]
                                                      [--tokens 128] [--rounds 3]
                                                      [--device cpu|cuda]

Without ``--model`` it makes the demo model (tiny Llama) on the spot. Each round sends 4
greedy streaming completions at once (fresh prompts per round) to ``python -m
llmops_desktop.serving --engine torch --parallel 4``, then runs the same 4 prompts in this
process through ``model.generate`` as one left-padded batch of 4 (greedy, the same
``max_new_tokens``), alternating which goes first. Prints the medians of total tokens/s
(tokens before each row's end of sequence, over the wall time): goal >= 0.8x.

It also sends 8 prompts alone, then all 8 at once, and counts the answers that differ
(greedy alone and batched: 0 when the batch is bit-exact).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import start_serving  # noqa: E402

PROMPT = "Round {i}, reader {j}. Here is a long story about a lighthouse keeper:"


def start_server(home: Path, threads: int, device: str, parallel: int
                 ) -> tuple[subprocess.Popen[str], str]:
    return start_serving(home, "--engine", "torch", "--threads", str(threads), "--device",
                         device, "--parallel", str(parallel))


def complete(url: str, prompt: str, tokens: int) -> tuple[str, int]:
    """(text, completion tokens) of one streamed greedy completion."""
    body = {"model": "bench", "prompt": prompt, "max_tokens": tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    text, n = "", 0
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
            elif chunk["choices"]:
                text += chunk["choices"][0]["text"]
    return text, n


def via_server(url: str, prompts: list[str], tokens: int) -> float:
    t = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(lambda p: complete(url, p, tokens), prompts))
    return sum(n for _, n in results) / (time.perf_counter() - t)


def via_generate(model, tok, prompts: list[str], tokens: int, device: str) -> float:
    import torch

    t = time.perf_counter()
    batch = tok(prompts, return_tensors="pt", padding=True).to(device)
    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    eos = set(model.generation_config.eos_token_id if isinstance(
        model.generation_config.eos_token_id, list) else [model.generation_config.eos_token_id])
    n = 0
    for row in new.tolist():
        for token in row:
            if token in eos:
                break
            n += 1
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a Hugging Face model folder (default: demo)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            from llmops_desktop.demo import make_demo_model

            model_dir = make_demo_model(tmp / "demo-tiny-llama")
        home = tmp / "home"
        subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home), "import",
                        str(model_dir), "--name", "bench", "--mode", "reference"], check=True,
                       capture_output=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32 if args.device == "cpu" else "auto")
        model.to(args.device).eval()
        tok = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        print(f"model {model_dir.name}, {args.device}, {args.threads} threads, {args.tokens} "
              f"tokens, {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}",
              flush=True)
        proc, url = start_server(home, args.threads, args.device, parallel=4)
        try:
            via_server(url, ["warm up"] * 4, 4)
            via_generate(model, tok, ["warm up"] * 4, 4, args.device)
            ours, theirs = [], []
            for i in range(args.rounds):
                prompts = [PROMPT.format(i=i, j=j) for j in range(4)]
                if i % 2:
                    theirs.append(via_generate(model, tok, prompts, args.tokens, args.device))
                    ours.append(via_server(url, prompts, args.tokens))
                else:
                    ours.append(via_server(url, prompts, args.tokens))
                    theirs.append(via_generate(model, tok, prompts, args.tokens, args.device))
            a, b = statistics.median(ours), statistics.median(theirs)
            print(f"4 clients, total tokens/s: server {a:.1f}, model.generate batch of 4 "
                  f"{b:.1f}: {a / b:.2f}x (goal >= 0.8x)", flush=True)
            prompts = [PROMPT.format(i=99, j=j) for j in range(8)]
            alone = [complete(url, p, args.tokens)[0] for p in prompts]
            with ThreadPoolExecutor(8) as pool:
                together = list(pool.map(lambda p: complete(url, p, args.tokens)[0], prompts))
            differ = sum(x != y for x, y in zip(alone, together))
            print(f"greedy alone vs batched (8 prompts, 4 rows): {differ} of 8 differ",
                  flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
