"""Share: packages (export -> verify -> import), refusals, signatures, registries under
concurrent publishers, Ollama and Hugging Face exports, governance status."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.importer import import_model, inspect_source
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Progress, Result
from llmops_desktop.paths import Home
from llmops_desktop.settings import load_settings, save_settings
from llmops_desktop.share import keys
from llmops_desktop.share.manifest import MANIFEST_NAME, SIGNATURE_NAME

# ---- helpers -----------------------------------------------------------------------------------


def llmops(home: Home, *args: str, ok: bool = True, stdin: str = "") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300, input=stdin)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def _import(catalog: Catalog, path: Path, name: str, **kw: Any):
    for ev in import_model(catalog, inspect_source(path, name=name), mode="copy",
                           staging=catalog.home.job_staging_dir(0), **kw):
        if isinstance(ev, Result):
            return catalog.artifact(ev.data["artifact_id"])
    raise AssertionError("no result")


def run_job(catalog: Catalog, kind: str, params: dict[str, Any]) -> tuple[Any, list[Progress]]:
    """Run a job in its child process; (the Result or Error event, the progress events)."""
    run = runner.start(catalog, kind, params)
    final, progress = None, []
    for ev in run.events():
        if isinstance(ev, (Result, Error)):
            final = ev
        elif isinstance(ev, Progress):
            progress.append(ev)
    return final, progress


def snapshot(catalog: Catalog) -> dict[str, Any]:
    """What a refused import must leave as it was: catalog rows and the store's files."""
    counts = {t: catalog.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("models", "artifacts", "artifact_files", "evaluations", "tags")}
    counts["audit_non_job"] = catalog.conn.execute(
        "SELECT COUNT(*) FROM audit_log WHERE action NOT LIKE 'job-%'").fetchone()[0]
    files = sorted(str(p.relative_to(catalog.home.models_dir))
                   for p in catalog.home.models_dir.rglob("*"))
    return {"counts": counts, "files": files}


def second_home(tmp_path: Path) -> Home:
    return Home.resolve(tmp_path / "home-b")


@pytest.fixture
def source(home: Home, catalog: Catalog, demo_model_dir: Path, demo_gguf: Path):
    """Home A: the demo HF model (approved, with a perplexity figure) and its F16 GGUF child."""
    from llmops_desktop.share.governance import set_status

    hf = _import(catalog, demo_model_dir, "demo-tiny-llama")
    gguf = _import(catalog, demo_gguf, "demo-tiny-llama-F16", parent_id=hf.id,
                   params={"target": "F16", "method": "convert"})
    catalog.add_evaluation(hf.id, "perplexity", 512.25, dataset="heldout.txt",
                           dataset_sha256="ab" * 32, params={"n_ctx": 128})
    set_status(catalog, hf.id, "approved", "passed the team's smoke test")
    return hf, gguf


def _export(catalog: Catalog, artifact_id: int, out: Path, **params: Any) -> dict[str, Any]:
    final, progress = run_job(catalog, "export", {"artifact_id": artifact_id,
                                                  "output": str(out), **params})
    assert isinstance(final, Result), final
    return final.data


# ---- export -> import ------------------------------------------------------------------------


def test_export_import_roundtrip_keeps_hashes_lineage_and_generates(home, catalog, source,
                                                                     tmp_path) -> None:
    hf, gguf = source
    from llmops_desktop.share.package import estimate_size, plan_export

    plan = plan_export(catalog, hf.id, variants=["f16"])
    estimate = estimate_size(catalog, plan, sign=True)
    pkg = tmp_path / "out" / "demo.llmpkg"
    run = runner.start(catalog, "export", {"artifact_id": hf.id, "output": str(pkg),
                                           "variants": ["F16"], "sign": True})
    events = list(run.events())
    result = next(e for e in events if isinstance(e, Result)).data
    progress = [e for e in events if isinstance(e, Progress) and e.unit == "bytes"]
    assert progress and progress[-1].done == progress[-1].total == pkg.stat().st_size
    assert abs(pkg.stat().st_size - estimate) < 512  # the estimate before starting was right
    assert result["signed_by"] == keys.ensure_keypair(home).fingerprint
    assert not list(pkg.parent.glob(".*partial*"))

    # What the archive holds: the manifest first, then the signature, then the files.
    with tarfile.open(pkg) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())
    assert names[:2] == [MANIFEST_NAME, SIGNATURE_NAME]
    assert manifest["format_version"] == 1 and manifest["model"]["ref"] == hf.ref
    assert manifest["exported_by"]["user"] and manifest["app"]["version"]
    assert manifest["status"] == "approved" and manifest["license"] == "apache-2.0"
    assert "tiny Llama" in manifest["model_card"]
    arts = {a["kind"]: a for a in manifest["artifacts"]}
    assert arts["gguf"]["parent"] == arts["hf"]["id"]
    assert arts["hf"]["evaluations"][0]["value"] == 512.25
    assert {"name": "heldout.txt", "sha256": "ab" * 32, "used_for": "evaluation:perplexity"} \
        in arts["hf"]["datasets"]
    assert arts["hf"]["job"] is None and arts["gguf"]["params"]["target"] == "F16"
    for a in manifest["artifacts"]:
        for f in a["files"]:
            assert f"artifacts/{a['id']}/{f['path']}" in names

    # Colleague B trusts A's key and imports: same files, same lineage, same figures.
    pub = keys.export_public_key(home, tmp_path / "alice.pub")
    home_b = second_home(tmp_path)
    keys.trust_key(home_b, "alice", pub)
    with Catalog.open(home_b) as cat_b:
        final, _ = run_job(cat_b, "import-package", {"path": str(pkg)})
        assert isinstance(final, Result), final
        assert final.data["signature"].startswith("signed by alice")
        hf_b = cat_b.artifact(final.data["artifact_id"])
        children = cat_b.children(hf_b.id)
        assert len(children) == 1
        gguf_b = children[0]
        for a, b in ((hf, hf_b), (gguf, gguf_b)):
            assert [(f.relpath, f.size, f.sha256) for f in catalog.files(a.id)] == \
                [(f.relpath, f.size, f.sha256) for f in cat_b.files(b.id)]
            assert (a.model_name, a.kind, a.content_digest, a.params) == \
                (b.model_name, b.kind, b.content_digest, b.params)
            assert b.metadata["package"]["origin_ref"] == a.ref
        from llmops_desktop.share.governance import get_status, status_history

        assert get_status(cat_b, hf_b.id) == "approved"  # carried: signed by a trusted key
        assert "signed by alice" in status_history(cat_b, hf_b.id)[0].comment
        assert get_status(cat_b, gguf_b.id) == "draft"
        ev = cat_b.evaluations(hf_b.id)[0]
        assert (ev.metric, ev.value, ev.dataset_sha256) == ("perplexity", 512.25, "ab" * 32)

        # Importing the same package again copies nothing twice.
        before = snapshot(cat_b)
        final2, _ = run_job(cat_b, "import-package", {"path": str(pkg)})
        assert isinstance(final2, Result) and final2.data["created"] == []
        assert sorted(final2.data["reused"]) == sorted([hf_b.id, gguf_b.id])
        assert snapshot(cat_b)["files"] == before["files"]

    # The imported model loads and generates.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(hf_b.path)
    model = AutoModelForCausalLM.from_pretrained(hf_b.path)
    ids = tok("The model", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 5


def test_with_parents_exports_lineage_and_links_existing_parent(catalog, source, tmp_path) -> None:
    hf, gguf = source
    pkg = tmp_path / "f16.llmpkg"
    _export(catalog, gguf.id, pkg, with_parents=True)
    with tarfile.open(pkg) as tar:
        manifest = json.loads(tar.extractfile(MANIFEST_NAME).read())
    assert [a["role"] for a in manifest["artifacts"]] == ["parent", "model"]
    # Only the GGUF: its parent is linked by content digest when it is already there.
    only = tmp_path / "only.llmpkg"
    _export(catalog, gguf.id, only)
    home_b = second_home(tmp_path)
    with Catalog.open(home_b) as cat_b:
        hf_b = _import(cat_b, hf.path, "renamed-locally")
        final, _ = run_job(cat_b, "import-package", {"path": str(only), "allow_unsigned": True})
        assert isinstance(final, Result), final
        assert cat_b.artifact(final.data["artifact_id"]).parent_id == hf_b.id


def test_export_cancel_leaves_no_partial_file(catalog, source, tmp_path) -> None:
    from llmops_desktop.share.export import export_package

    hf, _ = source
    dest = tmp_path / "cancel" / "x.llmpkg"
    gen = export_package(catalog, catalog.home, hf.id, dest)
    for ev in gen:
        if isinstance(ev, Progress) and ev.done > 0:
            break
    assert list(dest.parent.iterdir())  # the partial file was being written
    gen.close()  # what the job's SIGTERM does to the generator
    assert list(dest.parent.iterdir()) == []


def test_export_refuses_a_store_file_that_changed(catalog, source, tmp_path) -> None:
    hf, _ = source
    cfg = hf.path / "config.json"
    data = bytearray(cfg.read_bytes())
    data[5] ^= 1
    cfg.write_bytes(bytes(data))
    final, _ = run_job(catalog, "export", {"artifact_id": hf.id,
                                           "output": str(tmp_path / "bad.llmpkg")})
    assert isinstance(final, Error) and "no longer matches the sha256" in final.message
    assert not list(tmp_path.glob("*bad.llmpkg*"))


def test_unknown_variant_is_refused_with_the_ones_there_are(catalog, source) -> None:
    from llmops_desktop.errors import InvalidInputError
    from llmops_desktop.share.package import plan_export

    hf, _ = source
    with pytest.raises(InvalidInputError, match=r"no Q4_K_M variant \(it has: F16\)"):
        plan_export(catalog, hf.id, variants=["Q4_K_M"])


# ---- refusals --------------------------------------------------------------------------------


def _members(pkg: Path) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    out = []
    with tarfile.open(pkg) as tar:
        for m in tar.getmembers():
            out.append((m, tar.extractfile(m).read() if m.isreg() else None))
    return out


def _write(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _reg(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, type_: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = type_, linkname
    return info, None


def _with_manifest(members, change) -> list:
    manifest = json.loads(members[0][1])
    change(manifest)
    return [_reg(MANIFEST_NAME, json.dumps(manifest).encode()), *members[1:]]


@pytest.fixture
def unsigned_pkg(catalog, source, tmp_path) -> Path:
    hf, _ = source
    pkg = tmp_path / "good.llmpkg"
    _export(catalog, hf.id, pkg)
    return pkg


def _cases(good: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    members = _members(good)
    manifest = json.loads(members[0][1])
    key = manifest["artifacts"][0]["id"]
    weights = next(i for i, (m, _) in enumerate(members) if m.name.endswith(".safetensors"))
    wm, wdata = members[weights]

    def replace_weights(data: bytes) -> list:
        out = list(members)
        out[weights] = _reg(wm.name, data)
        return out

    flipped = bytearray(wdata)
    flipped[len(flipped) // 2] ^= 0xFF
    huge = _with_manifest(members, lambda m: m["artifacts"][0]["files"][0].update(
        size=10 ** 15))
    cases = {
        "absolute": ([*members, _reg("/tmp/evil.sh", b"rm -rf /")], "is an absolute path"),
        "dotdot": ([*members, _reg(f"artifacts/{key}/../../evil.sh", b"x")], "contains '..'"),
        "symlink": ([*members, _special(f"artifacts/{key}/link", tarfile.SYMTYPE, "/etc/passwd")],
                    "is a symbolic link"),
        "hardlink": ([*members, _special(f"artifacts/{key}/hard", tarfile.LNKTYPE,
                                         f"artifacts/{key}/config.json")], "is a hard link"),
        "device": ([*members, _special(f"artifacts/{key}/dev", tarfile.CHRTYPE)],
                   "is a device file"),
        "fifo": ([*members, _special(f"artifacts/{key}/fifo", tarfile.FIFOTYPE)], "is a FIFO"),
        "unlisted": ([*members, _reg(f"artifacts/{key}/extra.bin", b"surprise")],
                     "is not listed in the package's manifest"),
        "size": (replace_weights(wdata[:-1]), "bytes in the archive but the manifest says"),
        "hash": (replace_weights(bytes(flipped)), "does not match the sha256 in the manifest"),
        "version": (_with_manifest(members, lambda m: m.update(format_version=99)),
                    "uses format version 99"),
        "json": ([_reg(MANIFEST_NAME, b'{"format": "llmops-package", '), *members[1:]],
                 "is not valid JSON"),
        "disk": (huge, "only"),
        "manifest-path": (_with_manifest(members, lambda m: m["artifacts"][0]["files"][0].update(
            path="/etc/passwd")), "manifest entry of"),
    }
    out = {name: (_write(tmp / f"{name}.llmpkg", m), msg) for name, (m, msg) in cases.items()}
    truncated = tmp / "truncated.llmpkg"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    out["truncated"] = (truncated, "truncated")
    missing = [m for i, m in enumerate(members) if i != weights]
    out["missing-member"] = (_write(tmp / "missing.llmpkg", missing),
                             "the manifest lists are missing")
    return out


def test_each_unsafe_or_damaged_package_is_refused_and_nothing_is_written(
        unsigned_pkg, tmp_path) -> None:
    cases = _cases(unsigned_pkg, tmp_path)
    home_b = second_home(tmp_path)
    messages = {}
    with Catalog.open(home_b) as cat_b:
        before = snapshot(cat_b)
        for name, (pkg, expected) in cases.items():
            final, _ = run_job(cat_b, "import-package", {"path": str(pkg),
                                                         "allow_unsigned": True})
            assert isinstance(final, Error), (name, final)
            assert expected in final.message, (name, final.message)
            assert "Nothing was imported" in final.message or "nothing was imported" in \
                final.message, (name, final.message)
            assert snapshot(cat_b) == before, name
            messages[name] = final.message
        assert "declares 1000000.00 GB" in messages["disk"]
        assert len(set(messages.values())) == len(messages)  # each refusal says its own thing
        # and the good package is accepted into the same catalog afterwards
        final, _ = run_job(cat_b, "import-package", {"path": str(unsigned_pkg),
                                                     "allow_unsigned": True})
        assert isinstance(final, Result), final


# ---- signatures ------------------------------------------------------------------------------


def test_signatures_trusted_unknown_tampered_and_unsigned(home, catalog, source, tmp_path) -> None:
    from llmops_desktop.share.errors import (
        SignatureError,
        UnsignedPackageError,
        UntrustedSignerError,
    )
    from llmops_desktop.share.unpack import inspect_package, trust_decision

    hf, _ = source
    signed = tmp_path / "signed.llmpkg"
    _export(catalog, hf.id, signed, sign=True)
    unsigned = tmp_path / "unsigned.llmpkg"
    _export(catalog, hf.id, unsigned)
    home_b = second_home(tmp_path)
    fp = keys.ensure_keypair(home).fingerprint

    info = inspect_package(home_b, signed)
    assert info.signature.fingerprint == fp and info.signature.trusted_as is None
    with pytest.raises(UntrustedSignerError, match="not in your trust list") as exc:
        trust_decision(info, require_signatures=False)
    assert exc.value.fingerprint == fp
    assert "accepted by the user" in trust_decision(info, require_signatures=True,
                                                    accept_fingerprint=fp)
    with pytest.raises(UntrustedSignerError):  # accepting another key does not help
        trust_decision(info, require_signatures=False, accept_fingerprint="SHA256:other")

    keys.trust_key(home_b, "alice", keys.export_public_key(home, tmp_path / "a.pub"))
    assert trust_decision(inspect_package(home_b, signed), require_signatures=True) \
        == f"signed by alice ({fp})"

    # A changed manifest (here: the license) no longer matches the signature.
    members = _members(signed)
    tampered = _write(tmp_path / "tampered.llmpkg", _with_manifest(
        members, lambda m: m.update(license="mit")))
    with pytest.raises(SignatureError, match="does not match its manifest"):
        inspect_package(home_b, tampered)

    info_u = inspect_package(home_b, unsigned)
    with pytest.raises(UnsignedPackageError, match="Settings require signatures"):
        trust_decision(info_u, require_signatures=True, allow_unsigned=True)
    with pytest.raises(UnsignedPackageError, match="--allow-unsigned"):
        trust_decision(info_u, require_signatures=False)

    # The CLI: an unknown signer is refused without asking when no one can answer;
    # --trust-unknown imports; "require signatures" refuses an unsigned one.
    home_c = Home.resolve(tmp_path / "home-c")
    proc = llmops(home_c, "import", str(signed), ok=False)
    assert proc.returncode == 9 and "not in your trust list" in proc.stderr
    proc = llmops(home_c, "import", str(tampered), "--trust-unknown", ok=False)
    assert proc.returncode == 9 and "does not match its manifest" in proc.stderr
    llmops(home_c, "settings", "require_signatures", "on")
    proc = llmops(home_c, "import", str(unsigned), "--allow-unsigned", ok=False)
    assert proc.returncode == 9 and "require signatures" in proc.stderr.lower()
    out = json.loads(llmops(home_c, "import", str(signed), "--trust-unknown", "--json").stdout)
    assert out["ref"] == hf.ref and "unknown key" in out["package"]["signature"]
    with Catalog.open(home_c) as cat_c:
        from llmops_desktop.share.governance import get_status

        assert get_status(cat_c, out["id"]) == "draft"  # not carried from an unknown key


def test_keys_are_private_and_trust_list_rejects_duplicates(home, tmp_path) -> None:
    from llmops_desktop.share.errors import KeyFileError

    pair = keys.ensure_keypair(home)
    private = keys.keys_dir(home) / keys.PRIVATE_NAME
    assert private.stat().st_mode & 0o777 == 0o600
    assert keys.ensure_keypair(home).fingerprint == pair.fingerprint  # made once
    # ssh-keygen prints the same fingerprint, when it is installed
    if (ssh_keygen := __import__("shutil").which("ssh-keygen")):
        out = subprocess.run([ssh_keygen, "-lf", str(keys.keys_dir(home) / keys.PUBLIC_NAME)],
                             capture_output=True, text=True).stdout
        assert pair.fingerprint in out
    other = Home.resolve(tmp_path / "bob")
    pub = keys.export_public_key(home, tmp_path / "alice.pub")
    keys.trust_key(other, "alice", pub)
    with pytest.raises(KeyFileError, match="already trusted as 'alice'"):
        keys.trust_key(other, "alice2", pub)
    bad = tmp_path / "bad.pub"
    bad.write_text("hello world\n")
    with pytest.raises(KeyFileError, match="not a public key file"):
        keys.trust_key(other, "mallory", bad)
    assert [k.name for k in keys.trusted_keys(other)] == ["alice"]
    keys.untrust_key(other, "alice")
    assert keys.trusted_keys(other) == []


# ---- registries --------------------------------------------------------------------------------

_STRESS = """
import sys
from pathlib import Path
from llmops_desktop.share.registry import add_entry
root, who = Path(sys.argv[1]), sys.argv[2]
for i in range(40):
    add_entry(root, {"name": f"{who}-{i}", "file": f"{who}-{i}.llmpkg"})
"""


def test_registry_two_concurrent_publishers_and_pull(home, catalog, source, tmp_path) -> None:
    hf, gguf = source
    reg = tmp_path / "share"
    reg.mkdir()
    llmops(home, "registry", "add", "team", str(reg))
    # Two real publishers at once (each runs its export job in its own child process).
    procs = [subprocess.Popen([sys.executable, "-m", "llmops_desktop.cli", "--home",
                               str(home.root), "publish", ref, "--to", "team"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for ref in (hf.ref, gguf.ref)]
    # ... and two processes hammering the index with 40 entries each meanwhile.
    stress = [subprocess.Popen([sys.executable, "-c", _STRESS, str(reg), who])
              for who in ("p", "q")]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    for p in stress:
        assert p.wait(timeout=300) == 0
    index = json.loads((reg / "index.json").read_text())
    names = [p["name"] for p in index["packages"]]
    assert len(names) == len(set(names)) == 82
    published = [p for p in index["packages"] if p.get("ref")]
    assert sorted(p["ref"] for p in published) == sorted([hf.ref, gguf.ref])
    assert all((reg / p["file"]).is_file() and p["signed_by"] for p in published)
    assert not [p for p in reg.iterdir() if "partial" in p.name]

    listing = json.loads(llmops(home, "registry", "list", "--json").stdout)
    ours = [r for r in listing if r.get("ref")]
    assert all(r["local"] for r in ours)

    # Colleague B: sees the packages as not local, pulls one with verification.
    home_b = second_home(tmp_path)
    llmops(home_b, "registry", "add", "team", str(reg))
    llmops(home_b, "keys", "trust", "alice", str(keys.export_public_key(home, tmp_path / "a.pub")))
    listing = json.loads(llmops(home_b, "registry", "list", "team", "--json").stdout)
    entry = next(r for r in listing if r.get("ref") == hf.ref)
    assert entry["local"] is False
    out = json.loads(llmops(home_b, "pull", entry["spec"], "--json").stdout)
    assert out["content_digest"] == hf.content_digest
    assert "signed by alice" in out["package"]["signature"]
    listing = json.loads(llmops(home_b, "registry", "list", "team", "--json").stdout)
    assert next(r for r in listing if r.get("ref") == hf.ref)["local"] is True
    # A missing index is rebuilt from the packages themselves.
    (reg / "index.json").unlink()
    from llmops_desktop.share.registry import read_index

    assert sorted(p["ref"] for p in read_index(reg)["packages"]) == sorted([hf.ref, gguf.ref])


# ---- Ollama and Hugging Face exports -----------------------------------------------------------

_INSTRUCTIONS = {"FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "LICENSE", "ADAPTER", "MESSAGE",
                 "REQUIRES"}


def parse_modelfile(text: str) -> list[tuple[str, list[str]]]:
    """A strict reading of Ollama's Modelfile grammar: comments, INSTRUCTION args, where an
    argument is a bare word, a "quoted string" or a \"\"\"multi-line string\"\"\"."""
    out: list[tuple[str, list[str]]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t\r\n":
            i += 1
            continue
        if text[i] == "#":
            i = text.find("\n", i) + 1 or n
            continue
        m = re.compile(r"([A-Za-z]+)[ \t]+").match(text, i)
        assert m, f"expected an instruction at {text[i:i + 30]!r}"
        word = m.group(1).upper()
        assert word in _INSTRUCTIONS, f"unknown instruction {word}"
        i = m.end()
        args: list[str] = []
        while i < n and text[i] != "\n":
            if text.startswith('"""', i):
                end = text.find('"""', i + 3)
                assert end != -1, "unterminated triple-quoted string"
                args.append(text[i + 3:end])
                i = end + 3
            elif text[i] == '"':
                m2 = re.compile(r'"((?:[^"\\\n]|\\.)*)"').match(text, i)
                assert m2, "unterminated string"
                args.append(m2.group(1))
                i = m2.end()
            elif text[i] in " \t":
                i += 1
            else:
                m3 = re.compile(r"[^\s\"]+").match(text, i)
                args.append(m3.group(0))
                i = m3.end()
        assert args, f"{word} without an argument"
        if word == "PARAMETER":
            assert len(args) == 2, args
        elif word == "MESSAGE":
            assert len(args) == 2 and args[0] in ("system", "user", "assistant"), args
        else:
            assert len(args) == 1, (word, args)
        out.append((word, args))
    return out


def test_ollama_export_writes_gguf_and_a_modelfile_that_parses(catalog, source, tmp_path) -> None:
    from llmops_desktop.hashing import sha256_file

    hf, gguf = source
    out = tmp_path / "ollama"
    result = _export(catalog, gguf.id, out, format="ollama", system="You are terse.")
    assert result["format"] == "ollama"
    text = (out / "Modelfile").read_text()
    parsed = parse_modelfile(text)
    words = [w for w, _ in parsed]
    assert words[0] == "FROM" and {"TEMPLATE", "PARAMETER", "SYSTEM", "LICENSE"} <= set(words)
    src = out / parsed[0][1][0]
    assert sha256_file(src) == catalog.files(gguf.id)[0].sha256
    template = dict(parsed)["TEMPLATE"][0]
    assert 'eq .Role "user" }}<|user|>\n{{ .Content }}</s>\n' in template
    assert template.endswith("{{ end }}{{ end }}<|assistant|>\n")
    params = [a for w, a in parsed if w == "PARAMETER"]
    assert ["num_ctx", "512"] in params and ["stop", "</s>"] in params
    assert ["temperature", "0"] in params  # the demo's generation config is greedy
    assert dict(parsed)["SYSTEM"] == ["You are terse."]
    # An HF artifact is not something Ollama runs: the error names its GGUF variant.
    final, _ = run_job(catalog, "export", {"artifact_id": hf.id, "format": "ollama",
                                           "output": str(tmp_path / "o2")})
    assert isinstance(final, Error) and gguf.ref in final.message


def test_chat_template_conversion_is_checked_and_says_what_it_skips() -> None:
    from llmops_desktop.share.chat_template import convert_chat_template

    chatml = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
              "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
              "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    conv = convert_chat_template(chatml, eos_token="<|im_end|>")
    assert conv.go_template is not None and "<|im_end|>" in conv.stops
    assert '{{ if eq .Role "system" }}<|im_start|>system\n{{ .Content }}<|im_end|>\n' \
        in conv.go_template
    mistral = ("{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
               "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
               "'assistant' %}{{ message['content'] + eos_token }}{% else %}{{ raise_exception("
               "'Only user and assistant roles are supported!') }}{% endif %}{% endfor %}")
    conv = convert_chat_template(mistral, bos_token="<s>", eos_token="</s>")
    assert conv.go_template is not None and "no system role" in conv.note
    assert conv.go_template.startswith('{{ range .Messages }}{{ if eq .Role "user" }}[INST] ')
    llama2 = ("{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
              "{% set messages = messages[1:] %}{% else %}{% set sys = '' %}{% endif %}"
              "{% for message in messages %}{% if loop.index0 == 0 and sys %}{{ bos_token + "
              "'[INST] <<SYS>>\\n' + sys + '\\n<</SYS>>\\n\\n' + message['content'] + ' [/INST]' }}"
              "{% elif message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] "
              "+ ' [/INST]' }}{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}"
              "{% endif %}{% endfor %}")
    conv = convert_chat_template(llama2, bos_token="<s>", eos_token="</s>")
    assert conv.go_template is None and "not converted" in conv.note  # BOS between turns
    positional = ("{% for m in messages %}{% if loop.first %}FIRST {% endif %}{{ m['content'] }}"
                  "\n{% endfor %}")
    conv = convert_chat_template(positional)
    assert conv.go_template is None and "not converted" in conv.note
    assert convert_chat_template("{% if %}").go_template is None
    assert '{{ "{{" }}' in convert_chat_template(
        "{% for m in messages %}{{ '{{' + m['content'] }}{% endfor %}").go_template


def test_hf_export_loads_with_transformers_and_card_front_matter(catalog, source,
                                                                   tmp_path) -> None:
    import yaml
    from transformers import AutoModelForCausalLM

    hf, gguf = source
    out = tmp_path / "hf"
    _export(catalog, hf.id, out, format="hf")
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 2
    card = (out / "README.md").read_text()
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["license"] == "apache-2.0" and "llmops-desktop" in front["tags"]
    assert "## Provenance (LLMOps Desktop)" in card and "| perplexity | 512.2500 |" in card
    final, _ = run_job(catalog, "export", {"artifact_id": gguf.id, "format": "hf",
                                           "output": str(tmp_path / "hf2")})
    assert isinstance(final, Error) and f"Export its Hugging Face parent {hf.ref}" in final.message
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    final, _ = run_job(catalog, "export", {"artifact_id": hf.id, "format": "hf",
                                           "output": str(tmp_path / "full")})
    assert isinstance(final, Error) and "is not empty" in final.message


def test_hf_card_of_a_quantized_child_names_base_model_and_datasets(catalog, source,
                                                                      demo_model_dir) -> None:
    import yaml

    from llmops_desktop.share.exports import model_card_text

    hf, _ = source
    # A bitsandbytes-like HF child made from the demo, with a training dataset recorded.
    (demo_model_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n# child\n")
    child = _import(catalog, demo_model_dir, "demo-child", parent_id=hf.id,
                    params={"target": "bnb-nf4", "dataset": "/data/support.jsonl",
                            "dataset_sha256": "cd" * 32})
    with catalog.transaction() as conn:  # what a bnb quantize records in metadata
        meta = {**child.metadata, "quantization": "bnb-nf4"}
        conn.execute("UPDATE artifacts SET metadata = ? WHERE id = ?",
                     (json.dumps(meta), child.id))
    front = yaml.safe_load(model_card_text(catalog, catalog.artifact(child.id)).split("---\n")[1])
    assert front["base_model"] == hf.model_name and front["base_model_relation"] == "quantized"
    assert front["datasets"] == ["support.jsonl"] and front["quantization"] == "bnb-nf4"
    assert "bnb-nf4" in front["tags"]


# ---- governance --------------------------------------------------------------------------------


def test_status_needs_a_comment_is_audited_and_gates_serving(home, catalog, source) -> None:
    from llmops_desktop.share.errors import GovernanceError
    from llmops_desktop.share.governance import get_status, set_status, status_history

    hf, gguf = source
    with pytest.raises(GovernanceError, match="needs a comment"):
        set_status(catalog, gguf.id, "approved", "  ")
    proc = llmops(home, "status", gguf.ref, "deprecated", "-m", "superseded by Q8_0", "--json")
    data = json.loads(proc.stdout)
    assert data["status"] == "deprecated" and data["history"][0]["comment"] == "superseded by Q8_0"
    entry = catalog.audit_entries(artifact_id=gguf.id)[0]
    assert (entry.action, entry.details["to"], entry.user) == ("status", "deprecated",
                                                              data["history"][0]["user"])
    assert get_status(catalog, hf.id) == "approved" and status_history(catalog, hf.id)

    from llmops_desktop.serving.run import serve

    settings = load_settings(home.settings_path)
    save_settings(home.settings_path, settings.updated(serve_only_approved=True))
    with pytest.raises(GovernanceError, match="serves only approved artifacts"):
        serve(gguf.ref, home=home)
    proc = llmops(home, "serve", gguf.ref, ok=False)
    assert proc.returncode == 5 and "is deprecated" in proc.stderr


def test_cli_export_estimate_and_import_routes_packages(home, catalog, source, tmp_path) -> None:
    hf, gguf = source
    est = json.loads(llmops(home, "export", hf.ref, "--variants", "F16", "--estimate",
                            "--json").stdout)
    assert [a["ref"] for a in est["artifacts"]] == [hf.ref, gguf.ref]
    pkg = tmp_path / "cli.llmpkg"
    out = json.loads(llmops(home, "export", hf.ref, "--variants", "F16", "-o", str(pkg),
                            "--json").stdout)
    assert Path(out["path"]) == pkg and abs(pkg.stat().st_size - est["size_bytes"]) < 1024
    home_b = second_home(tmp_path)
    # No terminal to ask on: an unsigned package needs --allow-unsigned.
    proc = llmops(home_b, "import", str(pkg), ok=False)
    assert proc.returncode == 9 and "--allow-unsigned" in proc.stderr
    out = json.loads(llmops(home_b, "import", str(pkg), "--allow-unsigned", "--json").stdout)
    assert out["content_digest"] == hf.content_digest
    shown = llmops(home_b, "keys", "show").stdout
    assert "fingerprint: SHA256:" in shown
    assert os.stat(home_b.root / "keys" / "id_ed25519").st_mode & 0o777 == 0o600
