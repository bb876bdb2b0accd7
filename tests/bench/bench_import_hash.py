"""Import hashing throughput against ``sha256sum`` on the same 1 GiB file, side by side.

    .venv/bin/python tests/bench/bench_import_hash.py [--size-mib 1024] [--rounds 3]

Makes an HF-style folder whose weights are one file of random bytes, then per round
runs ``sha256sum`` on it and imports it with the real import job (``--mode reference``:
hash only, and ``--mode copy``: hash while copying into the store). Prints MB/s and the
ratio against sha256sum (goal: at least 0.9x for the hashing import).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_model(folder: Path, size: int) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    n = size - 8
    for _ in range(3):  # the header's own length changes n; settle it
        header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
        n = size - 8 - len(header)
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    with open(folder / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        left = n
        while left:
            chunk = os.urandom(min(left, 16 << 20))
            fh.write(chunk)
            left -= len(chunk)


def time_sha256sum(path: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)
    return time.perf_counter() - t


def time_openssl(path: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["openssl", "dgst", "-sha256", str(path)], check=True, capture_output=True)
    return time.perf_counter() - t


def time_import(home: Path, src: Path, mode: str) -> tuple[float, float]:
    """(seconds the job spent hashing/copying as it measured them, wall seconds of the whole
    `llmops import` command including process starts and the catalog transaction)."""
    if home.exists():
        shutil.rmtree(home)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home),
                           "import", str(src), "--mode", mode, "--json"],
                          check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    return float(json.loads(proc.stdout)["metadata"]["import_seconds"]), wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    size = args.size_mib << 20
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        src = Path(tmp) / "model"
        print(f"writing {args.size_mib} MiB of random bytes …", flush=True)
        make_model(src, size)
        weights = src / "model.safetensors"
        time_sha256sum(weights)  # warm the page cache for everyone alike
        rows: dict[str, list[float]] = {"sha256sum": []}
        have_openssl = shutil.which("openssl") is not None
        for r in range(args.rounds):
            rows["sha256sum"].append(time_sha256sum(weights))
            if have_openssl:  # the same SHA-NI code path Python's hashlib uses, for reference
                rows.setdefault("openssl dgst -sha256", []).append(time_openssl(weights))
            for mode in ("reference", "copy"):
                inner, wall = time_import(Path(tmp) / "home", src, mode)
                rows.setdefault(f"import {mode} (hashing)", []).append(inner)
                rows.setdefault(f"import {mode} (whole cmd)", []).append(wall)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()),
                  flush=True)
    base = min(rows["sha256sum"])
    print(f"\n{'':30}{'best s':>8}{'MB/s':>9}{'vs sha256sum':>14}")
    for name, times in rows.items():
        best = min(times)
        print(f"{name:30}{best:8.2f}{size / best / 1e6:9.0f}{base / best:13.2f}x")


if __name__ == "__main__":
    main()
