"""The window's cold start, and the Models page filter with 10,000 artifacts.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_gui.py [--rounds 5]

Cold start: wall time from launching a process to the main window shown and painted,
side by side with a bare PySide6 window (the floor any Qt app pays here), and the list
of heavy modules (torch, transformers, llama_cpp, …) loaded by then (goal: none; under
1.5 s). Filter: a catalog with 10,000 real artifact rows; each keystroke typed into the
filter box is timed until the table is repainted (goal: under 50 ms).
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
from pathlib import Path

HEAVY = ("torch", "transformers", "llama_cpp", "peft", "bitsandbytes", "accelerate")

APP_PROBE = """
import sys, time, json
from PySide6.QtCore import QTimer
from llmops_desktop.qt.app import create_application
from llmops_desktop.qt.main_window import MainWindow
from llmops_desktop.paths import Home
app = create_application()
w = MainWindow(Home.resolve())
w.show()
def report():
    heavy = sorted(m for m in sys.modules if m.split('.')[0] in %r)
    print(json.dumps({"heavy": heavy}), flush=True)
    app.quit()
QTimer.singleShot(0, report)
app.exec()
""" % (HEAVY,)

BARE_PROBE = """
import json
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication([])
w = QMainWindow(); w.resize(1280, 800); w.show()
QTimer.singleShot(0, lambda: (print(json.dumps({"heavy": []}), flush=True), app.quit()))
app.exec()
"""


def time_start(code: str, env: dict[str, str]) -> tuple[float, list[str]]:
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env,
                            text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - t
    proc.wait()
    return elapsed, json.loads(line)["heavy"]


def fill_catalog(home: Path, n: int) -> None:
    from llmops_desktop.catalog import ArtifactFile, Catalog

    with Catalog.open(home) as catalog, catalog.transaction():
        for i in range(n):
            catalog.add_artifact(
                model_name=f"org{i % 50}/model-{i % 997}", kind=("hf", "gguf", "lora")[i % 3],
                storage="reference", path=Path(f"/models/m{i}"),
                files=[ArtifactFile("model.safetensors", 1000 + i, f"{i:064x}")],
                metadata={"architecture": "LlamaForCausalLM", "parameters": i * 1000,
                          "quantization": ("Q4_K_M", "Q8_0", "F16")[i % 3]},
                tags=(f"team{i % 9}",))


def bench_filter(home: Path) -> list[float]:
    os.environ["LLMOPS_HOME"] = str(home)
    from PySide6.QtTest import QTest

    from llmops_desktop.paths import Home
    from llmops_desktop.qt.app import create_application
    from llmops_desktop.qt.main_window import MainWindow

    app = create_application()
    w = MainWindow(Home.resolve())
    w.show()
    page = w.models_page
    deadline = time.monotonic() + 60
    while page.model.rowCount() < 10_000 and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    assert page.model.rowCount() >= 10_000, page.model.rowCount()
    edit = page.filter_edit
    edit.setFocus()
    timings = []
    for text in ("model-12", "team3", "q4_k"):
        for ch in text:
            t = time.perf_counter()
            QTest.keyClick(edit, ch)
            app.processEvents()
            page.table.viewport().repaint()
            timings.append(time.perf_counter() - t)
        for _ in text:
            t = time.perf_counter()
            QTest.keyClick(edit, "\b")
            app.processEvents()
            page.table.viewport().repaint()
            timings.append(time.perf_counter() - t)
    w.close()
    return timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "LLMOPS_HOME": str(Path(tmp) / "empty")}
        time_start(BARE_PROBE, env)  # warm the OS file cache for both alike
        time_start(APP_PROBE, env)
        app_t, bare_t, heavy = [], [], set()
        for _ in range(args.rounds):
            b, _ = time_start(BARE_PROBE, env)
            a, h = time_start(APP_PROBE, env)
            bare_t.append(b)
            app_t.append(a)
            heavy |= set(h)
        print(f"cold start to shown window ({args.rounds} rounds, median):")
        print(f"  bare PySide6 window   {statistics.median(bare_t):6.2f} s")
        print(f"  LLMOps Desktop        {statistics.median(app_t):6.2f} s   "
              f"({statistics.median(app_t) / statistics.median(bare_t):.2f}x the bare window)")
        print(f"  heavy modules loaded at that point: {sorted(heavy) or 'none'}")

        big = Path(tmp) / "big"
        t = time.perf_counter()
        fill_catalog(big, 10_000)
        print(f"\ncatalog with 10,000 artifacts made in {time.perf_counter() - t:.1f} s")
        timings = bench_filter(big)
        ms = sorted(x * 1000 for x in timings)
        print(f"filter keystroke incl. repaint, {len(ms)} keystrokes: median "
              f"{statistics.median(ms):.1f} ms, p95 {ms[int(len(ms) * 0.95) - 1]:.1f} ms, "
              f"max {ms[-1]:.1f} ms (goal < 50 ms)")


if __name__ == "__main__":
    main()
