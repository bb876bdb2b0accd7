"""Download throughput from the team mirror on loopback, against curl fetching the same file.

    .venv/bin/python tests/bench/bench_download.py [--size-mib 1024] [--rounds 3]
        [--compare CHECKOUT]

Imports a model whose weights are one file of random bytes into a source home (by
reference, nothing copied), serves it with ``python -m llmops_desktop.mirror`` on
127.0.0.1, then per round fetches the weights with ``curl -o FILE`` and downloads the
repo with ``llmops download`` into a fresh home (which also verifies the sha256 and
registers the artifact). Prints MB/s and the ratio against curl (goal: at least 0.9x),
and the CPU seconds of the clients and of the mirror. ``--compare CHECKOUT`` runs that
checkout's mirror beside ours (curl fetches from both) and downloads with its client too,
in alternating order every round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_import_hash import make_model  # noqa: E402


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children and theirs."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def llmops(home: Path, *args: str, src: Path | None = None) -> dict:
    """Run the CLI (from ``src``, another checkout of the app, when given)."""
    env = dict(os.environ, PYTHONPATH=str(src)) if src else None
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home), *args],
                          check=True, capture_output=True, text=True, cwd=src, env=env)
    return json.loads(proc.stdout) if "--json" in args else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=8797)
    ap.add_argument("--compare", type=Path, metavar="CHECKOUT",
                    help="also download with the app in this folder (e.g. a git worktree of an "
                         "older commit), alternating with this one in every round")
    args = ap.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        print(f"writing {args.size_mib} MiB of random bytes …", flush=True)
        make_model(tmp / "model", size)
        llmops(tmp / "src", "import", str(tmp / "model"), "--name", "bench/big", "--mode",
               "reference", "--json")
        server = subprocess.Popen([sys.executable, "-m", "llmops_desktop.mirror", "--home",
                                   str(tmp / "src"), "--port", str(args.port)],
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        other = None  # the compared checkout's mirror, beside ours
        if args.compare:
            other = subprocess.Popen(
                [sys.executable, "-m", "llmops_desktop.mirror", "--home", str(tmp / "src"),
                 "--port", str(args.port + 1)], stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, cwd=args.compare,
                env=dict(os.environ, PYTHONPATH=str(args.compare)))
        try:
            assert server.stdout is not None
            ready = server.stdout.readline()
            assert "listening" in ready, ready
            url = f"http://127.0.0.1:{args.port}"
            info = json.loads(subprocess.run(
                ["curl", "-sf", f"{url}/api/models/bench/big"], capture_output=True,
                check=True).stdout)
            file_url = f"{url}/bench/big/resolve/{info['sha']}/model.safetensors"
            rows: dict[str, list[float]] = {"curl -o FILE": [], "llmops download (transfer)": [],
                                            "llmops download (whole cmd)": []}
            import psutil

            mirror_cpu: list[float] = []  # CPU seconds the mirror spent serving curl's GET
            other_cpu: list[float] = []  # the same, the compared checkout's mirror
            if other is not None:
                assert other.stdout is not None and "listening" in other.stdout.readline()
            cpu: dict[str, list[float]] = {"curl -o FILE": []}  # the client's CPU seconds

            for r in range(args.rounds):

                def curl_side() -> None:
                    out = tmp / "curl.out"
                    mirrors = [("", url, server)] + (
                        [(" @compare mirror", f"http://127.0.0.1:{args.port + 1}", other)]
                        if other else [])
                    for label, base, proc in mirrors if r % 2 == 0 else mirrors[::-1]:
                        os.sync()  # the last round's writing is not this one's
                        m0, c = sum(psutil.Process(proc.pid).cpu_times()[:2]), _children_cpu()
                        t = time.perf_counter()
                        subprocess.run(["curl", "-sf", "-o", str(out),
                                        file_url.replace(url, base)], check=True)
                        rows.setdefault(f"curl -o FILE{label}", []).append(
                            time.perf_counter() - t)
                        cpu.setdefault(f"curl -o FILE{label}", []).append(_children_cpu() - c)
                        (mirror_cpu if proc is server else other_cpu).append(
                            sum(psutil.Process(proc.pid).cpu_times()[:2]) - m0)
                        out.unlink()

                def client_side() -> None:
                    clients = [("", None)] + (
                        [(" @compare", args.compare)] if args.compare else [])
                    for label, src in clients if r % 2 == 0 else clients[::-1]:
                        dest = tmp / "dest"
                        shutil.rmtree(dest, ignore_errors=True)
                        llmops(dest, "settings", "offline", "off", src=src)
                        os.sync()
                        t, c = time.perf_counter(), _children_cpu()
                        result = llmops(dest, "download", "bench/big", "--endpoint", url,
                                        "--json", src=src)
                        rows.setdefault(f"llmops download{label} (whole cmd)", []).append(
                            time.perf_counter() - t)
                        cpu.setdefault(f"llmops download{label}", []).append(
                            _children_cpu() - c)
                        job = llmops(dest, "jobs", "show", str(result["job_id"]), "--json",
                                     src=src)
                        rows.setdefault(f"llmops download{label} (transfer)", []).append(
                            job["result"]["download_seconds"])

                # alternate which goes first, so writeback of the one before and the
                # freeing of its file do not always fall on the same side
                for side in (curl_side, client_side) if r % 2 == 0 else (client_side,
                                                                        curl_side):
                    side()
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()),
                      flush=True)
        finally:
            for proc in (server, other):
                if proc is not None:
                    proc.terminate()
                    proc.wait(timeout=30)
    import statistics

    base, base_med = min(rows["curl -o FILE"]), statistics.median(rows["curl -o FILE"])
    print(f"\n{'':38}{'best s':>8}{'MB/s':>7}{'vs curl':>9}{'median s':>10}{'vs curl':>9}")
    for name, times in rows.items():
        best, med = min(times), statistics.median(times)
        print(f"{name:38}{best:8.2f}{size / best / 1e6:7.0f}{base / best:8.2f}x"
              f"{med:10.2f}{base_med / med:8.2f}x")
    print("(llmops also verifies the sha256 of every byte and registers the artifact; the "
          "transfer figure is the job's own timing of fetching + hashing + writing.)")
    print("client CPU seconds, median (under load the wall time follows the CPU needed): "
          + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in cpu.items()))
    print(f"mirror CPU serving one GET of the file: median {statistics.median(mirror_cpu):.2f} s "
          f"({statistics.median(mirror_cpu) / statistics.median(rows['curl -o FILE']) * 100:.0f}% "
          "of a core over curl's time; sendfile: the kernel copies)")
    if other_cpu:
        print(f"  the compared checkout's mirror: median {statistics.median(other_cpu):.2f} s")


if __name__ == "__main__":
    main()
