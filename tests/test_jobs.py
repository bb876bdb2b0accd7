"""Jobs: child processes that report JSON lines, cancel cleanly, and never leave half-imports."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import time
from pathlib import Path

from importing import store_snapshot

from llmops_desktop.catalog import Catalog, JobState
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Log, Progress, Result, event_to_line, parse_event


def make_big_model(folder: Path, size: int = 2 * 1024**3) -> Path:
    """A valid HF folder whose weights are one sparse safetensors file of ``size`` bytes."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                    "model_type": "llama"}))
    header = json.dumps({"w": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}).encode()
    n = size - 8 - len(header)
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    n = size - 8 - len(header)
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    with open(folder / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header)
        fh.truncate(8 + len(header) + n)
    return folder


def _start_and_wait_for_progress(catalog: Catalog, path: Path):
    run = runner.start(catalog, "import", {"path": str(path)})
    assert run.process.stdout is not None
    for raw in run.process.stdout:
        event = parse_event(raw)
        if (isinstance(event, Progress) and event.unit == "bytes" and event.done > 0
                and "model.safetensors" in event.message):  # the big file is streaming
            return run
    raise AssertionError("the import never reported progress")


def test_events_round_trip_as_json_lines() -> None:
    for event in (Progress(5, 10, "bytes", "x"), Log("hi", "warning"), Result({"a": 1}),
                  Error("CorruptFileError", "bad")):
        assert parse_event(event_to_line(event)) == event
    assert parse_event("not json") is None and parse_event('{"type": "bogus"}') is None


def test_cancel_stops_the_child_and_keeps_nothing(catalog, tmp_path) -> None:
    src = make_big_model(tmp_path / "big")
    before = store_snapshot(catalog)
    run = _start_and_wait_for_progress(catalog, src)
    job = runner.cancel(catalog, run.job_id)
    assert job.state is JobState.CANCELLED
    assert run.process.wait(timeout=15) == 130  # it stopped itself, cleanly
    assert store_snapshot(catalog) == before
    assert not catalog.home.job_staging_dir(run.job_id).exists()
    assert "Cancelled" in job.log_path.read_text()


def test_sigkill_leaves_no_artifact_and_no_partial_files(catalog, tmp_path) -> None:
    src = make_big_model(tmp_path / "big")
    before = store_snapshot(catalog)
    run = _start_and_wait_for_progress(catalog, src)
    staging = catalog.home.job_staging_dir(run.job_id)
    assert any(staging.rglob("*.safetensors"))  # partial bytes were being written
    os.kill(run.process.pid, signal.SIGKILL)
    job = run.wait()
    assert job.state is JobState.INTERRUPTED and "SIGKILL" in job.error
    assert not staging.exists()
    assert store_snapshot(catalog) == before


def test_next_start_marks_orphaned_jobs_interrupted(home, tmp_path) -> None:
    """The app died with its job: the job's process is killed, nobody reaps it. The next
    start (recover) marks it interrupted and removes its partial files."""
    src = make_big_model(tmp_path / "big")
    catalog = Catalog.open(home)
    job = runner.submit(catalog, "import", {"path": str(src)})
    proc = subprocess.Popen(runner.child_command(job.id), env=runner.child_env(home),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    for raw in proc.stdout:
        if isinstance(parse_event(raw), Progress) and catalog.job(job.id).state is JobState.RUNNING:
            if any(home.job_staging_dir(job.id).rglob("*.safetensors")):
                break
    proc.kill()
    proc.wait()
    catalog.close()
    assert Catalog.open(home).job(job.id).state is JobState.RUNNING  # nobody noticed yet

    with Catalog.open(home) as fresh:
        marked = runner.recover(fresh)
        assert [j.id for j in marked] == [job.id]
        assert fresh.job(job.id).state is JobState.INTERRUPTED
        assert not home.job_staging_dir(job.id).exists()
        assert fresh.counts()["artifacts"] == 0


def test_recover_leaves_running_jobs_alone(catalog, tmp_path) -> None:
    src = make_big_model(tmp_path / "big")
    run = _start_and_wait_for_progress(catalog, src)
    try:
        assert runner.recover(catalog) == []
        assert catalog.job(run.job_id).state is JobState.RUNNING
        assert catalog.home.job_staging_dir(run.job_id).exists()
    finally:
        runner.cancel(catalog, run.job_id)


def test_a_job_outlives_its_reader(catalog, demo_model_dir) -> None:
    """The window closes mid-job: stdout breaks, the job still finishes and records it."""
    run = runner.start(catalog, "import", {"path": str(demo_model_dir)})
    assert run.process.stdout is not None
    run.process.stdout.close()
    deadline = time.monotonic() + 60
    while catalog.job(run.job_id).state in (JobState.QUEUED, JobState.RUNNING):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert catalog.job(run.job_id).state is JobState.SUCCEEDED
    assert catalog.counts()["artifacts"] == 1


def test_cancel_a_queued_job_that_never_started(catalog) -> None:
    job = runner.submit(catalog, "import", {"path": "/x"})
    assert runner.cancel(catalog, job.id).state is JobState.CANCELLED


def test_recover_removes_a_store_folder_no_artifact_names(catalog, demo_model_dir) -> None:
    """Killed between the rename into the store and the commit: the folder is swept."""
    from importing import run_import

    event, _ = run_import(catalog, demo_model_dir)
    kept = catalog.artifact(event.data["artifact_id"]).path
    orphan = catalog.home.models_dir / "demo-tiny-llama-0123456789ab"
    orphan.mkdir()
    (orphan / "model.safetensors").write_bytes(b"half")
    runner.recover(catalog)
    assert not orphan.exists() and kept.exists()
