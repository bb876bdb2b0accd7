"""The sampler: one background thread that reads every source at a steady rate.

Each tick (2 Hz by default, 10 Hz at most) reads the machine (psutil) and every NVIDIA
GPU (NVML's cheap calls); once a second at most it also lists our processes (running
jobs and servers from the catalog, with their children, and the processes on each GPU);
up to twice a second it scrapes each running deployment's ``/metrics``. A tick becomes a
:class:`Sample`: structured readings plus flat ``values`` (series name -> number) that go
to the in-memory rings (:class:`~llmops_desktop.monitor.series.SeriesStore`), to the
downsampled history (written to the catalog every ~30 s), and to the alert rules.
Listeners are called on the sampler thread with each sample and each alert; a GUI relays
them to its own thread and never waits for one.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.monitor.alerts import AlertEngine, AlertEvent, AlertRule, rules_from_settings
from llmops_desktop.monitor.gpu import GpuDiagnosis, GpuProcess, GpuReading, NvmlReader, diagnose
from llmops_desktop.monitor.history import Downsampler, HistoryRow, prune, write_rows
from llmops_desktop.monitor.scrape import DeploymentReading, DeploymentScraper
from llmops_desktop.monitor.series import SeriesStore
from llmops_desktop.monitor.system import (
    ProcessReader,
    ProcessReading,
    SystemReader,
    SystemReading,
    Watched,
    watched_processes,
)
from llmops_desktop.paths import Home

log = logging.getLogger(__name__)

MAX_RATE_HZ = 10.0
PROCESS_HZ = 1.0  # process lists (ours, and those on each GPU)
SCRAPE_HZ = 2.0  # /metrics of each deployment
RING_SECONDS = 3600  # the rings hold the last hour; older views come from the history
PRUNE_EVERY_S = 3600.0


@dataclass(frozen=True)
class SamplerConfig:
    rate_hz: float = 2.0
    history: bool = True  # write downsampled history to the catalog
    flush_interval_s: float = 30.0
    history_interval_s: float = 10.0
    retention_days: float = 7.0
    rules: tuple[AlertRule, ...] = ()
    alert_sustain: int = 2
    alert_cooldown_s: float = 300.0
    gpu: bool = True  # False: do not touch NVML at all
    deployment_window_s: float = 10.0

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> SamplerConfig:
        config = cls(rate_hz=float(settings.monitor_sample_hz),
                     retention_days=float(settings.monitor_retention_days),
                     rules=tuple(rules_from_settings(settings)))
        return replace(config, **overrides)

    @property
    def interval_s(self) -> float:
        return 1.0 / min(MAX_RATE_HZ, max(0.1, self.rate_hz))


@dataclass(frozen=True)
class Sample:
    """Everything one tick read. ``values`` is the flat form the charts and history use;
    ``subjects`` names what a series prefix stands for ("gpu.0" -> "GPU 0 (…)")."""

    t: float
    seq: int
    system: SystemReading
    gpu: GpuDiagnosis
    gpus: tuple[GpuReading, ...]
    processes: tuple[ProcessReading, ...]
    deployments: tuple[DeploymentReading, ...]
    values: dict[str, float]
    subjects: dict[str, str]
    alerts: tuple[AlertEvent, ...] = ()
    errors: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "t": self.t, "seq": self.seq, "system": self.system.to_json(),
            "gpu_status": {k: v for k, v in self.gpu.to_json().items() if k != "devices"},
            "gpus": [g.to_json() for g in self.gpus],
            "processes": [p.to_json() for p in self.processes],
            "deployments": [d.to_json() for d in self.deployments],
            "alerts": [a.to_json() for a in self.alerts],
            "errors": list(self.errors),
            "values": {k: (None if math.isnan(v) else v) for k, v in self.values.items()},
        }


def _put(values: dict[str, float], key: str, value: float | int | None) -> None:
    if value is not None:
        values[key] = float(value)


class Collector:
    """Reads every source once per :meth:`collect`. Use from one thread at a time."""

    def __init__(self, home: Home, config: SamplerConfig, api_keys: dict[int, str] | None = None,
                 default_api_key: str | None = None) -> None:
        self.home = home
        self.config = config
        self.api_keys = dict(api_keys or {})
        self.default_api_key = default_api_key
        self.catalog = Catalog.open(home)
        self.catalog.conn.execute("PRAGMA busy_timeout = 2000")  # never stall a tick long
        self.system = SystemReader()
        self.procs = ProcessReader()
        self.scraper = DeploymentScraper(config.deployment_window_s)
        self.gpu_status = diagnose() if config.gpu else GpuDiagnosis(
            False, "disabled", "GPU monitoring is turned off.")
        self.nvml: NvmlReader | None = None
        if self.gpu_status.available:
            try:
                self.nvml = NvmlReader()
            except Exception as exc:  # noqa: BLE001 - diagnosis said yes, but it failed now
                self.gpu_status = GpuDiagnosis(False, "nvml-error", f"NVML failed: {exc}")
        self._seq = 0
        self._watched: list[Watched] = []
        self._last_proc = -math.inf
        self._last_scrape = -math.inf
        self._proc_readings: tuple[ProcessReading, ...] = ()
        self._dep_readings: tuple[DeploymentReading, ...] = ()
        self._gpu_procs: dict[int, tuple[GpuProcess, ...]] = {}

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml.close()
            self.nvml = None
        self.catalog.close()

    def api_key_for(self, dep_id: int) -> str | None:
        return self.api_keys.get(dep_id) or self.default_api_key

    def collect(self) -> Sample:
        now_mono = time.monotonic()
        t = time.time()
        errors: list[str] = []
        values: dict[str, float] = {}
        subjects: dict[str, str] = {"sys": "the system"}

        system = self.system.read()
        _put(values, "sys.cpu", system.cpu_pct)
        for i, pct in enumerate(system.per_core):
            values[f"sys.core.{i}"] = pct
        for key, value in (("ram_pct", system.ram_pct), ("ram_used", system.ram_used),
                           ("swap_pct", system.swap_pct), ("disk_read", system.disk_read_bps),
                           ("disk_write", system.disk_write_bps), ("net_rx", system.net_rx_bps),
                           ("net_tx", system.net_tx_bps)):
            _put(values, f"sys.{key}", value)

        list_processes = now_mono - self._last_proc >= 1.0 / PROCESS_HZ
        if list_processes:
            self._last_proc = now_mono
            try:
                self._watched = watched_processes(self.catalog.conn)
            except sqlite3.Error as exc:
                errors.append(f"catalog: {exc}")
            self._proc_readings = tuple(self.procs.read(self._watched, refresh_children=True))
            for p in self._proc_readings:
                prefix = ("job." if p.kind == "job" else "dep.") + str(p.id)
                _put(values, prefix + ".proc_cpu", p.cpu_pct)
                _put(values, prefix + ".rss", p.rss)
        for w in self._watched:
            subjects[w.key] = w.label

        gpus: tuple[GpuReading, ...] = ()
        if self.nvml is not None:
            try:
                gpus = tuple(self._read_gpus(list_processes))
            except Exception as exc:  # noqa: BLE001 - a GPU fell off the bus, say
                errors.append(f"GPU: {exc}")
            for g in gpus:
                prefix = f"gpu.{g.index}"
                subjects[prefix] = f"GPU {g.index} ({g.name})"
                for key, value in (("util", g.util_pct), ("mem_pct", g.mem_pct),
                                   ("mem_used", g.mem_used), ("temp", g.temp_c),
                                   ("power", g.power_w), ("power_limit", g.power_limit_w),
                                   ("sm_clock", g.sm_clock_mhz)):
                    if not math.isnan(value):
                        values[f"{prefix}.{key}"] = value
                if g.processes is not None:
                    values[prefix + ".our_mem"] = float(sum(
                        p.used_bytes or 0 for p in g.processes if p.owner))

        scrape_interval = 1.0 / min(SCRAPE_HZ, self.config.rate_hz)
        if now_mono - self._last_scrape >= scrape_interval * 0.95:
            self._last_scrape = now_mono
            deps = [w for w in self._watched if w.kind == "deployment"]
            self.scraper.forget({w.id for w in deps})
            self._dep_readings = tuple(
                self.scraper.scrape(w.id, w.label.removeprefix("deployment "), w.url,
                                    self.api_key_for(w.id), now_mono) for w in deps)
            for d in self._dep_readings:
                if d.status != "ok":
                    continue
                prefix = f"dep.{d.id}"
                for key, value in (("req_rate", d.req_rate), ("ttft_p50", d.ttft_p50_ms),
                                   ("ttft_p95", d.ttft_p95_ms), ("lat_p50", d.lat_p50_ms),
                                   ("lat_p95", d.lat_p95_ms), ("tok_s", d.tok_s),
                                   ("errors", d.errors_per_s), ("error_rate", d.error_rate_pct),
                                   ("server_error_rate", d.server_error_rate_pct),
                                   ("queue", d.queue), ("running", d.running)):
                    if not math.isnan(value):
                        values[f"{prefix}.{key}"] = value
        self._seq += 1
        return Sample(t, self._seq, system, self.gpu_status, gpus, self._proc_readings,
                      self._dep_readings, values, subjects, errors=tuple(errors))

    def _read_gpus(self, list_processes: bool) -> list[GpuReading]:
        assert self.nvml is not None
        readings = self.nvml.read(processes=list_processes)
        if not list_processes:
            return [replace(g, processes=self._gpu_procs.get(g.index)) for g in readings]
        owners = {os.getpid(): "this app"}
        for w in self._watched:
            for pid in self.procs.family(w.pid):
                owners[pid] = w.label
        out = []
        for g in readings:
            if g.processes is not None:
                g = replace(g, processes=tuple(replace(p, owner=owners.get(p.pid, ""))
                                               for p in g.processes))
                self._gpu_procs[g.index] = g.processes
            out.append(g)
        return out


Listener = Callable[[Sample], None]
AlertListener = Callable[[AlertEvent], None]


class Sampler:
    """Runs a :class:`Collector` on a daemon thread; keeps the rings, the history, the alerts.

    Listeners run on the sampler thread: keep them quick (a GUI emits a signal).
    """

    def __init__(self, home: Home, config: SamplerConfig | None = None, *,
                 api_keys: dict[int, str] | None = None,
                 default_api_key: str | None = None) -> None:
        self.home = home
        self.config = config or SamplerConfig()
        self.store = SeriesStore(self._capacity(self.config.rate_hz))
        self.api_keys: dict[int, str] = dict(api_keys or {})
        self.default_api_key = default_api_key
        self.alerts = AlertEngine(list(self.config.rules), sustain=self.config.alert_sustain,
                                  cooldown_s=self.config.alert_cooldown_s)
        self.latest: Sample | None = None
        self.gpu_status: GpuDiagnosis | None = None
        self.history_rows_written = 0
        self.last_error = ""
        self._listeners: list[Listener] = []
        self._alert_listeners: list[AlertListener] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._flush_now = threading.Event()
        self._flushed = threading.Condition()
        self._flush_count = 0
        self._labels: dict[str, str] = {}

    @staticmethod
    def _capacity(rate_hz: float) -> int:
        return int(min(MAX_RATE_HZ, max(0.1, rate_hz)) * RING_SECONDS) + 16

    # ---- listeners and settings (any thread) ---------------------------------------------

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def add_alert_listener(self, fn: AlertListener) -> None:
        self._alert_listeners.append(fn)

    def set_rate(self, rate_hz: float) -> None:
        rate_hz = min(MAX_RATE_HZ, max(0.1, float(rate_hz)))
        self.config = replace(self.config, rate_hz=rate_hz)
        self.store.resize(self._capacity(rate_hz))
        self._wake.set()

    def set_rules(self, rules: list[AlertRule]) -> None:
        self.config = replace(self.config, rules=tuple(rules))
        self.alerts.set_rules(list(rules))

    def set_retention(self, days: float) -> None:
        self.config = replace(self.config, retention_days=float(days))

    def set_api_key(self, deployment_id: int, key: str | None) -> None:
        if key:
            self.api_keys[deployment_id] = key
        else:
            self.api_keys.pop(deployment_id, None)

    # ---- running ---------------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Sampler:
        if self.is_running():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="llmops-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread; what is still in memory goes to the history first."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Ask the thread to write its finished history intervals now; True once done."""
        if not self.is_running():
            return False
        with self._flushed:
            target = self._flush_count + 1
            self._flush_now.set()
            self._wake.set()
            return self._flushed.wait_for(lambda: self._flush_count >= target, timeout)

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _collector(self) -> Collector:
        return Collector(self.home, self.config, self.api_keys, self.default_api_key)

    def _run(self) -> None:
        try:
            collector = self._collector()
        except Exception as exc:  # noqa: BLE001 - the catalog cannot be opened, say
            self.last_error = f"The monitor could not start: {exc}"
            log.exception("monitor sampler failed to start")
            return
        self.gpu_status = collector.gpu_status
        down = Downsampler(self.config.history_interval_s)
        pending: list[HistoryRow] = []
        last_flush = last_prune = time.monotonic()
        if self.config.history:
            self._prune(collector)
        next_tick = time.monotonic()
        try:
            while not self._stop.is_set():
                collector.api_keys = self.api_keys
                collector.config = self.config
                try:
                    sample = self._tick(collector)
                    if self.config.history:
                        pending += down.add(sample.t, sample.values)
                except Exception as exc:  # noqa: BLE001 - keep sampling; say what broke
                    self.last_error = str(exc)
                    log.exception("monitor sample failed")
                now = time.monotonic()
                if self.config.history and (now - last_flush >= self.config.flush_interval_s
                                            or self._flush_now.is_set()):
                    if self._write(collector, pending):
                        pending = []
                    last_flush = now
                if self._flush_now.is_set():
                    self._flush_now.clear()
                    with self._flushed:
                        self._flush_count += 1
                        self._flushed.notify_all()
                if self.config.history and now - last_prune >= PRUNE_EVERY_S:
                    self._prune(collector)
                    last_prune = now
                next_tick += self.config.interval_s
                delay = next_tick - time.monotonic()
                if delay < 0:  # fell behind (a slow server, say): do not try to catch up
                    next_tick = time.monotonic()
                    delay = 0
                self._wake.wait(delay)
                if self._wake.is_set():
                    self._wake.clear()
                    if not self._stop.is_set() and not self._flush_now.is_set():
                        next_tick = time.monotonic()  # a rate change: start the new pace now
        finally:
            if self.config.history:
                self._write(collector, pending + down.drain())
            collector.close()
            with self._flushed:
                self._flush_count += 1
                self._flushed.notify_all()

    def _tick(self, collector: Collector) -> Sample:
        sample = collector.collect()
        events = self.alerts.evaluate(sample.t, sample.values, sample.subjects)
        if events:
            sample = replace(sample, alerts=tuple(events))
        self.store.add(sample.t, sample.values)
        for prefix, subject in sample.subjects.items():
            self._labels[prefix] = subject
        self.latest = sample
        for event in events:
            if event.state == "firing":
                try:
                    collector.catalog.audit("monitor-alert", details=event.to_json())
                except sqlite3.Error as exc:
                    log.warning("could not write the alert to the audit log: %s", exc)
            for fn in list(self._alert_listeners):
                _call(fn, event)
        for fn in list(self._listeners):
            _call(fn, sample)
        return sample

    def _write(self, collector: Collector, rows: list[HistoryRow]) -> bool:
        if not rows:
            return True
        labels = {r.series: self._labels.get(r.series.rsplit(".", 1)[0], "") for r in rows}
        try:
            self.history_rows_written += write_rows(collector.catalog.conn, rows, labels)
            return True
        except sqlite3.Error as exc:  # busy: keep them for the next flush
            self.last_error = f"history not written yet: {exc}"
            log.warning("monitor history not written (will retry): %s", exc)
            return False

    def _prune(self, collector: Collector) -> None:
        try:
            prune(collector.catalog.conn, time.time() - self.config.retention_days * 86400)
        except sqlite3.Error as exc:
            log.warning("monitor history not pruned: %s", exc)

    # ---- one sample without the thread -------------------------------------------------------

    def sample_once(self) -> Sample:
        """Read twice, one sampling interval apart (rates need two readings), and return
        the second sample. Runs in the caller's thread; writes no history."""
        collector = self._collector()
        try:
            self.gpu_status = collector.gpu_status
            collector.collect()
            time.sleep(max(self.config.interval_s, 0.5))
            collector._last_proc = -math.inf  # list the processes again: CPU % since the first
            collector._last_scrape = -math.inf
            return self._tick(collector)
        finally:
            collector.close()


def _call(fn: Callable[[Any], None], arg: Any) -> None:
    try:
        fn(arg)
    except Exception:  # noqa: BLE001 - a listener's bug must not stop the sampler
        log.exception("monitor listener failed")
