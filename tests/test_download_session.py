"""The download state machine without a window, driven the way a front end drives it: real
download jobs (child processes) against the app's own mirror serving another data home,
throttled so that Pause and Cancel land mid-file. Pause keeps the partial files and Resume
finishes with the bytes already there; Cancel deletes them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hub_faults import Faults, serve_home

from llmops_desktop.acquire.download import discard_download, list_partial_downloads
from llmops_desktop.acquire.hub import HubClient
from llmops_desktop.acquire.session import DownloadSession
from llmops_desktop.catalog import ArtifactState, Catalog
from llmops_desktop.errors import ConflictError
from llmops_desktop.importer import import_model, inspect_source
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Progress
from llmops_desktop.paths import Home
from llmops_desktop.settings import Settings, save_settings

SIZE = 4 << 20  # four 1 MiB response chunks: progress arrives in steps
FILES = ["config.json", "model.safetensors"]


def _model_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(  # the name makes each model different
        {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "_name": name}))
    header = json.dumps({"w": {"dtype": "U8", "shape": [SIZE], "data_offsets": [0, SIZE]}})
    header += " " * (-len(header) % 8)
    with open(folder / "model.safetensors", "wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header.encode())
        fh.write(bytes(range(256)) * (SIZE // 256))
    return folder


@pytest.fixture
def hub(tmp_path: Path):
    src = Home.resolve(tmp_path / "hub-home")
    with Catalog.open(src) as cat:
        for name in ("acme/one", "acme/two"):
            for _ in import_model(cat, inspect_source(_model_folder(tmp_path, name[5:]),
                                                      name=name),
                                  staging=src.job_staging_dir(0)):
                pass
    faults = Faults()
    server = serve_home(src.root, faults)
    yield server.url, faults
    server.stop()


class Driver:
    """What a front end does: start and cancel jobs, read their events, delete files."""

    def __init__(self, home: Home, catalog: Catalog) -> None:
        self.home, self.catalog, self.runs = home, catalog, {}
        self.session = DownloadSession(start_job=self.start_job, cancel_job=self.cancel_job,
                                       discard_files=self.discard_files,
                                       job_record=catalog.job)
        self.states: list[str] = []
        self.relisted = 0
        self.session.changed.connect(lambda entry, _announce: self.states.append(entry.state))
        self.session.relist.connect(self.relist)

    def start_job(self, params: dict) -> int:
        run = runner.start(self.catalog, "download", params)
        self.runs[run.job_id] = run
        return run.job_id

    def cancel_job(self, job_id: int) -> None:
        runner.cancel(self.catalog, job_id)

    def discard_files(self, key: str) -> None:
        discard_download(self.home, key)
        self.session.discarded(key)

    def relist(self) -> None:
        self.relisted += 1

    def follow(self, job_id: int, on_file=None) -> str:
        """Feed the job's events to the session until it ends (``on_file(entry)`` once
        the big file is in flight); then tell it how the job ended."""
        run, fired = self.runs[job_id], False
        for event in run.events():
            if isinstance(event, Progress):
                self.session.job_progress(job_id, event)
                entry = self.session.entry_for_job(job_id)
                if (on_file and not fired and entry is not None
                        and (entry.detail or {}).get("file") == "model.safetensors"):
                    fired = True
                    on_file(entry)
        state = run.wait().state.value
        self.session.job_finished(job_id, state)
        return state


def test_pause_resume_and_cancel(home, catalog, hub) -> None:
    url, faults = hub
    save_settings(home.settings_path, Settings().updated(offline=False, hf_endpoint=url))
    client = HubClient(url, None, offline=False)
    d = Driver(home, catalog)
    faults.bytes_per_second = 1 << 20  # 4 MiB in about 4 s: time to pause mid-file

    commit = client.snapshot("acme/one", "main").commit
    entry = d.session.request(url, "acme/one", commit, FILES, name="one-dl")
    assert entry.state == "starting" and entry.params["files"] == FILES
    with pytest.raises(ConflictError):  # one job per download at a time
        d.session.request(url, "acme/one", commit, FILES)
    state = d.follow(entry.job_id, on_file=lambda e: d.session.act(e.key, "pause"))
    assert state == "cancelled" and entry.state == "paused" and d.relisted == 1
    assert d.states[:4] == ["starting", "downloading", "pausing", "paused"]
    (partial,) = list_partial_downloads(home)
    d.session.partials_listed([partial], url)
    assert entry.done == partial.bytes_on_disk and 0 < entry.done < entry.total

    # A second front end (a new window, the CLI) finds it on disk, paused.
    other = Driver(home, catalog)
    other.session.partials_listed(list_partial_downloads(home), url)
    assert other.session.entries[entry.key].state == "paused"

    faults.bytes_per_second = None
    first_job = entry.job_id
    d.session.act(entry.key, "resume")
    assert entry.state == "starting" and entry.job_id != first_job
    assert d.follow(entry.job_id) == "succeeded"
    assert entry.state == "done" and entry.ref.startswith("one-dl")
    artifact = catalog.artifact(entry.artifact_id)
    assert artifact.state is ArtifactState.READY
    assert {f.relpath for f in catalog.files(artifact.id)} == set(FILES)
    assert list_partial_downloads(home) == []
    d.session.partials_listed([], url)
    assert entry.key in d.session.entries  # a finished download stays until cleared
    d.session.act(entry.key, "clear")
    assert entry.key not in d.session.entries

    # Cancel: stops the job and deletes what arrived; the entry goes.
    faults.bytes_per_second = 1 << 20
    commit = client.snapshot("acme/two", "main").commit
    removed = []
    d.session.removed.connect(removed.append)
    two = d.session.request(url, "acme/two", commit, FILES)
    assert d.follow(two.job_id, on_file=lambda e: d.session.act(e.key, "cancel")) == "cancelled"
    assert removed == [two.key] and two.key not in d.session.entries
    assert list_partial_downloads(home) == [] and len(catalog.artifacts()) == 1


def test_a_job_that_cannot_start_fails_on_its_entry(home, catalog) -> None:
    def refuse(_params: dict) -> int:
        raise ConflictError("The catalog is locked by another program.")

    session = DownloadSession(start_job=refuse, cancel_job=lambda _id: None,
                              discard_files=lambda _key: None, job_record=catalog.job)
    entry = session.request("http://127.0.0.1:9", "acme/x", "0" * 40, ["a.json"])
    assert entry.state == "failed" and "locked" in entry.error and entry.job_id is None
    assert session.entries[entry.key] is entry and not session.busy
