"""Downloads through our own mirror on 127.0.0.1 as the hub: verified, resumable, and
every fault ending in a clear message with nothing half-registered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hub_faults import Faults, serve_home
from importing import sha256
from test_jobs import make_big_model

from llmops_desktop.catalog import Catalog
from llmops_desktop.importer import import_model, inspect_source
from llmops_desktop.paths import Home

NETGUARD = Path(__file__).parent / "netguard"


def _import(home: Home, path: Path, name: str) -> None:
    with Catalog.open(home) as catalog:
        for _ in import_model(catalog, inspect_source(path, name=name),
                              staging=home.job_staging_dir(0)):
            pass


@pytest.fixture(scope="module")
def source_home(tmp_path_factory, demo_model_session, demo_gguf_session) -> Home:
    """The colleague's catalog that the mirror serves."""
    home = Home.resolve(tmp_path_factory.mktemp("source-home"))
    _import(home, demo_model_session, "acme/tiny-llama")
    _import(home, demo_gguf_session, "acme/tiny-gguf")
    big = make_big_model(tmp_path_factory.mktemp("big") / "big", size=48 * 1024 * 1024)
    with open(big / "model.safetensors", "r+b") as fh:  # not all zeros: real bytes to check
        fh.seek(4096)
        fh.write(os.urandom(1 << 20))
    _import(home, big, "acme/big")
    return home


@pytest.fixture
def hub(source_home):
    faults = Faults()
    server = serve_home(source_home.root, faults)
    server.faults = faults
    yield server
    server.stop()


def llmops(home: Home, *args: str, env: dict | None = None, ok: bool = True):
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def online(home):
    llmops(home, "settings", "offline", "off")
    return home


def _no_leftovers(home: Home) -> None:
    with Catalog.open(home) as catalog:
        assert catalog.counts()["artifacts"] == 0
    assert not any(home.staging_dir.iterdir())


def test_download_through_the_mirror(online, hub, source_home) -> None:
    home = online
    files = json.loads(llmops(home, "download", "acme/tiny-llama", "--endpoint", hub.url,
                              "--list", "--json").stdout)
    assert {f["path"] for f in files["files"]} >= {"config.json", "model.safetensors"}
    out = json.loads(llmops(home, "download", "acme/tiny-llama", "--endpoint", hub.url,
                            "--json").stdout)
    assert out["model"] == "acme/tiny-llama" and out["kind"] == "hf"
    md = out["metadata"]
    assert md["endpoint"] == hub.url and md["repo_id"] == "acme/tiny-llama"
    assert len(md["commit"]) == 40 and md["downloaded_at"].endswith("Z")
    assert out["license"] == "apache-2.0"
    assert out["source"] == f"hub:{hub.url}/acme/tiny-llama@{md['commit']}"
    with Catalog.open(home) as mine, Catalog.open(source_home) as theirs:
        src = theirs.resolve("acme/tiny-llama")
        assert [(f.relpath, f.sha256) for f in mine.files(out["id"])] == \
               [(f.relpath, f.sha256) for f in theirs.files(src.id)]
        assert mine.audit_entries(artifact_id=out["id"])[0].action == "download"
    assert not any(home.downloads_dir.iterdir())  # partial folder gone once registered
    again = llmops(home, "download", "acme/tiny-llama", "--endpoint", hub.url, ok=False)
    assert again.returncode == 4 and "already in the catalog" in again.stderr


def test_choose_one_file_out_of_a_repo(online, hub) -> None:
    out = json.loads(llmops(online, "download", "acme/tiny-gguf", "--endpoint", hub.url,
                            "--include", "*.gguf", "--json").stdout)
    assert out["kind"] == "gguf" and out["metadata"]["quantization"] == "F16"
    with Catalog.open(online) as catalog:
        assert [f.relpath for f in catalog.files(out["id"])] == ["demo-f16.gguf"]
    none = llmops(online, "download", "acme/tiny-gguf", "--endpoint", hub.url,
                  "--include", "*.safetensors", ok=False)
    assert none.returncode == 5 and "No file" in none.stderr


def test_killed_download_resumes_with_only_the_remainder(online, hub) -> None:
    hub.faults.bytes_per_second = 6e6
    with Catalog.open(online) as catalog:
        from llmops_desktop.jobs import runner

        run = runner.start(catalog, "download", {"repo_id": "acme/big", "endpoint": hub.url})
        part = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            parts = list(online.downloads_dir.rglob("model.safetensors.part"))
            if parts and parts[0].stat().st_size > 4 * 1024 * 1024:
                part = parts[0]
                break
            time.sleep(0.05)
        assert part is not None, "the download never got going"
        os.kill(run.process.pid, signal.SIGKILL)
        assert run.wait().state.value == "interrupted"
    have = part.stat().st_size
    assert 0 < have < 48 * 1024 * 1024
    hub.faults.sent.clear()
    hub.faults.range_starts.clear()
    hub.faults.bytes_per_second = None
    out = json.loads(llmops(online, "download", "acme/big", "--endpoint", hub.url,
                            "--json").stdout)
    assert hub.faults.sent["model.safetensors"] == 48 * 1024 * 1024 - have
    assert ("model.safetensors", have) in hub.faults.range_starts
    with Catalog.open(online) as catalog:
        f = {x.relpath: x for x in catalog.files(out["id"])}["model.safetensors"]
        assert f.sha256 == sha256(Path(out["path"]) / "model.safetensors")
    log = llmops(online, "jobs", "log", str(out["job_id"])).stdout
    assert f"resuming model.safetensors at byte {have:,}" in log


def test_dropped_connection_is_resumed_with_range(online, hub) -> None:
    hub.faults.drop_after = 3 * 1024 * 1024
    out = json.loads(llmops(online, "download", "acme/big", "--endpoint", hub.url,
                            "--json").stdout)
    starts = [s for p, s in hub.faults.range_starts if p == "model.safetensors"]
    assert starts[0] == 0 and starts[1] >= 3 * 1024 * 1024 - 65536 and len(starts) == 2
    assert out["size_bytes"] > 48 * 1024 * 1024 - 1


def test_wrong_checksum_fails_and_keeps_nothing(online, hub) -> None:
    hub.faults.corrupt = True
    bad = llmops(online, "download", "acme/tiny-llama", "--endpoint", hub.url, ok=False)
    assert bad.returncode == 5 and "arrived damaged" in bad.stderr and "sha256" in bad.stderr
    _no_leftovers(online)
    assert not list(online.downloads_dir.rglob("*.part"))
    jobs = json.loads(llmops(online, "jobs", "--json").stdout)
    assert jobs[0]["state"] == "failed" and "damaged" in jobs[0]["error"]


def test_refused_credentials(online, hub) -> None:
    hub.faults.status = 403
    bad = llmops(online, "download", "acme/tiny-llama", "--endpoint", hub.url, ok=False)
    assert bad.returncode == 9 and "token" in bad.stderr
    _no_leftovers(online)


def test_token_protected_mirror_and_the_token_stays_secret(online, source_home) -> None:
    token = "hf_SeCrEt_0123456789abcdef"
    server = serve_home(source_home.root, Faults(), token=token)
    try:
        bad = llmops(online, "download", "acme/tiny-llama", "--endpoint", server.url, ok=False)
        assert bad.returncode == 9
        subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(online.root),
                        "token", "hf"], input=token + "\n", text=True, check=True,
                       capture_output=True)
        assert oct((online.root / "secrets" / "hf_token").stat().st_mode & 0o777) == "0o600"
        llmops(online, "download", "acme/tiny-llama", "--endpoint", server.url)
    finally:
        server.stop()
    for path in online.root.rglob("*"):
        if path.is_file() and "secrets" not in path.parts:
            assert token.encode() not in path.read_bytes(), f"token leaked into {path}"


def test_unknown_repo_and_revision(online, hub) -> None:
    nope = llmops(online, "download", "acme/nope", "--endpoint", hub.url, ok=False)
    assert nope.returncode == 3 and "acme/nope" in nope.stderr
    rev = llmops(online, "download", "acme/tiny-llama", "--revision", "f" * 40,
                 "--endpoint", hub.url, ok=False)
    assert rev.returncode == 3 and "revision" in rev.stderr
    _no_leftovers(online)


def test_an_endpoint_that_is_not_a_hub(online, tmp_path) -> None:
    from hub_faults import ServerThread

    async def not_a_hub(scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<html>intranet</html>"})

    server = ServerThread(not_a_hub).start()
    try:
        bad = llmops(online, "download", "acme/tiny-llama", "--endpoint", server.url, ok=False)
    finally:
        server.stop()
    assert bad.returncode == 5 and "does not answer like a Hugging Face hub" in bad.stderr
    from hub_faults import free_port

    closed = llmops(online, "download", "acme/tiny-llama", "--endpoint",
                    f"http://127.0.0.1:{free_port()}", ok=False)
    assert closed.returncode == 10 and "Cannot reach" in closed.stderr


def test_offline_makes_no_connection_at_all(home, hub, demo_model_dir, tmp_path) -> None:
    """Offline is the default: download refuses, and import and start-up try no socket."""
    log = tmp_path / "net.log"
    env = {"PYTHONPATH": f"{NETGUARD}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "NETGUARD_LOG": str(log)}
    bad = llmops(home, "download", "acme/tiny-llama", "--endpoint", hub.url, env=env, ok=False)
    assert bad.returncode == 8 and "Offline is on" in bad.stderr
    llmops(home, "import", str(demo_model_dir), env=env)
    llmops(home, "list", env=env)
    gui = subprocess.run([sys.executable, "-c", (
        "from llmops_desktop.qt.app import create_application; "
        "from llmops_desktop.qt.main_window import MainWindow; "
        "from llmops_desktop.paths import Home; "
        "app = create_application(); w = MainWindow(Home.resolve()); w.show(); "
        "app.processEvents(); w.close()")], env={**os.environ, **env, "QT_QPA_PLATFORM": "offscreen",
                           "LLMOPS_HOME": str(home.root)}, capture_output=True, text=True,
        timeout=60)
    assert gui.returncode == 0, gui.stderr
    attempts = log.read_text().splitlines() if log.exists() else []
    assert attempts == [], attempts
    probe = subprocess.run([sys.executable, "-c", "import socket; "
                            "socket.create_connection(('127.0.0.1', 9))"], env={**os.environ, **env},
                           capture_output=True, text=True)
    assert "netguard" in probe.stderr  # the guard works: it would have caught an attempt
    assert "127.0.0.1" in log.read_text()


def test_full_disk(small_disk, hub) -> None:
    home = Home.resolve(small_disk("24m"))
    llmops(home, "settings", "offline", "off")
    bad = llmops(home, "download", "acme/big", "--endpoint", hub.url, ok=False)
    assert bad.returncode == 6 and "disk space" in bad.stderr
    _no_leftovers(home)
