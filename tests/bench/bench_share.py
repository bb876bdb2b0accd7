"""Package export and verified import against ``tar -cf`` and ``sha256sum``, side by side.

    .venv/bin/python tests/bench/bench_share.py [--size-mib 1024] [--rounds 3]
        [--compare CHECKOUT] [--settle SECONDS]

Makes an HF-style folder whose weights are one file of random bytes and imports it into a
scratch home. Per round: ``tar -cf`` of the artifact's folder vs ``llmops export`` of it
(the job's own timing and the whole command), and ``sha256sum`` of the same files vs
``llmops import PACKAGE`` into a fresh home (verifying every byte while writing it to the
store). Prints MB/s and the ratios, best and median (goals: export at least 0.95x
``tar -cf`` + ``sync``, verified import at least 0.8x ``sha256sum``), which sha256sum ran
and whether the CPU has SHA instructions. ``--compare CHECKOUT`` also exports with the app
in that folder (a git worktree of an older commit), in alternating order every round.

Before every timed command: ``sync``, then ``--settle`` seconds (default 6) of rest. The
disk here mounts with ``discard``, and ext4 issues a deleted file's discards at its next
journal commit (every 5 s): without the rest, whichever command followed the deletion of
the 2 GB file before it paid for those discards (the same command took 1.6 s or 4-5 s by
its place in the round, tar + sync as much as the export).
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

sys.path.insert(0, str(Path(__file__).parent))
from bench_import_hash import make_model  # noqa: E402


def llmops(home: Path, *args: str, src: Path | None = None) -> tuple[dict, float]:
    """Run the CLI (from ``src``, another checkout of the app, when given); its result and
    the whole command's seconds."""
    env = dict(os.environ, PYTHONPATH=str(src)) if src else None
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home),
                           *args, "--json"], check=True, capture_output=True, text=True,
                          cwd=src, env=env)
    return json.loads(proc.stdout), time.perf_counter() - t


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compare", type=Path, metavar="CHECKOUT",
                    help="also export with the app in this folder, alternating every round")
    ap.add_argument("--settle", type=float, default=6.0, metavar="SECONDS",
                    help="rest after the sync before each timed command (default 6)")
    args = ap.parse_args()

    def settle() -> None:
        os.sync()
        time.sleep(args.settle)

    sha = subprocess.run(["sha256sum", "--version"], capture_output=True, text=True)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    print(f"{shutil.which('sha256sum')}: {sha.stdout.splitlines()[0] if sha.stdout else '?'}; "
          f"CPU SHA instructions (sha_ni): {'yes' if ' sha_ni' in flags else 'no'}", flush=True)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp_s:
        tmp = Path(tmp_s)
        src = tmp / "model"
        print(f"writing {args.size_mib} MiB of random bytes …", flush=True)
        make_model(src, args.size_mib << 20)
        home = tmp / "home"
        art, _ = llmops(home, "import", str(src), "--name", "bench")
        folder = Path(art["path"])
        files = sorted(str(p) for p in folder.rglob("*") if p.is_file())
        size = sum(Path(f).stat().st_size for f in files)
        timed(["sha256sum", *files])  # warm the page cache for everyone alike
        rows: dict[str, list[float]] = {}
        for r in range(args.rounds):
            tar_out = tmp / "plain.tar"

            def tar_side() -> None:
                settle()
                rows.setdefault("tar -cf", []).append(timed(["tar", "-cf", str(tar_out), "-C",
                                                             str(folder), "."]))
                tar_out.unlink()
                # The export flushes the package to disk before saying it is done (a USB
                # stick may be pulled next), so tar with the same flush is the like-for-like
                # figure.
                settle()
                rows.setdefault("tar -cf + sync FILE", []).append(timed(
                    ["sh", "-c", f"tar -cf '{tar_out}' -C '{folder}' . && sync '{tar_out}'"]))
                tar_out.unlink()

            def export_side() -> None:
                apps = [("", None)] + ([(" @compare", args.compare)] if args.compare else [])
                for label, app in apps if r % 2 == 0 else apps[::-1]:
                    out = pkg if app is None else tmp / "compare.llmpkg"
                    settle()
                    res, wall = llmops(home, "export", "bench", "-o", str(out), src=app)
                    rows.setdefault(f"export{label} (job)", []).append(res["seconds"])
                    rows.setdefault(f"export{label} (whole cmd)", []).append(wall)
                    if app is not None:
                        out.unlink()

            pkg = tmp / "bench.llmpkg"
            # alternate which goes first: freeing a 2 GB file and the disk's writeback of the
            # one before otherwise fall on the same side every round
            for side in (tar_side, export_side) if r % 2 == 0 else (export_side, tar_side):
                side()
            settle()
            rows.setdefault("sha256sum", []).append(timed(["sha256sum", *files]))
            other = tmp / "home-b"
            shutil.rmtree(other, ignore_errors=True)
            settle()
            res, wall = llmops(other, "import", str(pkg), "--allow-unsigned")
            rows.setdefault("import package (job)", []).append(res["package"]["seconds"])
            rows.setdefault("import package (whole cmd)", []).append(wall)
            pkg.unlink()
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in rows.items()),
                  flush=True)
    import statistics

    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\n{'':32}{'best s':>8}{'MB/s':>7}{'median s':>10}  ratio against (best; median)")
    for name, times in rows.items():
        best = min(times)
        bases = (["tar -cf", "tar -cf + sync FILE"] if name.startswith(("tar", "export"))
                 else ["sha256sum"])
        ratios = "  ".join(f"{min(rows[b]) / best:5.2f}x;{med[b] / med[name]:5.2f}x {b}"
                           for b in bases if b != name)
        print(f"{name:32}{best:8.2f}{size / best / 1e6:7.0f}{med[name]:10.2f}  {ratios}")


if __name__ == "__main__":
    main()
