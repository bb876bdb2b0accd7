"""``llmops doctor`` and ``llmops monitor``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import Any

from llmops_desktop.errors import CatalogError, InvalidInputError, NotFoundError


def _size(n: float | None) -> str:
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "–"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _num(value: float | None, fmt: str = "{:.0f}", unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return fmt.format(value) + unit


# ---- doctor ------------------------------------------------------------------------------------

def cmd_doctor(args: argparse.Namespace) -> int:
    from llmops_desktop.monitor.doctor import doctor_report
    from llmops_desktop.paths import Home

    home = Home.resolve(args.home)
    report = doctor_report(home)
    if getattr(args, "bundle", None):
        from llmops_desktop.monitor.bundle import write_bundle

        path = write_bundle(home, args.bundle)
        print(f"Diagnostics bundle written to {path} (no secrets inside).", file=sys.stderr)
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        _print_doctor(report)
    if report["usable"]:
        return 0
    return CatalogError.exit_code if not report["catalog"]["ok"] else 1


def _print_doctor(r: dict[str, Any]) -> None:
    ok, bad = "ok", "PROBLEM"
    print(f"LLMOps Desktop {r['app_version']} on Python {r['python']['version']} "
          f"({r['python']['platform']})")
    home = r["home"]
    print(f"  home:      {home['path']}  [{ok if home['writable'] else bad + ': not writable'}]")
    print(f"  disk:      {_size(home['disk_free'])} free of {_size(home['disk_total'])}"
          + ("  (low)" if home["disk_low"] else ""))
    cat = r["catalog"]
    if cat["ok"]:
        print(f"  catalog:   {cat['path']}  schema {cat['schema']} (app {cat['app_schema']}), "
              f"{cat['artifacts']} artifact(s)")
    else:
        print(f"  catalog:   {bad}: {cat['error']}")
    gpu = r["gpu"]
    if gpu["available"]:
        print(f"  GPUs:      driver {gpu['driver_version']}, CUDA {gpu['cuda_version']} "
              f"(NVML {gpu['nvml_version']})")
        for d in gpu["devices"]:
            if d["error"]:
                print(f"    GPU {d['index']}: {d['error']}")
            else:
                print(f"    GPU {d['index']}: {d['name']}, {_size(d['memory_free'])} free of "
                      f"{_size(d['memory_total'])}")
    else:
        print(f"  GPUs:      none usable ({gpu['reason']}): {gpu['message']}")
    t = r["torch"]
    if t["installed"]:
        cuda = (f"CUDA available, {t['device_count']} device(s): {', '.join(t['devices'])}"
                if t.get("cuda_available") else
                f"no CUDA ({t.get('reason') or t.get('error', '')})")
        print(f"  torch:     {t['version']} (built for CUDA {t['cuda_build'] or 'none'}), {cuda}")
    else:
        print(f"  torch:     not usable: {t['error']}")
    ll = r["llama_cpp"]
    if ll["installed"]:
        offload = "GPU offload supported" if ll["gpu_offload"] else \
            f"no GPU offload ({ll.get('reason') or ll.get('error', '')})"
        print(f"  llama.cpp: llama-cpp-python {ll['version']}, {offload}")
    else:
        print(f"  llama.cpp: not usable: {ll['error']}")
    for note in r["notes"]:
        print(f"note: {note}")
    for problem in r["problems"]:
        print(f"problem: {problem}")
    print("The app is usable." if r["usable"] else "The app cannot run until the problems "
          "above are fixed.")


# ---- monitor -----------------------------------------------------------------------------------

KEY_FILE_HELP = ("put lines DEPLOYMENT_ID=KEY in a file only you can read and pass "
                 "--key-file FILE (or --key-file - and send them on stdin), or set "
                 "LLMOPS_API_KEY to try one key for every deployment")


def _api_keys(args: argparse.Namespace) -> dict[int, str]:
    """Per-deployment keys from ``--key-file`` (a file, or ``-`` for stdin); never argv.

    No message shows a key, nor a line that may hold one."""
    from llmops_desktop.netaddr import check_secret

    if args.key:
        raise InvalidInputError("API keys are not taken on the command line, where every user "
                                f"of this machine can read them (ps): {KEY_FILE_HELP}.")
    if not args.key_file:
        return {}
    if args.key_file == "-":
        where, text = "stdin", sys.stdin.read()
    else:
        where = args.key_file
        try:
            with open(args.key_file, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise NotFoundError(f"No key file {args.key_file}: {KEY_FILE_HELP}.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"Cannot read the key file {args.key_file} "
                                    f"({getattr(exc, 'strerror', None) or type(exc).__name__}); "
                                    "it must be UTF-8 text you can read.") from None
    keys = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        dep, sep, key = line.partition("=")
        if not sep or not dep.strip().isdigit() or not key.strip():
            raise InvalidInputError(f"{where}, line {n}: write each line as DEPLOYMENT_ID=KEY "
                                    "(the number 'llmops deployments' shows, '=', the key).")
        keys[int(dep)] = check_secret(key, f"API key on line {n} of {where}")
    return keys


def _sampler(args: argparse.Namespace):
    from llmops_desktop.monitor.sampler import Sampler, SamplerConfig
    from llmops_desktop.paths import Home
    from llmops_desktop.settings import load_settings

    home = Home.resolve(args.home)
    settings = load_settings(home.settings_path)
    overrides: dict[str, Any] = {"history": bool(args.record)}
    if args.rate is not None:
        if not 0.1 <= args.rate <= 10:
            raise InvalidInputError("--rate must be between 0.1 and 10 samples a second.")
        overrides["rate_hz"] = args.rate
    return Sampler(home, SamplerConfig.from_settings(settings, **overrides),
                   api_keys=_api_keys(args),
                   default_api_key=os.environ.get("LLMOPS_API_KEY") or None)


def cmd_monitor(args: argparse.Namespace) -> int:
    sampler = _sampler(args)
    try:
        return _monitor(args, sampler)
    except KeyboardInterrupt:  # how the live views end
        return 0
    finally:
        sampler.stop()


def _monitor(args: argparse.Namespace, sampler: Any) -> int:
    if args.once:
        sample = sampler.sample_once()
        if args.json:
            json.dump(sample.to_json(), sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            from rich.console import Console

            Console().print(render_sample(sample))
        return 0
    if args.json:  # one JSON object per line, per sample
        sampler.add_listener(lambda s: print(json.dumps(s.to_json()), flush=True))
        with sampler:
            while True:
                time.sleep(0.5)
    from rich.console import Console
    from rich.live import Live

    console = Console()
    alerts: list[str] = []
    sampler.add_alert_listener(lambda e: alerts.append(
        f"{time.strftime('%H:%M:%S', time.localtime(e.t))} "
        f"{'ALERT' if e.state == 'firing' else 'cleared'}: {e.message}"))
    with sampler, Live(console=console, auto_refresh=False, transient=False) as live:
        seen = -1
        while True:
            sample = sampler.latest
            if sample is not None and sample.seq != seen:
                seen = sample.seq
                live.update(render_sample(sample, alerts[-5:]), refresh=True)
            time.sleep(min(0.1, sampler.config.interval_s / 2))


def render_sample(sample: Any, alerts: list[str] | None = None) -> Any:
    """A rich renderable of one sample: system, GPUs, our processes, deployments."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    s = sample.system
    parts: list[Any] = []
    head = Text(time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sample.t)), style="bold")
    head.append("   (Ctrl-C to stop)", style="dim")
    parts.append(head)
    sys_table = Table(title="System", title_justify="left", box=None)
    for col in ("CPU", "per core", "RAM", "swap", "disk read", "disk write", "net in",
                "net out"):
        sys_table.add_column(col, justify="right")
    bars = "▁▂▃▄▅▆▇█"
    cores = "".join(bars[min(7, int(c / 100 * 8))] for c in s.per_core[:64])
    sys_table.add_row(f"{s.cpu_pct:.0f}%", cores,
                      f"{_size(s.ram_used)} / {_size(s.ram_total)} ({s.ram_pct:.0f}%)",
                      f"{s.swap_pct:.0f}%", _size(s.disk_read_bps) + "/s",
                      _size(s.disk_write_bps) + "/s", _size(s.net_rx_bps) + "/s",
                      _size(s.net_tx_bps) + "/s")
    parts.append(sys_table)
    if sample.gpus:
        gpu_table = Table(title="GPUs", title_justify="left", box=None)
        for col in ("GPU", "util", "memory", "temp", "power", "SM clock", "our processes"):
            gpu_table.add_column(col, justify="right" if col not in ("GPU", "our processes")
                                 else "left")
        for g in sample.gpus:
            ours = ", ".join(f"{p.owner} {_size(p.used_bytes)}" for p in g.processes or ()
                             if p.owner)
            gpu_table.add_row(f"{g.index} {g.name}", _num(g.util_pct, unit="%"),
                              f"{_size(g.mem_used)} / {_size(g.mem_total)}",
                              _num(g.temp_c, unit=" °C"),
                              f"{_num(g.power_w)} / {_num(g.power_limit_w)} W",
                              _num(g.sm_clock_mhz, unit=" MHz"), g.error or ours or "–")
        parts.append(gpu_table)
    else:
        parts.append(Text(f"GPUs: none ({sample.gpu.reason}): {sample.gpu.message}",
                          style="yellow"))
    if sample.processes:
        proc_table = Table(title="Our jobs and servers", title_justify="left", box=None)
        for col in ("process", "pid", "CPU", "RSS", "threads", "children"):
            proc_table.add_column(col, justify="left" if col == "process" else "right")
        for p in sample.processes:
            proc_table.add_row(p.label, str(p.pid), f"{p.cpu_pct:.0f}%", _size(p.rss),
                               str(p.threads), str(p.children))
        parts.append(proc_table)
    if sample.deployments:
        dep_table = Table(title="Deployments (last 10 s)", title_justify="left", box=None)
        for col in ("deployment", "req/s", "TTFT p50/p95", "latency p50/p95", "tokens/s",
                    "errors", "queue", "status"):
            dep_table.add_column(col, justify="left" if col in ("deployment", "status")
                                 else "right")
        for d in sample.deployments:
            dep_table.add_row(
                f"#{d.id} {d.name}", _num(d.req_rate, "{:.2f}"),
                f"{_num(d.ttft_p50_ms)} / {_num(d.ttft_p95_ms)} ms",
                f"{_num(d.lat_p50_ms)} / {_num(d.lat_p95_ms)} ms", _num(d.tok_s, "{:.1f}"),
                _num(d.error_rate_pct, unit="%"), _num(d.queue),
                d.status if d.status == "ok" else f"{d.status}: {d.message}")
        parts.append(dep_table)
    for line in alerts or ():
        parts.append(Text(line, style="bold red" if "ALERT" in line else "green"))
    return Group(*parts)


def register(add: Any) -> None:
    sp = add("doctor", cmd_doctor, "check the machine: GPUs (or why none), CUDA in torch, "
             "llama.cpp GPU offload, versions, catalog, disk")
    sp.add_argument("--bundle", metavar="FILE.zip",
                    help="also write a diagnostics bundle (this report, settings, the "
                    "catalog's schema, recent jobs and their logs; no secrets) to FILE.zip")
    sp = add("monitor", cmd_monitor, "live GPU, system and deployment figures in the "
             "terminal until Ctrl-C (--once: one sample)")
    sp.add_argument("--once", action="store_true", help="print one sample and exit")
    sp.add_argument("--rate", type=float, help="samples a second (default: the "
                    "monitor_sample_hz setting)")
    sp.add_argument("--key-file", metavar="FILE",
                    help="API keys of deployments started with one, to read their /metrics: "
                         "lines DEPLOYMENT_ID=KEY ('-': read them from stdin); LLMOPS_API_KEY "
                         "is tried for every deployment")
    sp.add_argument("--key", action="append", help=argparse.SUPPRESS)  # refused: see _api_keys
    sp.add_argument("--record", action="store_true",
                    help="also write the history to the catalog (the window does this)")
