"""The monitor: real psutil figures, a real server's figures under real requests, history
that outlives the catalog connection, alerts in the audit log, the no-GPU diagnosis, and
``llmops doctor`` / ``llmops monitor`` as the user runs them. NVML paths run under the
``gpu`` marker."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from llmops_desktop.catalog import Catalog, JobState
from llmops_desktop.monitor.alerts import AlertEngine, AlertRule, rules_from_settings
from llmops_desktop.monitor.gpu import diagnose
from llmops_desktop.monitor.history import (
    HistoryRow,
    read_history,
    series_labels,
    write_rows,
)
from llmops_desktop.monitor.sampler import Sample, Sampler, SamplerConfig
from llmops_desktop.monitor.scrape import histogram_quantile
from llmops_desktop.paths import Home
from llmops_desktop.settings import Settings

GPU = diagnose()
needs_gpu = pytest.mark.skipif(not GPU.available, reason=f"no NVIDIA GPU: {GPU.message}")


def wait_for(sampler: Sampler, check, timeout: float = 30.0) -> Sample:
    """The first sample (from now on) for which ``check(sample)`` holds."""
    found: list[Sample] = []
    ready = threading.Event()

    def listener(sample: Sample) -> None:
        if not ready.is_set() and check(sample):
            found.append(sample)
            ready.set()

    sampler.add_listener(listener)
    try:
        assert ready.wait(timeout), f"no matching sample in {timeout} s; last error: " \
                                    f"{sampler.last_error!r}; last: {sampler.latest}"
    finally:
        sampler.remove_listener(listener)
    return found[0]


def fast(**kw) -> SamplerConfig:
    return SamplerConfig(**{"rate_hz": 10.0, "history": False, **kw})


# ---- the machine -------------------------------------------------------------------------------

def test_sampler_reads_the_machine_and_our_running_job(home: Home, catalog: Catalog) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * 30_000_000; "
                              "print('ready', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        job = catalog.create_job("demo", {})
        catalog.update_job(job.id, state=JobState.RUNNING, pid=child.pid,
                           pid_started=psutil.Process(child.pid).create_time())
        with Sampler(home, fast()) as sampler:
            sample = wait_for(sampler, lambda s: s.processes and s.seq >= 3)
            keys = sampler.store.keys()
            t, cpu = sampler.store.window("sys.cpu", 0)
    finally:
        child.kill()
        child.wait()
    s = sample.system
    assert s.ram_total == psutil.virtual_memory().total
    assert 0 < s.ram_used < s.ram_total and 0 < s.ram_pct < 100
    assert len(s.per_core) == psutil.cpu_count() and 0 <= s.cpu_pct <= 100
    assert all(not math.isnan(x) and x >= 0 for x in
               (s.disk_read_bps, s.disk_write_bps, s.net_rx_bps, s.net_tx_bps))
    (proc,) = sample.processes
    assert (proc.kind, proc.id, proc.pid) == ("job", job.id, child.pid)
    assert proc.rss > 30_000_000 and proc.cpu_pct >= 0
    assert sample.subjects[f"job.{job.id}"] == f"job #{job.id} demo"
    assert f"job.{job.id}.rss" in keys and "sys.core.0" in keys
    assert len(cpu) >= 3 and list(t) == sorted(t)
    assert json.dumps(sample.to_json())  # what `llmops monitor --json` prints


def test_a_recycled_pid_is_not_taken_for_our_job(home: Home, catalog: Catalog) -> None:
    job = catalog.create_job("demo", {})
    catalog.update_job(job.id, state=JobState.RUNNING, pid=os.getpid(),
                       pid_started=psutil.Process().create_time() - 3600)
    with Sampler(home, fast()) as sampler:
        sample = wait_for(sampler, lambda s: s.seq >= 2)
    assert sample.processes == ()


# ---- a deployment, for real ---------------------------------------------------------------------

@pytest.fixture
def gguf_home(home: Home, demo_gguf_session: Path) -> Home:
    from tests.mirror_fixtures import import_artifact

    with Catalog.open(home) as cat:
        import_artifact(cat, demo_gguf_session, "demo-gguf")
    return home


def test_deployment_figures_from_a_real_server(gguf_home: Home) -> None:
    from tests.serving_fixtures import server_process

    key = "monitor-test-key"
    with server_process(gguf_home.root, "--artifact", "demo-gguf", "--threads", "1",
                        "--name", "mon", env={"LLMOPS_API_KEY": key}) as server:
        dep_id, url = server.info["deployment_id"], server.info["url"]
        with Sampler(gguf_home, fast()) as sampler:
            # the server wants its key for /metrics: said, not guessed
            sample = wait_for(sampler, lambda s: s.deployments)
            (reading,) = sample.deployments
            assert reading.status == "needs-key" and "API key" in reading.message
            assert sample.subjects[f"dep.{dep_id}"] == "deployment mon"
            sampler.set_api_key(dep_id, key)
            wait_for(sampler, lambda s: s.deployments and s.deployments[0].status == "ok")
            headers = {"Authorization": f"Bearer {key}"}
            for i in range(4):
                r = requests.post(url + "/v1/completions", headers=headers, timeout=60,
                                  json={"model": "mon", "prompt": f"Hello {i}",
                                        "max_tokens": 8, "temperature": 0})
                assert r.status_code == 200, r.text
            bad = requests.post(url + "/v1/completions", headers=headers, timeout=60,
                                json={"model": "nope", "prompt": "Hi", "max_tokens": 2})
            assert bad.status_code == 404

            def served(s: Sample) -> bool:
                d = s.deployments[0] if s.deployments else None
                return (d is not None and d.requests_total >= 5 and
                        s.values.get(f"dep.{dep_id}.rss", 0) > 0)

            sample = wait_for(sampler, served)
            d = sample.deployments[0]
            assert d.id == dep_id and d.name == "mon" and d.status == "ok"
            assert d.req_rate > 0 and d.tok_s > 0
            assert 0 < d.ttft_p50_ms <= d.ttft_p95_ms and 0 < d.lat_p50_ms <= d.lat_p95_ms
            assert d.ttft_p50_ms <= d.lat_p95_ms
            assert d.error_rate_pct == pytest.approx(20.0)  # 1 of 5 requests failed
            assert d.queue == 0 and d.running == 0
            values = sample.values
            assert values[f"dep.{dep_id}.lat_p95"] == d.lat_p95_ms
            proc = next(p for p in sample.processes if p.kind == "deployment")
            assert proc.pid == server.proc.pid and proc.rss > 10_000_000
            # the figures cover a window: the rings hold their history for the charts
            t, rate = sampler.store.window(f"dep.{dep_id}.req_rate", 0)
            assert len(rate) == len(t) >= 1 and rate.max() > 0


# ---- history ------------------------------------------------------------------------------------

def test_history_survives_closing_and_reopening_the_catalog(home: Home) -> None:
    config = fast(history=True, history_interval_s=0.5, flush_interval_s=0.5)
    t0 = time.time()
    with Sampler(home, config) as sampler:
        wait_for(sampler, lambda s: s.t - t0 > 2.0)
        assert sampler.flush()
    assert sampler.history_rows_written > 0
    with Catalog.open(home) as cat:  # a new connection, as after a restart
        history = read_history(cat.conn, t0 - 1, time.time() + 1)
        labels = series_labels(cat.conn)
    t, cpu = history["sys.cpu"]
    assert len(t) >= 4 and list(t) == sorted(t) and ((0 <= cpu) & (cpu <= 100)).all()
    assert "sys.ram_pct" in history and "sys.core.0" not in history  # per-core: live only
    assert labels["sys.cpu"] == "the system"
    # one row per series per interval, never one per sample
    with Catalog.open(home) as cat:
        per_interval = cat.conn.execute(
            "SELECT MAX(c) FROM (SELECT COUNT(*) AS c FROM monitor_history GROUP BY "
            "series_id, ts)").fetchone()[0]
        n = cat.conn.execute("SELECT MAX(n) FROM monitor_history").fetchone()[0]
    assert per_interval == 1 and n >= 3


def test_history_older_than_the_retention_is_pruned(home: Home, catalog: Catalog) -> None:
    now = time.time()
    write_rows(catalog.conn, [HistoryRow("sys.cpu", now - 3 * 86400, 50, 40, 60, 20),
                              HistoryRow("sys.cpu", now - 600, 30, 20, 40, 20),
                              HistoryRow("gpu.0.temp", now - 5 * 86400, 70, 70, 70, 20)],
               {"sys.cpu": "the system", "gpu.0.temp": "GPU 0"})
    with Sampler(home, fast(history=True, retention_days=1)) as sampler:
        wait_for(sampler, lambda s: s.seq >= 1)
    history = read_history(catalog.conn, now - 10 * 86400, now - 60)
    assert list(history) == ["sys.cpu"] and list(history["sys.cpu"][1]) == [30]
    assert "gpu.0.temp" not in series_labels(catalog.conn)


# ---- alerts -------------------------------------------------------------------------------------

def test_alert_fires_once_and_lands_in_the_audit_log(home: Home, catalog: Catalog) -> None:
    settings = Settings().updated(alert_ram_pct=1)  # below what any machine uses
    config = fast(rules=tuple(rules_from_settings(settings)))
    fired = []
    with Sampler(home, config) as sampler:
        sampler.add_alert_listener(fired.append)
        wait_for(sampler, lambda s: s.seq >= 8)
    ram = [e for e in fired if e.rule == "alert_ram_pct"]
    assert len(ram) == 1, ram  # hysteresis and cooldown: once, not per sample
    event = ram[0]
    assert event.state == "firing" and event.series == "sys.ram_pct" and event.value >= 1
    assert "RAM use" in event.message and "threshold of 1%" in event.message
    audit = [e for e in catalog.audit_entries() if e.action == "monitor-alert"]
    assert len(audit) == 1 and audit[0].details["series"] == "sys.ram_pct"
    assert audit[0].details["threshold"] == 1


def test_alert_hysteresis_and_cooldown() -> None:
    rule = AlertRule("alert_gpu_temp_c", "temperature", "gpu", "temp", 80, "°C")
    engine = AlertEngine([rule], sustain=2, cooldown_s=60)
    subjects = {"gpu.0": "GPU 0 (test)"}

    def feed(t: float, v: float) -> list[str]:
        return [e.state for e in engine.evaluate(t, {"gpu.0.temp": v, "gpu.0.util": 99},
                                                 subjects)]

    assert feed(0, 85) == []  # one sample above is not enough
    assert feed(1, 86) == ["firing"]
    assert feed(2, 90) == []
    assert feed(3, 79) == []  # within the margin: still firing
    assert feed(4, 70) == ["cleared"]
    assert feed(5, 85) == [] and feed(6, 85) == []  # cooldown: no second firing
    assert feed(7, 70) == []  # …nor a cleared for an alert never shown
    assert feed(100, 85) == [] and feed(101, 85) == ["firing"]
    engine.set_rules([])
    assert feed(102, 99) == []


# ---- /metrics arithmetic -------------------------------------------------------------------------

def test_histogram_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.1: 10.0, 0.5: 30.0, 1.0: 40.0, math.inf: 40.0}
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.9)
    assert histogram_quantile(0.99, {1.0: 1.0, math.inf: 5.0}) == 1.0
    assert math.isnan(histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}))


# ---- no GPU -------------------------------------------------------------------------------------

@pytest.mark.skipif(GPU.available, reason="this machine has a usable NVIDIA GPU")
def test_without_a_gpu_the_diagnosis_says_why_and_the_rest_works(home: Home) -> None:
    assert GPU.reason in ("no-library", "driver-not-loaded", "no-permission", "no-device",
                          "version-mismatch", "nvml-error", "device-error")
    assert len(GPU.message) > 40 and not GPU.devices
    with Sampler(home, fast()) as sampler:
        sample = wait_for(sampler, lambda s: s.seq >= 2)
    assert sample.gpus == () and sample.gpu.reason == GPU.reason
    assert sample.values["sys.ram_pct"] > 0
    assert not [k for k in sample.values if k.startswith("gpu.")]


def test_without_the_nvml_binding_the_diagnosis_says_to_install_it() -> None:
    code = ("import sys, json; sys.modules['pynvml'] = None\n"
            "from llmops_desktop.monitor.gpu import diagnose\n"
            "print(json.dumps(diagnose().to_json()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    d = json.loads(out)
    assert d["available"] is False and d["reason"] == "no-binding"
    assert "pip install nvidia-ml-py" in d["message"]


# ---- the commands, as the user runs them ----------------------------------------------------------

def _llmops(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LLMOPS_HOME": str(home.root)}
    return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def test_llmops_doctor_json(home: Home) -> None:
    proc = _llmops(home, "doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["usable"] is True and report["problems"] == []
    assert report["catalog"]["ok"] and report["catalog"]["schema"] == \
        report["catalog"]["app_schema"]
    assert report["home"]["path"] == str(home.root) and report["home"]["writable"]
    assert report["home"]["disk_free"] > 0
    assert report["gpu"]["available"] == GPU.available
    assert report["gpu"]["reason"] == GPU.reason
    import torch

    assert report["torch"]["version"] == torch.__version__
    assert report["torch"]["cuda_available"] == torch.cuda.is_available()
    assert isinstance(report["llama_cpp"]["gpu_offload"], bool)
    human = _llmops(home, "doctor")
    assert human.returncode == 0 and "The app is usable." in human.stdout
    assert "torch:" in human.stdout and "llama.cpp:" in human.stdout


def test_llmops_doctor_says_when_the_catalog_is_unusable(home: Home) -> None:
    home.catalog_path.write_bytes(b"this is not a database" * 100)
    proc = _llmops(home, "doctor", "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 7 and report["usable"] is False
    assert "cannot be opened" in report["problems"][0]


def test_llmops_monitor_json_once(home: Home) -> None:
    proc = _llmops(home, "monitor", "--json", "--once")
    assert proc.returncode == 0, proc.stderr
    sample = json.loads(proc.stdout)
    assert sample["system"]["ram_total"] == psutil.virtual_memory().total
    assert sample["system"]["disk_read_bps"] is not None  # a rate: two readings were taken
    assert sample["values"]["sys.cpu"] >= 0
    assert sample["gpu_status"]["reason"] == GPU.reason
    assert len(sample["gpus"]) == len(GPU.devices)


# ---- with an NVIDIA GPU ---------------------------------------------------------------------------

@pytest.mark.gpu
@needs_gpu
def test_nvml_diagnosis_lists_each_device() -> None:
    assert GPU.reason == "ok" and GPU.driver_version and GPU.cuda_version
    for d in GPU.devices:
        assert d.name and d.uuid.startswith("GPU-") and 0 < d.memory_free <= d.memory_total


@pytest.mark.gpu
@needs_gpu
def test_sampler_reads_every_gpu(home: Home) -> None:
    with Sampler(home, fast()) as sampler:
        sample = wait_for(sampler, lambda s: s.seq >= 3 and
                          all(g.processes is not None for g in s.gpus))
    assert len(sample.gpus) == len(GPU.devices)
    for g in sample.gpus:
        assert not g.error
        assert 0 <= g.util_pct <= 100 and 0 < g.mem_total and 0 <= g.mem_used <= g.mem_total
        assert 0 < g.temp_c < 120 or math.isnan(g.temp_c)
        assert g.power_w > 0 or math.isnan(g.power_w)
        assert g.sm_clock_mhz >= 0 or math.isnan(g.sm_clock_mhz)
        assert sample.values[f"gpu.{g.index}.mem_pct"] == pytest.approx(g.mem_pct)
        assert sample.subjects[f"gpu.{g.index}"].startswith(f"GPU {g.index} (")


@pytest.mark.gpu
@needs_gpu
def test_our_process_on_the_gpu_is_named(home: Home) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch here has no CUDA")
    block = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # noqa: F841
    with Sampler(home, fast()) as sampler:
        sample = wait_for(sampler, lambda s: any(
            p.owner == "this app" for g in s.gpus for p in g.processes or ()))
    ours = [p for g in sample.gpus for p in g.processes or () if p.owner == "this app"]
    assert ours[0].pid == os.getpid()
    assert ours[0].used_bytes is None or ours[0].used_bytes >= 256 * 2**20


@pytest.mark.gpu
@needs_gpu
def test_llmops_doctor_lists_the_gpus(home: Home) -> None:
    report = json.loads(_llmops(home, "doctor", "--json").stdout)
    assert report["gpu"]["available"] and report["gpu"]["driver_version"]
    assert [d["name"] for d in report["gpu"]["devices"]] == [d.name for d in GPU.devices]
