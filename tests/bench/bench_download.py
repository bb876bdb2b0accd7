"""Download throughput from the team mirror on loopback, against curl fetching the same file.

    .venv/bin/python tests/bench/bench_download.py [--size-mib 1024] [--rounds 3]

Imports a model whose weights are one file of random bytes into a source home (by
reference, nothing copied), serves it with ``python -m llmops_desktop.mirror`` on
127.0.0.1, then per round fetches the weights with ``curl -o FILE`` and downloads the
repo with ``llmops download`` into a fresh home (which also verifies the sha256 and
registers the artifact). Prints MB/s and the ratio against curl (goal: at least 0.9x).
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


def llmops(home: Path, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home), *args],
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout) if "--json" in args else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=8797)
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
            for r in range(args.rounds):
                out = tmp / "curl.out"
                t = time.perf_counter()
                subprocess.run(["curl", "-sf", "-o", str(out), file_url], check=True)
                rows["curl -o FILE"].append(time.perf_counter() - t)
                out.unlink()
                dest = tmp / "dest"
                shutil.rmtree(dest, ignore_errors=True)
                llmops(dest, "settings", "offline", "off")
                t = time.perf_counter()
                result = llmops(dest, "download", "bench/big", "--endpoint", url, "--json")
                rows["llmops download (whole cmd)"].append(time.perf_counter() - t)
                job = llmops(dest, "jobs", "show", str(result["job_id"]), "--json")
                rows["llmops download (transfer)"].append(job["result"]["download_seconds"])
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()),
                      flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    import statistics

    base, base_med = min(rows["curl -o FILE"]), statistics.median(rows["curl -o FILE"])
    print(f"\n{'':30}{'best s':>8}{'MB/s':>7}{'vs curl':>9}{'median s':>10}{'vs curl':>9}")
    for name, times in rows.items():
        best, med = min(times), statistics.median(times)
        print(f"{name:30}{best:8.2f}{size / best / 1e6:7.0f}{base / best:8.2f}x"
              f"{med:10.2f}{base_med / med:8.2f}x")
    print("(llmops also verifies the sha256 of every byte and registers the artifact; the "
          "transfer figure is the job's own timing of fetching + hashing + writing.)")


if __name__ == "__main__":
    main()
