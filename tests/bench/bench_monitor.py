"""The Monitor page under load: GUI stalls, and what sampling costs a busy server.

    QT_QPA_PLATFORM=offscreen .venv/bin/python tests/bench/bench_monitor.py
        [--model FILE.gguf] [--seconds 60] [--segments 6] [--rate 2] [--threads 1]
        [--tokens 64]

A deployment (``python -m llmops_desktop.serving``, default Gemma 3 270M Q4_K_M as in
bench_serve.py) is kept under continuous load by a client process that streams one
completion after another and logs each one's decode tokens/s (tokens after the first over
the time after the first). Meanwhile this process alternates, in ``--segments`` equal
segments, between "off" (no window: no sampler, no charts) and "on" (the main window with
the Monitor page shown: the sampler at ``--rate`` Hz, the charts redrawing, a deployment
panel for the server). Each phase gets ``--seconds`` in all. A 5 ms precise QTimer
measures how late the GUI thread's event loop is, in both phases. The first 2 s of each
segment (after opening or closing the window) are left out of every figure. Prints, side by
side:

- event-loop stall p50 / p99 / max, off and on (goal: p99 under 50 ms with the page open)
- decode tokens/s, median of the completions that ran entirely inside a segment, off and
  on, and on / off (goal: at least 0.99x)

"Off" has no window at all, so "on" also pays for the rest of the window being open: an
upper bound on what the monitor costs.

``--charts`` measures the charts alone instead (no server): six two-series charts fed at
2 Hz in an active window, CPU milliseconds and paints per redraw; with ``--compare
CHECKOUT`` the charts module of that checkout too, alternating rounds, medians side by side.
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
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import gemma_gguf, start_server, stop_server  # noqa: E402

SETTLE_S = 2.0
TICK_MS = 5

LOAD = r"""
import json, sys, time, requests
url, tokens = sys.argv[1], int(sys.argv[2])
i = 0
while True:
    i += 1
    body = {"model": "bench", "prompt": f"Story {i}. A lighthouse keeper finds a map in a "
            "bottle; tell it in short paragraphs.\n\n", "max_tokens": tokens,
            "temperature": 0.8, "seed": i, "stream": True}
    t0 = time.time(); first = last = None; n = 0
    with requests.post(url + "/v1/completions", json=body, stream=True, timeout=600) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: {"):
                chunk = json.loads(line[6:])
                if chunk["choices"] and chunk["choices"][0]["text"]:
                    n += 1
                    last = time.time(); first = first or last
    if first is not None and last > first and n > 8:
        print(json.dumps({"t0": t0, "t1": last, "tps": (n - 1) / (last - first), "n": n}),
              flush=True)
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def _charts_module(path: Path) -> object:
    """``llmops_desktop/qt/charts.py`` of a checkout, loaded as its own module."""
    import importlib.util

    name = f"charts_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path / "llmops_desktop/qt/charts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def bench_charts(seconds: float, rounds: int, compare: Path | None) -> None:
    """CPU per chart redraw, this checkout's charts against ``compare``'s."""
    from PySide6.QtCore import QEvent, QEventLoop, QObject, QTimer
    from PySide6.QtWidgets import QApplication, QGridLayout, QWidget

    from llmops_desktop.monitor.series import SeriesStore

    app = QApplication.instance() or QApplication([])  # noqa: F841 - kept alive
    here = Path(__file__).resolve().parents[2]
    modules = {"this checkout": _charts_module(here)}
    if compare is not None:
        modules[f"@ {compare}"] = _charts_module(compare.resolve())

    class Paints(QObject):
        count = 0

        def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802
            if event.type() == QEvent.Type.Paint:
                Paints.count += 1
            return False

    def run_for(s: float) -> None:
        loop = QEventLoop()
        QTimer.singleShot(int(s * 1000), loop.quit)
        loop.exec()

    results: dict[str, list[tuple[float, float]]] = {k: [] for k in modules}
    rng = np.random.default_rng(0)
    for r in range(rounds):
        for label in (list(modules) if r % 2 == 0 else list(modules)[::-1]):
            m = modules[label]
            store = SeriesStore(7200)
            keys = [f"k{i}" for i in range(12)]
            now = time.time()
            for j in range(240):
                store.add(now - 120 + j * 0.5, {k: float(rng.random() * 10) for k in keys})
            holder = QWidget()
            grid = QGridLayout(holder)
            charts = [m.LiveChart(f"chart {i}", "/s", [m.SeriesSpec(keys[2 * i], "a"),
                                                       m.SeriesSpec(keys[2 * i + 1], "b")],
                                  store) for i in range(6)]
            filt = Paints()
            for i, c in enumerate(charts):
                grid.addWidget(c, i // 3, i % 3)
                c.plot.viewport().installEventFilter(filt)
            holder.resize(1400, 700)
            holder.show()
            holder.activateWindow()
            run_for(1.0)
            feed = QTimer()
            feed.timeout.connect(lambda s=store, k=keys: s.add(
                time.time(), {x: float(rng.random() * 10) for x in k}))
            feed.start(500)
            c0, r0, p0 = time.process_time(), sum(c.redraws for c in charts), Paints.count
            run_for(seconds)
            cpu = time.process_time() - c0
            redraws = max(1, sum(c.redraws for c in charts) - r0)
            results[label].append((1000 * cpu / redraws, (Paints.count - p0) / redraws))
            feed.stop()
            holder.close()
            holder.deleteLater()
            run_for(0.2)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1][0]:.2f} ms" for k, v in
                                             results.items()), flush=True)
    print(f"\n{'six live charts, 2 Hz':34}{'CPU ms/redraw':>14}{'paints/redraw':>15}")
    for label, values in results.items():
        print(f"{label:34}{statistics.median(v[0] for v in values):14.2f}"
              f"{statistics.median(v[1] for v in values):15.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="a .gguf (default: Gemma 3 270M Q4_K_M)")
    ap.add_argument("--seconds", type=float, default=60.0, help="per phase, in all")
    ap.add_argument("--segments", type=int, default=6, help="alternating off/on segments")
    ap.add_argument("--rate", type=int, default=2, help="monitor samples a second (1-10)")
    ap.add_argument("--threads", type=int, default=1, help="the server's llama.cpp threads")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--charts", action="store_true", help="the charts alone (no server)")
    ap.add_argument("--compare", type=Path, metavar="CHECKOUT",
                    help="with --charts: also that checkout's charts module")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.charts:
        bench_charts(10.0, max(2, args.segments), args.compare)
        return

    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from llmops_desktop.paths import Home
    from llmops_desktop.settings import Settings, save_settings

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp_path = Path(tmp)
        model = args.model or gemma_gguf(tmp_path)
        home = Home.resolve(tmp_path / "home")
        os.environ["LLMOPS_HOME"] = str(home.root)
        save_settings(home.settings_path, Settings().updated(monitor_sample_hz=args.rate))
        subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                        "import", str(model), "--name", "bench", "--mode", "reference"],
                       check=True, capture_output=True)
        server, url = start_server(home.root, args.threads, 1024, parallel=1)
        load = subprocess.Popen([sys.executable, "-c", LOAD, url, str(args.tokens)],
                                stdout=subprocess.PIPE, text=True)
        done: list[dict] = []
        threading.Thread(target=lambda: [done.append(json.loads(line))
                                         for line in load.stdout], daemon=True).start()
        app = QApplication.instance() or QApplication([])  # noqa: F841 - kept alive
        ticks: list[tuple[float, float]] = []  # (time, lateness s)
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            ticks.append((time.time(), now - last[0] - TICK_MS / 1000))
            last[0] = now

        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(TICK_MS)
        timer.timeout.connect(tick)
        timer.start()

        def run_for(seconds: float) -> None:
            loop = QEventLoop()
            QTimer.singleShot(int(seconds * 1000), loop.quit)
            loop.exec()

        print(f"model {model.name}, server threads {args.threads}, {args.tokens} tokens a "
              f"completion, monitor {args.rate} Hz, {args.segments} segments of "
              f"{2 * args.seconds / args.segments:.0f} s", flush=True)
        run_for(3.0)  # warm up: the first completions
        segments: list[tuple[str, float, float]] = []
        profile = None
        if os.environ.get("BENCH_PROFILE"):
            import cProfile

            profile = cProfile.Profile()
        seg_s = 2 * args.seconds / args.segments
        redraws = charts = 0
        active = True
        cpu = {"off": 0.0, "on": 0.0}  # this process (GUI thread, sampler), CPU seconds
        wall = {"off": 0.0, "on": 0.0}
        for i in range(args.segments):
            phase = "off" if i % 2 == 0 else "on"
            window = None
            if phase == "on":
                from llmops_desktop.qt.main_window import MainWindow

                window = MainWindow(home)
                window.deployments_on_close = "keep"  # the bench's server stays up
                window.show()
                window.activateWindow()  # the focused window redraws fastest: the worst case
                page = window.show_page("monitor")
            run_for(SETTLE_S)  # opening (or closing) the window is not what is measured
            t0, c0 = time.time(), time.process_time()
            if profile is not None and phase == "on":
                profile.enable()
            run_for(seg_s)
            if profile is not None:
                profile.disable()
            t1 = time.time()
            cpu[phase] += time.process_time() - c0
            wall[phase] += t1 - t0
            if window is not None:
                assert page.controller.is_running(), "the sampler did not run"
                assert page.deployment_panels, "no deployment panel appeared"
                active = active and window.isActiveWindow()
                redraws += sum(c.redraws for c in page.charts())
                charts = len(page.charts())
                window.close()
                window.deleteLater()
                run_for(0.2)
            segments.append((phase, t0, t1))
            print(f"  segment {i + 1}/{args.segments} {phase:3}: {len(done)} completions so "
                  f"far", flush=True)
        timer.stop()
        load.kill()
        if profile is not None:
            profile.dump_stats(os.environ["BENCH_PROFILE"])
        stop_server(server)

    def inside(t0: float, t1: float, phase: str) -> bool:
        return any(p == phase and s <= t0 and t1 <= e for p, s, e in segments)

    print()
    print(f"{'':36}{'off':>10}{'on':>10}{'on/off':>9}")
    stall = {ph: [late * 1000 for t, late in ticks if inside(t, t, ph)] for ph in ("off", "on")}
    for label, q in (("event-loop stall p50, ms", 0.5), ("event-loop stall p99, ms", 0.99)):
        print(f"{label:36}{pct(stall['off'], q):10.1f}{pct(stall['on'], q):10.1f}")
    print(f"{'event-loop stall max, ms':36}{max(stall['off'], default=0):10.1f}"
          f"{max(stall['on'], default=0):10.1f}      goal: p99 < 50 ms with the page open")
    tps = {ph: [d["tps"] for d in done if inside(d["t0"], d["t1"], ph)] for ph in ("off", "on")}
    med = {ph: statistics.median(v) if v else float("nan") for ph, v in tps.items()}
    print(f"{'decode tokens/s (median)':36}{med['off']:10.1f}{med['on']:10.1f}"
          f"{med['on'] / med['off']:9.3f}   goal >= 0.99")
    pairs = []  # on/off of each neighbouring pair of segments: load drift cancels
    for (p1, s1, e1), (_, s2, e2) in zip(segments[::2], segments[1::2]):
        a = [d["tps"] for d in done if s1 <= d["t0"] and d["t1"] <= e1]
        b = [d["tps"] for d in done if s2 <= d["t0"] and d["t1"] <= e2]
        if a and b:
            on, off = (a, b) if p1 == "on" else (b, a)
            pairs.append(statistics.median(on) / statistics.median(off))
    if pairs:
        print(f"{'on/off, median of segment pairs':36}{'':20}"
              f"{statistics.median(pairs):9.3f}   ({len(pairs)} pairs: "
              + ", ".join(f"{r:.3f}" for r in pairs) + ")")
    print(f"{'completions measured':36}{len(tps['off']):10d}{len(tps['on']):10d}")
    print(f"{'timer ticks measured':36}{len(stall['off']):10d}{len(stall['on']):10d}")
    print(f"{'this process CPU, % of one core':36}{100 * cpu['off'] / wall['off']:10.1f}"
          f"{100 * cpu['on'] / wall['on']:10.1f}   (the window, sampler and charts)")
    print(f"chart redraws while on: {redraws} over {charts} charts (those scrolled out of "
          f"sight are not drawn); the window was {'active' if active else 'NOT active'}")


if __name__ == "__main__":
    main()
