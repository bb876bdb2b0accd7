"""Hostile import sources: links out of the folder are refused, private files stay
private, and registering never deletes a store folder an artifact owns (#13).

Each source is built the way an attacker would build it, and imported through the
real ``llmops import`` command (a subprocess) and through the Python API, in every
import mode. A refusal must name the link, exit with code 5, and leave the catalog,
the store and the secret exactly as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from importing import make_hf_cache, run_import, sha256, store_snapshot

from llmops_desktop.catalog import ArtifactFile, Catalog
from llmops_desktop.errors import UnsafePathError
from llmops_desktop.hashing import content_digest
from llmops_desktop.importer import MODES, import_model, inspect_source
from llmops_desktop.jobs.events import Error, Result

SECRET = b"root:x:0:0:the secret that must not leave its folder\n"


def llmops(home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300)


def _secret(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(SECRET)
    return path


def _untouched(secret: Path) -> None:
    assert secret.read_bytes() == SECRET
    assert os.stat(secret).st_nlink == 1  # no hard link to it survives anywhere


def _refused_everywhere(catalog: Catalog, source: Path, link: str, secret: Path) -> None:
    """CLI and Python API, every mode: refused naming ``link``; nothing changed."""
    before = store_snapshot(catalog)
    for mode in MODES:
        proc = llmops(catalog.home, "import", str(source), "--mode", mode, "--json")
        assert proc.returncode == 5, (mode, proc.stdout, proc.stderr)
        assert json.loads(proc.stdout)["error"] == "UnsafePathError", proc.stdout
        assert link in proc.stderr and "outside" in proc.stderr, proc.stderr
        assert store_snapshot(catalog) == before, mode
        event, _ = run_import(catalog, source, mode=mode)  # the job the GUI starts
        assert isinstance(event, Error) and event.error_type == "UnsafePathError", event
        assert link in event.message
        assert store_snapshot(catalog) == before, mode
    with pytest.raises(UnsafePathError, match="outside") as err:
        inspect_source(source)
    assert link in str(err.value)
    assert SECRET.decode() not in proc.stderr + proc.stdout + event.message
    assert not any(catalog.home.staging_dir.iterdir())
    assert not [p for p in catalog.home.models_dir.iterdir() if p.name != ".staging"]
    _untouched(secret)


# ---- links out of a plain model folder ---------------------------------------------------------

def _relative(model: Path, tmp: Path) -> tuple[str, Path]:
    secret = _secret(tmp / "secret.txt")
    (model / "README.md").unlink()
    os.symlink("../secret.txt", model / "README.md")
    return "README.md", secret


def _absolute(model: Path, tmp: Path) -> tuple[str, Path]:
    secret = _secret(tmp / "etc" / "passwd")  # an /etc/passwd of our own
    os.symlink(secret, model / "notes.txt")
    return "notes.txt", secret


def _folder_link(model: Path, tmp: Path) -> tuple[str, Path]:
    secret = _secret(tmp / "private" / "id_ed25519")
    os.symlink(secret.parent, model / "extras")
    return "extras", secret


def _chain(model: Path, tmp: Path) -> tuple[str, Path]:
    secret = _secret(tmp / "secret.txt")
    os.symlink("b.txt", model / "a.txt")  # a.txt -> b.txt (inside) -> ../secret.txt (out)
    os.symlink("../secret.txt", model / "b.txt")
    return "a.txt", secret


def _nested_absolute(model: Path, tmp: Path) -> tuple[str, Path]:
    secret = _secret(tmp / "secret.txt")
    (model / "sub").mkdir()
    os.symlink("../../secret.txt", model / "sub" / "tokenizer_extra.json")
    return "sub/tokenizer_extra.json", secret


@pytest.mark.parametrize("plant", [_relative, _absolute, _folder_link, _chain, _nested_absolute],
                         ids=["relative", "absolute", "folder-link", "chain", "nested"])
def test_link_out_of_the_folder_is_refused(catalog, demo_model_dir, tmp_path,
                                           plant: Callable[[Path, Path], tuple[str, Path]]
                                           ) -> None:
    link, secret = plant(demo_model_dir, tmp_path)
    _refused_everywhere(catalog, demo_model_dir, link, secret)


@pytest.mark.parametrize("mode", MODES)
def test_links_that_stay_inside_are_followed(catalog, demo_model_dir, mode) -> None:
    (demo_model_dir / "docs").mkdir()
    os.symlink("../README.md", demo_model_dir / "docs" / "README.md")
    os.symlink("tokenizer.json", demo_model_dir / "tokenizer-copy.json")
    os.symlink("docs/README.md", demo_model_dir / "card.md")  # a chain, all inside
    proc = llmops(catalog.home, "import", str(demo_model_dir), "--mode", mode, "--json")
    assert proc.returncode == 0, proc.stderr
    a = catalog.artifact(json.loads(proc.stdout)["id"])
    files = {f.relpath: f for f in catalog.files(a.id)}
    assert {"docs/README.md", "tokenizer-copy.json", "card.md"} <= set(files)
    assert files["card.md"].sha256 == sha256(demo_model_dir / "README.md")
    for rel, f in files.items():
        assert sha256(a.path / rel) == f.sha256
        if mode != "reference":  # the store holds files, not links
            assert not (a.path / rel).is_symlink()


@pytest.mark.parametrize("mode", MODES)
def test_a_file_swapped_for_a_link_after_the_check_is_refused(catalog, demo_model_dir,
                                                              tmp_path, mode) -> None:
    """The files are checked again as they are opened, not only when inspected."""
    secret = _secret(tmp_path / "secret.txt")
    source = inspect_source(demo_model_dir)
    (demo_model_dir / "tokenizer.json").unlink()
    os.symlink(secret, demo_model_dir / "tokenizer.json")
    staging = catalog.home.job_staging_dir(999)
    staging.mkdir(parents=True, exist_ok=True)
    before = store_snapshot(catalog)
    with pytest.raises(UnsafePathError, match="tokenizer.json"):
        for _ in import_model(catalog, source, mode=mode, staging=staging):
            pass
    assert store_snapshot(catalog) == before
    assert not (staging / "artifact").exists()
    _untouched(secret)


# ---- HF cache snapshots ------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_hf_cache_snapshot_links_into_blobs_import(catalog, demo_model_dir, tmp_path,
                                                   mode) -> None:
    repo = make_hf_cache(tmp_path / "hub", "acme/tiny", demo_model_dir)
    proc = llmops(catalog.home, "import", str(repo), "--mode", mode, "--json")
    assert proc.returncode == 0, proc.stderr
    a = catalog.artifact(json.loads(proc.stdout)["id"])
    assert a.model_name == "acme/tiny"
    for f in catalog.files(a.id):
        assert sha256(a.path / f.relpath) == f.sha256 == sha256(demo_model_dir / f.relpath)


def test_hf_cache_snapshot_link_out_of_the_cache_is_refused(catalog, demo_model_dir,
                                                            tmp_path) -> None:
    repo = make_hf_cache(tmp_path / "hub", "acme/tiny", demo_model_dir)
    secret = _secret(tmp_path / "secret.txt")
    snap = repo / "snapshots" / ("c" * 40)
    os.symlink(os.path.relpath(secret, snap), snap / "added_tokens.json")
    _refused_everywhere(catalog, repo, "added_tokens.json", secret)
    _refused_everywhere(catalog, snap, "added_tokens.json", secret)


def test_hf_cache_whose_blobs_folder_is_a_link_out_is_refused(catalog, demo_model_dir,
                                                              tmp_path) -> None:
    """``blobs/`` is trusted only as a real folder of the cache, not as a link elsewhere."""
    repo = make_hf_cache(tmp_path / "hub", "acme/tiny", demo_model_dir)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(repo / "blobs", elsewhere)
    secret = _secret(elsewhere / "secret.txt")
    os.symlink(elsewhere, repo / "blobs")
    _refused_everywhere(catalog, repo, "README.md", secret)


# ---- permissions -------------------------------------------------------------------------------

def test_a_private_source_stays_private_in_the_store(catalog, demo_model_dir) -> None:
    for name in ("model.safetensors", "config.json"):
        (demo_model_dir / name).chmod(0o600)
    demo_model_dir.chmod(0o700)
    old = os.umask(0o022)  # a usual umask: without care, copies would be world-readable
    try:
        proc = llmops(catalog.home, "import", str(demo_model_dir), "--json")
    finally:
        os.umask(old)
    assert proc.returncode == 0, proc.stderr
    stored = Path(json.loads(proc.stdout)["path"])
    for name in ("model.safetensors", "config.json"):
        mode = os.stat(stored / name).st_mode
        assert mode & 0o077 == 0, f"{name}: {oct(mode)}"
    assert os.stat(stored / "tokenizer.json").st_mode & 0o044 == 0o044  # public stays readable
    assert os.stat(stored).st_mode & 0o077 == 0  # so does the folder: its listing is private


def test_a_public_source_folder_stays_listable_in_the_store(catalog, demo_model_dir) -> None:
    demo_model_dir.chmod(0o755)
    old = os.umask(0o022)
    try:
        event, _ = run_import(catalog, demo_model_dir)
    finally:
        os.umask(old)
    assert isinstance(event, Result), event
    assert os.stat(event.data["path"]).st_mode & 0o777 == 0o755


# ---- no clobbering -----------------------------------------------------------------------------

def _store_name(model: Path, slug: str) -> str:
    src = inspect_source(model)
    digest = content_digest((rel, sha256(p)) for rel, p in src.files)
    return f"{slug}-{digest[:12]}"


def _verify(catalog: Catalog, artifact_id: int) -> None:
    a = catalog.artifact(artifact_id)
    root = a.path if a.path.is_dir() else a.path.parent
    for f in catalog.files(a.id):
        assert sha256(root / f.relpath) == f.sha256, (a.ref, f.relpath)


def test_a_store_folder_an_artifact_owns_is_never_deleted(catalog, demo_model_dir,
                                                          demo_gguf) -> None:
    """Another artifact already owns the folder the import would use: it survives, and
    the import lands in a fresh folder; both artifacts verify and load."""
    owned = catalog.home.models_dir / _store_name(demo_model_dir, "tiny")
    owned.mkdir()
    shutil.copy(demo_gguf, owned / demo_gguf.name)
    with catalog.transaction():
        planted = catalog.add_artifact(
            model_name="planted", kind="gguf", storage="copy", path=owned / demo_gguf.name,
            files=[ArtifactFile(demo_gguf.name, demo_gguf.stat().st_size, sha256(demo_gguf))])
    proc = llmops(catalog.home, "import", str(demo_model_dir), "--name", "tiny", "--json")
    assert proc.returncode == 0, proc.stderr
    new = catalog.artifact(json.loads(proc.stdout)["id"])
    assert sorted(os.listdir(owned)) == [demo_gguf.name]
    assert new.path.parent == catalog.home.models_dir and new.path != owned
    assert new.path.name.endswith(owned.name[-12:])  # still named as the store names folders
    _verify(catalog, planted.id)
    _verify(catalog, new.id)
    from llama_cpp import Llama

    assert len(Llama(str(planted.path), n_ctx=64, verbose=False).tokenize(b"hello")) > 1
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(new.path).hidden_size == 64


def test_a_stray_folder_with_the_same_name_is_left_alone(catalog, demo_model_dir) -> None:
    """Registering deletes nothing, not even a folder no artifact names (that is the
    start-up sweep's job, once no job runs)."""
    stray = catalog.home.models_dir / _store_name(demo_model_dir, "tiny")
    stray.mkdir()
    (stray / "keep.txt").write_text("not yours")
    event, _ = run_import(catalog, demo_model_dir, name="tiny")
    assert isinstance(event, Result), event
    assert (stray / "keep.txt").read_text() == "not yours"
    new = catalog.artifact(event.data["artifact_id"])
    assert new.path != stray
    _verify(catalog, new.id)
