"""A lying hub: file names that leave the download folder, and pickle-only models.

Every case is built as an attacker would: the app's own mirror on 127.0.0.1 behind a
middleware (tests/hub_faults.py) that renames files in its listing and serves the bytes
under the new names. The home is ``tmp_path / "home"``; everything around it must stay as it
was, and the catalog rows and the store listing must not change.
"""

from __future__ import annotations

import http.client
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hub_faults import Faults, ServerThread, serve_home
from importing import make_hf_cache, store_snapshot
from test_jobs import make_big_model

from llmops_desktop.acquire.download import download_key
from llmops_desktop.catalog import Catalog
from llmops_desktop.importer import import_model, inspect_source
from llmops_desktop.paths import Home


def _import(home: Home, path: Path, name: str, **kw) -> None:
    with Catalog.open(home) as catalog:
        for _ in import_model(catalog, inspect_source(path, name=name, **kw),
                              staging=home.job_staging_dir(0)):
            pass


def _pickle_folder(folder: Path, *, safetensors: bool = False) -> Path:
    if safetensors:
        make_big_model(folder, size=64 * 1024)
    else:
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"],
                                                        "model_type": "llama"}))
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": [0.5] * 64}))
    return folder


@pytest.fixture(scope="module")
def source_home(tmp_path_factory) -> Home:
    """What the hostile hub serves: a small safetensors model and two with pickles."""
    home = Home.resolve(tmp_path_factory.mktemp("hostile-source"))
    made = tmp_path_factory.mktemp("made")
    _import(home, make_big_model(made / "small", size=64 * 1024), "acme/small")
    _import(home, _pickle_folder(made / "pickled"), "acme/pickled", allow_pickle=True)
    _import(home, _pickle_folder(made / "both", safetensors=True), "acme/both",
            allow_pickle=True)
    return home


@pytest.fixture
def hub(source_home):
    faults = Faults()
    server = serve_home(source_home.root, faults)
    server.faults = faults
    yield server
    server.stop()


def llmops(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300)


@pytest.fixture
def online(home) -> Home:
    assert llmops(home, "settings", "offline", "off").returncode == 0
    return home


def _around(tmp_path: Path, home: Home) -> list[str]:
    """Everything under tmp_path outside the home (links listed, not followed)."""
    out = []
    for root, dirs, files in os.walk(tmp_path):
        rel = Path(root).relative_to(tmp_path)
        if rel.parts[:1] == (home.root.name,):
            continue
        out += [str(rel / n) for n in dirs + files
                if not (rel == Path(".") and n == home.root.name)]
    return sorted(out)


def _state(tmp_path: Path, home: Home) -> dict:
    with Catalog.open(home) as catalog:
        return {"around": _around(tmp_path, home), "store": store_snapshot(catalog),
                "downloads": sorted(str(p.relative_to(home.downloads_dir))
                                    for p in home.downloads_dir.rglob("*"))}


def _commit(hub, repo_id: str) -> str:
    return json.loads(_get(hub, f"/api/models/{repo_id}")[1])["sha"]


@pytest.mark.parametrize("listed, why", [
    ("../../../x", "'..' segment"),
    ("../../../../escaped.json", "'..' segment"),
    ("{outside}/abs/path.json", "absolute path"),
    ("a\\b", "backslash"),
    ("config\x00.json", "NUL"),
], ids=["dotdot", "dotdot-out-of-home", "absolute", "backslash", "nul"])
def test_a_listing_with_an_unsafe_name_is_refused_before_a_byte(online, hub, tmp_path,
                                                                listed, why) -> None:
    listed = listed.format(outside=tmp_path / "outside")
    hub.faults.rename = {"config.json": listed}
    before = _state(tmp_path, online)
    bad = llmops(online, "download", "acme/small", "--endpoint", hub.url)
    assert bad.returncode == 5, bad.stderr
    assert why in bad.stderr and repr(listed) in bad.stderr, bad.stderr
    assert "Nothing was downloaded" in bad.stderr
    assert hub.faults.range_starts == []  # no file was even asked for
    assert _state(tmp_path, online) == before
    assert not (tmp_path / "outside").exists() and not (online.root / "x").exists()


def test_a_link_planted_in_the_download_folder_is_not_written_through(online, hub,
                                                                       tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = online.downloads_dir / download_key(hub.url, "acme/small", _commit(hub, "acme/small"))
    folder.mkdir(parents=True)
    (folder / "sub").symlink_to(outside)  # planted earlier; the listing then writes through it
    hub.faults.rename = {"config.json": "sub/config.json"}
    before = _state(tmp_path, online)
    bad = llmops(online, "download", "acme/small", "--endpoint", hub.url)
    assert bad.returncode == 5, bad.stderr
    assert "'sub/config.json' resolves through a link" in bad.stderr, bad.stderr
    assert list(outside.iterdir()) == [] and hub.faults.range_starts == []
    assert _state(tmp_path, online) == before


def test_a_download_folder_that_is_a_link_out_is_refused(online, hub, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    key = download_key(hub.url, "acme/small", _commit(hub, "acme/small"))
    online.downloads_dir.mkdir(parents=True, exist_ok=True)
    (online.downloads_dir / key).symlink_to(outside)
    before = _state(tmp_path, online)
    bad = llmops(online, "download", "acme/small", "--endpoint", hub.url)
    assert bad.returncode == 5 and "resolves through a link" in bad.stderr, bad.stderr
    assert list(outside.iterdir()) == [] and hub.faults.range_starts == []
    assert _state(tmp_path, online) == before


def test_a_pickle_only_model_is_refused_unless_allowed(online, hub, tmp_path) -> None:
    before = _state(tmp_path, online)
    bad = llmops(online, "download", "acme/pickled", "--endpoint", hub.url)
    assert bad.returncode == 5, bad.stderr
    assert "only pickle weights (pytorch_model.bin)" in bad.stderr
    assert "--allow-pickle" in bad.stderr and "nothing was downloaded" in bad.stderr
    assert hub.faults.range_starts == []  # refused from the listing: no byte fetched
    assert _state(tmp_path, online) == before
    ok = llmops(online, "download", "acme/pickled", "--endpoint", hub.url, "--allow-pickle",
                "--json")
    assert ok.returncode == 0, ok.stderr
    with Catalog.open(online) as catalog:
        files = [f.relpath for f in catalog.files(json.loads(ok.stdout)["id"])]
    assert files == ["config.json", "pytorch_model.bin"]


def test_the_allow_pickle_setting_is_honoured(online, hub) -> None:
    assert llmops(online, "settings", "allow_pickle", "on").returncode == 0
    ok = llmops(online, "download", "acme/pickled", "--endpoint", hub.url, "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["model"] == "acme/pickled"


def test_pickles_beside_safetensors_are_not_downloaded(online, hub) -> None:
    ok = llmops(online, "download", "acme/both", "--endpoint", hub.url, "--json")
    assert ok.returncode == 0, ok.stderr
    with Catalog.open(online) as catalog:
        files = [f.relpath for f in catalog.files(json.loads(ok.stdout)["id"])]
    assert files == ["config.json", "model.safetensors"]
    assert "pytorch_model.bin" not in hub.faults.sent  # not even fetched


# ---- the mirror never serves a byte from outside an artifact --------------------------------

def _get(server: ServerThread, raw_path: str) -> tuple[int, bytes]:
    """GET with the path sent exactly as written (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("path", [
    "../../catalog.db", "..%2F..%2Fcatalog.db", "config.json%2F..%2F..%2F..%2Fcatalog.db",
    "%2E%2E/%2E%2E/catalog.db", "%2Fetc%2Fpasswd", "config.json%00", "a%5C..%5Ccatalog.db",
])
def test_the_mirror_serves_no_path_outside_the_artifact(hub, path) -> None:
    status, body = _get(hub, f"/acme/small/resolve/main/{path}")
    assert status == 404 and b"SQLite format" not in body and b"root:" not in body
    assert _get(hub, "/acme/small/resolve/main/config.json")[0] == 200


def test_the_mirror_does_not_follow_a_stored_file_replaced_by_a_link(tmp_path, demo_model_dir
                                                                     ) -> None:
    home = Home.resolve(tmp_path / "mirror-home")
    _import(home, demo_model_dir, "acme/tiny")
    with Catalog.open(home) as catalog:
        art = catalog.resolve("acme/tiny")
    stored = art.path / "config.json"
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"S" * stored.stat().st_size)  # the same size: a size check passes
    stored.unlink()
    stored.symlink_to(secret)
    server = serve_home(home.root, Faults())
    try:
        status, body = _get(server, "/acme/tiny/resolve/main/config.json")
    finally:
        server.stop()
    assert status == 409 and b"SSSS" not in body
    assert b"leads through a link out of" in body


# ---- a Hugging Face cache whose snapshot links lead elsewhere --------------------------------

def test_an_hf_cache_snapshot_linking_out_of_blobs_is_refused(home, tmp_path,
                                                              demo_model_dir) -> None:
    cache = tmp_path / "hf-cache"
    repo = make_hf_cache(cache, "acme/evil", demo_model_dir)
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    link = repo / "snapshots" / ("c" * 40) / "tokenizer_config.json"
    link.unlink()
    link.symlink_to(secret)
    with Catalog.open(home) as catalog:
        before = store_snapshot(catalog)
    env = {**os.environ, "HF_HUB_CACHE": str(cache)}
    bad = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                          "import", "acme/evil"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert bad.returncode == 5, bad.stderr
    assert "tokenizer_config.json" in bad.stderr and "outside the cache's blobs/" in bad.stderr
    with Catalog.open(home) as catalog:
        assert store_snapshot(catalog) == before
    for p in home.root.rglob("*"):
        assert not p.is_file() or b"PRIVATE KEY" not in p.read_bytes(), p


def test_an_hf_cache_ref_naming_a_folder_outside_snapshots_is_ignored(catalog, tmp_path,
                                                                      demo_model_dir) -> None:
    from importing import run_import

    repo = make_hf_cache(tmp_path / "hf-cache", "acme/tiny", demo_model_dir)
    make_big_model(tmp_path / "elsewhere", size=64 * 1024)  # what the lying ref points at
    (repo / "refs" / "main").write_text("../../../elsewhere")
    event, job = run_import(catalog, repo)
    assert job.state.value == "succeeded", event
    artifact = catalog.artifact(event.data["artifact_id"])
    assert artifact.source == f"hf-cache:acme/tiny@{'c' * 40}"
    assert "tokenizer.json" in {f.relpath for f in catalog.files(artifact.id)}
