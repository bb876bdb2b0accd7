"""``llmops download`` follows the terminal's conventions: ``HF_ENDPOINT`` (and
``HF_TOKEN``) when the Hub endpoint setting was never changed, and it says which endpoint
it uses. A real mirror of a colleague's catalog on 127.0.0.1 stands in for the hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from hub_faults import Faults, serve_home

from llmops_desktop.catalog import Catalog
from llmops_desktop.importer import import_model, inspect_source
from llmops_desktop.paths import Home

TOKEN = "hf_EnvTokenNeverPrinted123456"


@pytest.fixture(scope="module")
def hub(tmp_path_factory, demo_gguf_session):
    source = Home.resolve(tmp_path_factory.mktemp("source-home"))
    with Catalog.open(source) as catalog:
        for _ in import_model(catalog, inspect_source(demo_gguf_session, name="acme/tiny-gguf"),
                              staging=source.job_staging_dir(0)):
            pass
    server = serve_home(source.root, Faults())
    yield server
    server.stop()


def llmops(home: Home, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT", "HF_TOKEN")}
    return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300,
                          env={**clean, **env})


def test_download_uses_hf_endpoint_and_says_so(home, hub) -> None:
    assert llmops(home, "settings", "offline", "off", env={}).returncode == 0
    env = {"HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN}
    listed = llmops(home, "download", "acme/tiny-gguf", "--list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert f"Hub endpoint: {hub.url} (from HF_ENDPOINT), with the token from HF_TOKEN." \
        in listed.stderr
    assert TOKEN not in listed.stderr + listed.stdout
    assert any(f.endswith(".gguf") for f in json.loads(listed.stdout)["selected"])

    got = llmops(home, "download", "acme/tiny-gguf", "--json", env=env)
    assert got.returncode == 0, got.stderr
    with Catalog.open(home) as catalog:
        (artifact,) = catalog.artifacts()
        assert artifact.kind == "gguf" and hub.url in artifact.source


def test_a_changed_setting_wins_over_hf_endpoint(home, hub) -> None:
    assert llmops(home, "settings", "offline", "off", env={}).returncode == 0
    assert llmops(home, "settings", "hf_endpoint", "http://127.0.0.1:9", env={}).returncode == 0
    refused = llmops(home, "download", "acme/tiny-gguf", "--list", env={"HF_ENDPOINT": hub.url})
    assert refused.returncode != 0
    assert "Hub endpoint: http://127.0.0.1:9 (from the Hub endpoint setting), with no token." \
        in refused.stderr
    # --endpoint beats both
    listed = llmops(home, "download", "acme/tiny-gguf", "--list", "--endpoint", hub.url,
                    env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert listed.returncode == 0, listed.stderr
    assert f"Hub endpoint: {hub.url} (from --endpoint)" in listed.stderr
