"""Import: each source kind, and each bad input leaving catalog and store exactly as before."""

from __future__ import annotations

import os
import shutil

import pytest
from importing import make_hf_cache, run_import, sha256, store_snapshot

from llmops_desktop.catalog import Catalog, JobState
from llmops_desktop.jobs.events import Error, Result


def _ok(catalog: Catalog, path, **params):
    event, job = run_import(catalog, path, **params)
    assert isinstance(event, Result), getattr(event, "message", event)
    assert job.state is JobState.SUCCEEDED
    return catalog.artifact(event.data["artifact_id"])


def _refused(catalog: Catalog, path, error_type: str, match: str, **params) -> Error:
    before = store_snapshot(catalog)
    event, job = run_import(catalog, path, **params)
    assert isinstance(event, Error), event
    assert event.error_type == error_type, event.message
    assert match.lower() in event.message.lower(), event.message
    assert job.state is JobState.FAILED and job.error == event.message
    assert store_snapshot(catalog) == before
    assert not any(catalog.home.staging_dir.iterdir())
    return event


# ---- the kinds ---------------------------------------------------------------------------------

def test_import_hf_folder_copies_hashes_and_reads_metadata(catalog, demo_model_dir) -> None:
    a = _ok(catalog, demo_model_dir, name="tiny")
    assert a.ref == "tiny@1" and a.kind == "hf" and a.storage == "copy"
    assert a.path.parent == catalog.home.models_dir
    md = a.metadata
    assert md["architecture"] == "LlamaForCausalLM" and md["context_length"] == 512
    assert md["parameters"] > 100_000 and md["dtype"] == "float32"
    assert md["has_chat_template"] is True
    assert a.license == "apache-2.0" and "tiny Llama" in a.description
    files = {f.relpath: f for f in catalog.files(a.id)}
    assert set(files) >= {"config.json", "model.safetensors", "tokenizer.model", "tokenizer.json"}
    for rel, f in files.items():
        assert f.sha256 == sha256(demo_model_dir / rel) == sha256(a.path / rel)
        assert f.size == (a.path / rel).stat().st_size
    assert [e.action for e in catalog.audit_entries(artifact_id=a.id)] == ["import"]
    # the stored copy loads with transformers
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(a.path).config.hidden_size == 64


def test_import_gguf_reads_quantization_and_generates(catalog, demo_gguf) -> None:
    a = _ok(catalog, demo_gguf)
    assert a.kind == "gguf" and a.path.name == demo_gguf.name and a.path.is_file()
    md = a.metadata
    assert md["architecture"] == "llama" and md["quantization"] == "F16"
    assert md["context_length"] == 512 and md["parameters"] > 100_000
    assert catalog.files(a.id)[0].sha256 == sha256(demo_gguf)
    from llama_cpp import Llama

    llm = Llama(str(a.path), n_ctx=128, verbose=False)
    assert len(llm.tokenize(b"hello")) > 1
    out = llm("The model", max_tokens=4, temperature=0)
    assert out["usage"]["completion_tokens"] >= 1


def test_import_from_hf_cache_by_repo_id_and_by_folder(catalog, demo_model_dir, tmp_path,
                                                        monkeypatch) -> None:
    cache = tmp_path / "hf" / "hub"
    repo = make_hf_cache(cache, "acme/tiny-llama", demo_model_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    from llmops_desktop.hfcache import scan_hf_cache

    listed = scan_hf_cache(cache)
    assert [(m.repo_id, m.refs) for m in listed] == [("acme/tiny-llama", ("main",))]
    a = _ok(catalog, "acme/tiny-llama")  # a repo id, found in the cache
    assert a.model_name == "acme/tiny-llama" and a.source == f"hf-cache:acme/tiny-llama@{'c' * 40}"
    for f in catalog.files(a.id):  # symlinks were followed: real files in the store
        assert not (a.path / f.relpath).is_symlink()
        assert sha256(a.path / f.relpath) == f.sha256
    catalog.remove_artifact(a.id)
    b = _ok(catalog, repo)  # the models--org--name folder itself
    assert b.model_name == "acme/tiny-llama"


def test_reference_in_place_and_hardlink(catalog, demo_model_dir, demo_gguf) -> None:
    ref = _ok(catalog, demo_model_dir, mode="reference")
    assert ref.storage == "reference" and ref.path == demo_model_dir
    assert not any(p for p in catalog.home.models_dir.iterdir() if p.name != ".staging")
    link = _ok(catalog, demo_gguf, mode="hardlink")
    assert link.storage == "hardlink"
    assert os.stat(link.path).st_ino == os.stat(demo_gguf).st_ino
    catalog.remove_artifact(ref.id)
    catalog.remove_artifact(link.id)
    assert (demo_model_dir / "config.json").exists() and demo_gguf.exists()


def test_pickle_only_model_is_refused_unless_allowed(catalog, demo_model_dir) -> None:
    (demo_model_dir / "model.safetensors").rename(demo_model_dir / "pytorch_model.bin")
    event = _refused(catalog, demo_model_dir, "PickleRefusedError", "arbitrary code")
    assert "--allow-pickle" in event.message
    a = _ok(catalog, demo_model_dir, allow_pickle=True)
    assert "pytorch_model.bin" in {f.relpath for f in catalog.files(a.id)}


def test_pickles_beside_safetensors_are_left_out(catalog, demo_model_dir) -> None:
    (demo_model_dir / "pytorch_model.bin").write_bytes(b"pickle")
    a = _ok(catalog, demo_model_dir)
    assert "pytorch_model.bin" not in {f.relpath for f in catalog.files(a.id)}
    assert "left out pickle file" in a.path.parent.parent.joinpath(
        "logs", f"job-{a.job_id}.log").read_text()


# ---- bad inputs --------------------------------------------------------------------------------

def test_empty_folder(catalog, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    _refused(catalog, tmp_path / "empty", "EmptySourceError", "empty")


def test_folder_without_weights(catalog, demo_model_dir) -> None:
    (demo_model_dir / "model.safetensors").unlink()
    _refused(catalog, demo_model_dir, "NoWeightsError", "no weights")


def test_missing_path(catalog, tmp_path) -> None:
    _refused(catalog, tmp_path / "nothing-here", "InvalidInputError", "does not exist")


def test_truncated_safetensors(catalog, demo_model_dir) -> None:
    weights = demo_model_dir / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 1000])
    _refused(catalog, demo_model_dir, "CorruptFileError", "truncated")


def test_corrupt_gguf(catalog, demo_gguf) -> None:
    data = bytearray(demo_gguf.read_bytes())
    data[:4] = b"GGML"
    demo_gguf.write_bytes(bytes(data))
    _refused(catalog, demo_gguf, "CorruptFileError", "not a GGUF file")


@pytest.mark.parametrize("keep", [0.5, 0.001])
def test_truncated_gguf(catalog, demo_gguf, keep) -> None:
    data = demo_gguf.read_bytes()
    demo_gguf.write_bytes(data[: int(len(data) * keep)])
    _refused(catalog, demo_gguf, "CorruptFileError", "truncated")


def test_same_model_twice(catalog, demo_model_dir) -> None:
    first = _ok(catalog, demo_model_dir)
    event = _refused(catalog, demo_model_dir, "DuplicateArtifactError", first.ref)
    assert f"#{first.id}" in event.message


def test_unreadable_file_broken_link(catalog, demo_model_dir) -> None:
    os.symlink(demo_model_dir / "gone.safetensors", demo_model_dir / "model-00002.safetensors")
    _refused(catalog, demo_model_dir, "UnreadableFileError", "cannot be read")


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root reads files whatever their mode; the broken-link test covers "
                           "unreadable files when running as root")
def test_unreadable_file_permissions(catalog, demo_model_dir) -> None:
    (demo_model_dir / "tokenizer.json").chmod(0)
    _refused(catalog, demo_model_dir, "UnreadableFileError", "permission denied")


def test_full_disk_is_refused_up_front(small_disk, demo_model_dir, monkeypatch) -> None:
    from llmops_desktop.paths import Home

    disk = small_disk("3m")
    monkeypatch.setenv("LLMOPS_HOME", str(disk))
    with Catalog.open(Home.resolve(disk)) as catalog:
        _refused(catalog, demo_model_dir, "DiskFullError", "not enough disk space")


def test_disk_filling_up_mid_copy_leaves_nothing(small_disk, demo_model_dir, monkeypatch) -> None:
    """The disk fills while the files stream in: DiskFullError, staging cleared, no rows."""
    from llmops_desktop import importer
    from llmops_desktop.errors import DiskFullError
    from llmops_desktop.paths import Home

    monkeypatch.setattr(importer, "DISK_MARGIN", 0)  # let the up-front check pass
    disk = small_disk("3m")
    home = Home.resolve(disk)
    with Catalog.open(home) as catalog:
        before = store_snapshot(catalog)
        source = importer.inspect_source(demo_model_dir)
        staging = home.job_staging_dir(999)
        gen = importer.import_model(catalog, source, staging=staging)
        from llmops_desktop.jobs.events import Progress

        while not isinstance(next(gen), Progress):  # run until the first file is copied
            pass
        filler = disk / "filler"
        with open(filler, "wb") as fh:  # another program takes the remaining space
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass
        with pytest.raises(DiskFullError, match="full"):
            for _ in gen:
                pass
        filler.unlink()
        shutil.rmtree(staging, ignore_errors=True)
        assert store_snapshot(catalog) == before
