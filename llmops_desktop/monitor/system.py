"""The machine through psutil: CPU, RAM, swap, disk and network rates, and our processes.

Rates (disk and network bytes per second) come from the difference of psutil's cumulative
counters between two readings; CPU percentages from psutil's own between-calls
accounting. Each of our running jobs and servers (the catalog's ``jobs`` and
``deployments`` rows in state running) is followed by pid, with its child processes: a
recycled pid is never mistaken for ours.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import psutil


@dataclass(frozen=True)
class SystemReading:
    cpu_pct: float
    per_core: tuple[float, ...]
    ram_used: int
    ram_total: int
    ram_pct: float
    swap_used: int
    swap_total: int
    swap_pct: float
    disk_read_bps: float  # NaN on the first reading (no previous counters yet)
    disk_write_bps: float
    net_rx_bps: float
    net_tx_bps: float

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


class SystemReader:
    """Reads the machine; the first reading has no rates yet (NaN)."""

    def __init__(self) -> None:
        self._prev: tuple[float, Any, Any] | None = None
        psutil.cpu_percent(percpu=True)  # starts psutil's accounting

    def read(self) -> SystemReading:
        now = time.monotonic()
        per_core = tuple(psutil.cpu_percent(percpu=True))
        vm = psutil.virtual_memory()
        sw = psutil.swap_memory()
        disk = _safe(psutil.disk_io_counters)
        net = _safe(psutil.net_io_counters)
        rates = [math.nan] * 4
        if self._prev is not None:
            t0, disk0, net0 = self._prev
            dt = now - t0
            if dt > 0:
                if disk is not None and disk0 is not None:
                    rates[0] = max(0.0, (disk.read_bytes - disk0.read_bytes) / dt)
                    rates[1] = max(0.0, (disk.write_bytes - disk0.write_bytes) / dt)
                if net is not None and net0 is not None:
                    rates[2] = max(0.0, (net.bytes_recv - net0.bytes_recv) / dt)
                    rates[3] = max(0.0, (net.bytes_sent - net0.bytes_sent) / dt)
        self._prev = (now, disk, net)
        return SystemReading(
            cpu_pct=sum(per_core) / len(per_core) if per_core else math.nan, per_core=per_core,
            ram_used=int(vm.total - vm.available), ram_total=int(vm.total),
            ram_pct=float(vm.percent), swap_used=int(sw.used), swap_total=int(sw.total),
            swap_pct=float(sw.percent), disk_read_bps=rates[0], disk_write_bps=rates[1],
            net_rx_bps=rates[2], net_tx_bps=rates[3])


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 - no disks/NICs visible (some containers)
        return None


# ---- our processes ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Watched:
    """A process of ours: a running job or a running deployment's server."""

    kind: str  # "job" or "deployment"
    id: int
    label: str
    pid: int
    started: float | None  # process start (epoch s) when known, to spot a recycled pid
    url: str = ""  # deployments: where /metrics is

    @property
    def key(self) -> str:
        return f"{'job' if self.kind == 'job' else 'dep'}.{self.id}"


@dataclass(frozen=True)
class ProcessReading:
    kind: str
    id: int
    label: str
    pid: int
    cpu_pct: float  # of one core, children included (can pass 100 on several cores)
    rss: int
    threads: int
    children: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _parse_ts(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=timezone.utc).timestamp()
    except ValueError:
        return None


def watched_processes(conn: sqlite3.Connection) -> list[Watched]:
    """The running jobs and deployments the catalog knows, with their pids."""
    out = []
    for job_id, kind, pid, pid_started in conn.execute(
            "SELECT id, kind, pid, pid_started FROM jobs WHERE state = 'running' "
            "AND pid IS NOT NULL ORDER BY id"):
        out.append(Watched("job", int(job_id), f"job #{job_id} {kind}", int(pid), pid_started))
    try:
        rows = conn.execute("SELECT id, name, pid, url, started_at FROM deployments WHERE "
                            "state = 'running' ORDER BY id").fetchall()
    except sqlite3.OperationalError:  # a catalog without the serving tables
        rows = []
    for dep_id, name, pid, url, started_at in rows:
        out.append(Watched("deployment", int(dep_id), f"deployment {name}", int(pid or 0),
                           _parse_ts(started_at), url or ""))
    return out


class ProcessReader:
    """CPU and RSS of watched processes; keeps psutil handles between readings so CPU
    percentages cover the time since the last one."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._children: dict[int, list[psutil.Process]] = {}

    def _process(self, w: Watched) -> psutil.Process | None:
        proc = self._procs.get(w.pid)
        try:
            if proc is None or not proc.is_running():
                proc = psutil.Process(w.pid)
                created = proc.create_time()
                if w.kind == "job" and w.started is not None and abs(created - w.started) > 1.0:
                    return None
                if w.kind == "deployment" and w.started is not None and created > w.started + 1:
                    return None  # started after the server reported running: not it
                proc.cpu_percent(None)
                self._procs[w.pid] = proc
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            self._procs.pop(w.pid, None)
            return None

    def read(self, watched: list[Watched], *, refresh_children: bool) -> list[ProcessReading]:
        out = []
        live = set()
        for w in watched:
            if not w.pid:
                continue
            proc = self._process(w)
            if proc is None:
                continue
            live.add(w.pid)
            try:
                if refresh_children or w.pid not in self._children:
                    known = {c.pid: c for c in self._children.get(w.pid, [])}
                    kids = []
                    for c in proc.children(recursive=True):
                        if c.pid not in known:
                            c.cpu_percent(None)
                        kids.append(known.get(c.pid, c))
                    self._children[w.pid] = kids
                with proc.oneshot():
                    cpu = proc.cpu_percent(None)
                    rss = proc.memory_info().rss
                    threads = proc.num_threads()
                kids = self._children[w.pid]
                for c in kids:
                    try:
                        cpu += c.cpu_percent(None)
                        rss += c.memory_info().rss
                    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                        pass
                out.append(ProcessReading(w.kind, w.id, w.label, w.pid, cpu, int(rss), threads,
                                          len(kids)))
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(w.pid, None)
        for pid in set(self._procs) - live:
            self._procs.pop(pid, None)
            self._children.pop(pid, None)
        return out

    def family(self, pid: int) -> set[int]:
        """A watched pid and its known children (to tell our processes on a GPU)."""
        return {pid, *(c.pid for c in self._children.get(pid, []))}


def own_pid() -> int:
    return os.getpid()
