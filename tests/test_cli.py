"""The ``llmops`` command as a script would use it: --json output and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def llmops(*args: str, home: Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_full_round_trip_with_json(home, demo_model_dir, demo_gguf) -> None:
    assert json.loads(llmops("list", "--json", home=home).stdout) == []
    assert "catalog is empty" in llmops("list", home=home).stdout

    imported = json.loads(llmops("import", str(demo_model_dir), "--name", "tiny", "--tag", "base",
                                 "--json", home=home).stdout)
    assert imported["ref"] == "tiny@1" and imported["tags"] == ["base"]
    assert imported["metadata"]["architecture"] == "LlamaForCausalLM"

    gguf = json.loads(llmops("import", str(demo_gguf), "--name", "tiny-gguf", "--json",
                             home=home).stdout)
    listed = json.loads(llmops("list", "--json", home=home).stdout)
    assert [a["ref"] for a in listed] == ["tiny@1", "tiny-gguf@1"]
    assert [a["ref"] for a in json.loads(llmops("list", "--filter", "f16", "--json",
                                                home=home).stdout)] == ["tiny-gguf@1"]

    shown = json.loads(llmops("show", "tiny", "--json", home=home).stdout)
    assert {f["relpath"] for f in shown["files"]} >= {"config.json", "model.safetensors"}
    assert all(len(f["sha256"]) == 64 for f in shown["files"])
    assert shown["audit"][0]["action"] == "import"
    text = llmops("show", str(gguf["id"]), home=home).stdout
    assert "F16" in text and "lineage" in text

    tagged = json.loads(llmops("tag", "tiny", "prod", "--json", home=home).stdout)
    assert tagged["tags"] == ["base", "prod"]

    jobs = json.loads(llmops("jobs", "--json", home=home).stdout)
    assert [j["state"] for j in jobs] == ["succeeded", "succeeded"]
    assert "registered" in llmops("jobs", "log", str(jobs[0]["id"]), home=home).stdout

    removed = json.loads(llmops("rm", "tiny-gguf", "--json", home=home).stdout)
    assert [a["ref"] for a in removed["removed"]] == ["tiny-gguf@1"]
    assert not Path(gguf["path"]).exists()


def test_exit_codes_scripts_can_rely_on(home, demo_model_dir, tmp_path) -> None:
    assert llmops("show", "missing", home=home, ok=False).returncode == 3
    (tmp_path / "empty").mkdir()
    bad = llmops("import", str(tmp_path / "empty"), "--json", home=home, ok=False)
    assert bad.returncode == 5
    assert json.loads(bad.stdout)["error"] == "EmptySourceError"
    assert "empty" in bad.stderr
    llmops("import", str(demo_model_dir), home=home)
    dup = llmops("import", str(demo_model_dir), home=home, ok=False)
    assert dup.returncode == 4 and "already in the catalog" in dup.stderr
    assert llmops("frobnicate", home=home, ok=False).returncode == 2


def test_rm_refuses_an_artifact_others_derive_from(home, demo_model_dir, demo_gguf) -> None:
    from llmops_desktop.catalog import ArtifactFile, Catalog

    llmops("import", str(demo_model_dir), "--name", "base", home=home)
    with Catalog.open(home) as catalog:  # a derived artifact, as quantize will make
        base = catalog.resolve("base")
        child_dir = home.models_dir / "child"
        child_dir.mkdir()
        (child_dir / "x.gguf").write_bytes(b"x")
        catalog.add_artifact(model_name="base-q4", kind="gguf", storage="copy",
                             path=child_dir / "x.gguf", files=[ArtifactFile("x.gguf", 1, "0" * 64)],
                             parent_id=base.id, action="quantize")
    refused = llmops("rm", "base", home=home, ok=False)
    assert refused.returncode == 4 and "--cascade" in refused.stderr
    out = json.loads(llmops("rm", "base", "--cascade", "--json", home=home).stdout)
    assert [a["ref"] for a in out["removed"]] == ["base-q4@1", "base@1"]


def test_demo_makes_a_model_once(home) -> None:
    first = json.loads(llmops("demo", "--json", home=home).stdout)
    assert first["ref"] == "demo-tiny-llama@1" and first["existing"] is False
    assert first["metadata"]["has_chat_template"] is True
    again = json.loads(llmops("demo", "--json", home=home).stdout)
    assert again["id"] == first["id"] and again["existing"] is True


def test_settings_from_the_command_line(home) -> None:
    llmops("settings", "default_threads", "3", home=home)
    assert json.loads(llmops("settings", "--json", home=home).stdout)["default_threads"] == 3
    bad = llmops("settings", "import_mode", "teleport", home=home, ok=False)
    assert bad.returncode == 5 and "copy, hardlink, reference" in bad.stderr
    help_text = " ".join(llmops("import", "--help", home=home).stdout.split())
    assert "reference them in place" in help_text  # the setting's description is the help
