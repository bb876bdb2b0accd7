"""Packages built to exhaust memory or the parser, and what the user accepted is what is
imported (#13 items 5, 6, 7).

Each hostile package goes through the real ``llmops import FILE.llmpkg``: exit code 5, a
clear message, no traceback, the child's peak memory within a fixed margin of a good
import's, nothing written outside the home, catalog rows and store listing unchanged. One
hostile package (or index) in a shared registry does not break the listing. A package
accepted unsigned that changes before the job reads it is refused. Registering never
deletes a store folder that is in the way."""

from __future__ import annotations

import hashlib
import json
import os
import select
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.jobs import runner
from llmops_desktop.jobs.events import Error, Result
from llmops_desktop.paths import Home
from llmops_desktop.share.manifest import FORMAT, FORMAT_VERSION, MANIFEST_NAME, SIGNATURE_NAME

MIB = 1024 * 1024
HUGE = 160 * MIB  # what a hostile extended header claims (left as a hole in a sparse file)
MARGIN_KIB = 64 * 1024  # peak RSS may exceed a good import's by this much, no more

# ---- packages made by hand ---------------------------------------------------------------------


def _header(name: str, size: int, type_: bytes = tarfile.REGTYPE,
            fmt: int = tarfile.PAX_FORMAT) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime = size, type_, 0o644, 0
    return info.tobuf(fmt, "utf-8", "surrogateescape")


def _pad(n: int) -> bytes:
    return bytes((512 - n % 512) % 512)


def tiny_files(tag: str = "a") -> dict[str, bytes]:
    return {"model.gguf": b"GGUF" + tag.encode() * 3000, "notes.txt": f"made for {tag}".encode()}


def tiny_manifest(files: dict[str, bytes], name: str = "tiny-model", **extra: Any) -> bytes:
    key = f"{name}-v1"
    entries = [{"path": p, "size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
               for p, d in files.items()]
    raw = {"format": FORMAT, "format_version": FORMAT_VERSION,
           "model": {"id": key, "name": name, "version": 1, "ref": f"{name}@1", "kind": "gguf",
                     "type": "gguf"},
           "license": "mit", "status": "approved", "total_bytes": sum(map(len, files.values())),
           "artifacts": [{"id": key, "role": "model", "name": name, "version": 1,
                          "kind": "gguf", "type": "gguf", "files": entries}], **extra}
    return json.dumps(raw, indent=1).encode()


# (raw header block, bytes it claims) for the hostile extended headers
PAX_HUGE = (_header("././@PaxHeader", HUGE, tarfile.XHDTYPE, tarfile.USTAR_FORMAT), HUGE)
GNU_LONG_HUGE = (_header("././@LongLink", HUGE, tarfile.GNUTYPE_LONGNAME, tarfile.GNU_FORMAT),
                 HUGE)


def write_package(path: Path, files: dict[str, bytes] | None = None, *,
                  manifest: bytes | None = None, signature: bytes | None = None,
                  name: str = "tiny-model", hostile: tuple[bytes, int] | None = None,
                  at: str = "", raw_member: bytes = b"") -> Path:
    """A package of ``files``; ``hostile`` (a raw header and the size it claims, written
    as a hole) goes ``at`` "first", "between" (after the manifest) or "last"."""
    files = tiny_files() if files is None else files
    manifest = tiny_manifest(files, name) if manifest is None else manifest

    def bad(fh: Any, where: str) -> None:
        if hostile is not None and at == where:
            block, size = hostile
            fh.write(block)
            fh.seek(size + len(_pad(size)), os.SEEK_CUR)  # sparse: costs no disk
        if raw_member and at == where:
            fh.write(raw_member)

    with open(path, "wb") as fh:
        bad(fh, "first")
        members = [(MANIFEST_NAME, manifest)]
        if signature is not None:
            members.append((SIGNATURE_NAME, signature))
        for name_, data in members:
            fh.write(_header(name_, len(data)) + data + _pad(len(data)))
        bad(fh, "between")
        key = f"{name}-v1"
        for rel, data in files.items():
            fh.write(_header(f"artifacts/{key}/{rel}", len(data)) + data + _pad(len(data)))
        bad(fh, "last")
        fh.write(bytes(1024))
    return path


def pax_chain(n: int) -> bytes:
    """``n`` small PAX headers in a row (each makes tarfile recurse once)."""
    record = b"20 comment=xxxxxxxx\n"
    return (_header("././@PaxHeader", len(record), tarfile.XHDTYPE, tarfile.USTAR_FORMAT)
            + record + _pad(len(record))) * n


# ---- running the real CLI, measuring its peak memory -------------------------------------------

_MEASURED = """
import resource, subprocess, sys
p = subprocess.run(sys.argv[2:], stdin=subprocess.DEVNULL, capture_output=True)
sys.stdout.buffer.write(p.stdout)
sys.stderr.buffer.write(p.stderr)
with open(sys.argv[1], "w") as fh:
    fh.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(p.returncode)
"""


def llmops_measured(home: Home, *args: str) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``llmops`` in a fresh process; (the result, the peak RSS in KiB of it and every
    process it started)."""
    out = home.root.parent / f"maxrss-{time.monotonic_ns()}"
    proc = subprocess.run([sys.executable, "-c", _MEASURED, str(out), sys.executable, "-m",
                           "llmops_desktop.cli", "--home", str(home.root), *args],
                          capture_output=True, text=True, timeout=600)
    peak = int(out.read_text())
    out.unlink()
    return proc, peak


def snapshot(home: Home) -> dict[str, Any]:
    with Catalog.open(home) as catalog:
        counts = {t: catalog.conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                  for t in ("models", "artifacts", "artifact_files")}
    files = sorted(str(p.relative_to(home.models_dir)) for p in home.models_dir.rglob("*"))
    return {"counts": counts, "files": files}


def outside(tmp_path: Path, home: Home) -> list[str]:
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")
                  if home.root not in p.parents and p != home.root)


@pytest.fixture(scope="module")
def good_peak(tmp_path_factory: pytest.TempPathFactory) -> int:
    """The peak RSS (KiB) of a good import of a small package: the baseline."""
    tmp = tmp_path_factory.mktemp("baseline")
    home = Home.resolve(tmp / "home")
    pkg = write_package(tmp / "good.llmpkg")
    proc, peak = llmops_measured(home, "import", str(pkg), "--allow-unsigned")
    assert proc.returncode == 0, proc.stderr
    return peak


HOSTILE = {
    "pax-160MiB-first": (dict(hostile=PAX_HUGE, at="first"), "PAX extended header of 167,772,160"),
    "pax-160MiB-between": (dict(hostile=PAX_HUGE, at="between"), "PAX extended header of"),
    "pax-160MiB-last": (dict(hostile=PAX_HUGE, at="last"), "PAX extended header of"),
    "gnu-long-name-first": (dict(hostile=GNU_LONG_HUGE, at="first"), "GNU long name of"),
    "gnu-long-name-between": (dict(hostile=GNU_LONG_HUGE, at="between"), "GNU long name of"),
    "gnu-long-name-last": (dict(hostile=GNU_LONG_HUGE, at="last"), "GNU long name of"),
    "pax-chain-between": (dict(raw_member=pax_chain(3000), at="between"),
                          "extended headers in a row"),
    "pax-global-last": (dict(raw_member=_header("././@PaxGlobal", 0, tarfile.XGLTYPE,
                                                tarfile.USTAR_FORMAT), at="last"),
                        "PAX global header"),
    "deep-json-manifest": (dict(manifest=b"[" * 200_000), "more than 40 levels deep"),
    "manifest-over-limit": (dict(manifest=tiny_manifest(tiny_files(), model_card="x" * (5 * MIB))),
                            "more than the 4,194,304 allowed"),
    "manifest-millions-of-entries": (dict(manifest=b'{"artifacts": [' + b"{}," * 1_300_000
                                          + b"{}]}"), "entries"),
    "deep-json-signature": (dict(signature=b"[" * 60_000), "signature member holds more"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_package_is_refused_by_the_cli_within_fixed_memory(
        case: str, good_peak: int, tmp_path: Path) -> None:
    kwargs, expected = HOSTILE[case]
    home = Home.resolve(tmp_path / "home")
    with Catalog.open(home):
        pass
    pkg = write_package(tmp_path / f"{case}.llmpkg", **kwargs)
    before, around = snapshot(home), outside(tmp_path, home)
    proc, peak = llmops_measured(home, "import", str(pkg), "--allow-unsigned")
    assert proc.returncode == 5, (proc.returncode, proc.stderr[-3000:])
    assert expected in proc.stderr, proc.stderr[-3000:]
    assert "othing was imported" in proc.stderr or "refused" in proc.stderr
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr
    assert peak < good_peak + MARGIN_KIB, (peak, good_peak)
    assert snapshot(home) == before
    assert outside(tmp_path, home) == around


# ---- registries --------------------------------------------------------------------------------


def llmops(home: Home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmops_desktop.cli", "--home", str(home.root),
                           *args], capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL)


def test_registry_with_hostile_packages_and_index_lists_the_rest(tmp_path: Path,
                                                                 good_peak: int) -> None:
    share = tmp_path / "share"
    share.mkdir()
    write_package(share / "good-one.llmpkg", tiny_files("one"), name="good-one")
    write_package(share / "good-two.llmpkg", tiny_files("two"), name="good-two")
    write_package(share / "bad-pax.llmpkg", hostile=PAX_HUGE, at="first")
    write_package(share / "bad-json.llmpkg", manifest=b"[" * 200_000)
    (share / "index.json").write_bytes(b"[" * 200_000)
    home = Home.resolve(tmp_path / "home")
    assert llmops(home, "registry", "add", "team", str(share)).returncode == 0

    proc, peak = llmops_measured(home, "registry", "list", "team", "--json")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert peak < good_peak + MARGIN_KIB, (peak, good_peak)
    rows = json.loads(proc.stdout)
    by_name = {r["name"]: r for r in rows if "name" in r}
    assert by_name["good-one"]["ref"] == "good-one@1" and by_name["good-one"]["verified"]
    assert by_name["good-two"]["status"] == "approved" and not by_name["good-two"].get("refused")
    assert "PAX extended header" in by_name["bad-pax"]["refused"]
    assert "levels deep" in by_name["bad-json"]["refused"]
    assert any("index.json" in r.get("error", "") and "levels deep" in r["error"] for r in rows)

    text = llmops(home, "registry", "list", "team")
    assert text.returncode == 0, text.stderr
    assert "team/bad-pax" in text.stdout and "REFUSED" in text.stdout
    assert "team/good-one" in text.stdout and "unsigned" in text.stdout

    pulled = llmops(home, "pull", "team/good-two", "--allow-unsigned", "--json")
    assert pulled.returncode == 0, pulled.stderr
    assert json.loads(pulled.stdout)["model"] == "good-two"
    refused = llmops(home, "pull", "team/bad-pax", "--allow-unsigned")
    assert refused.returncode == 5 and "PAX extended header" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_registry_listing_is_verified_not_taken_from_the_index(tmp_path: Path) -> None:
    """An index that says "signed, approved" for a package that is neither (or that was
    swapped for a hostile one) is listed as the packages themselves say."""
    share = tmp_path / "share"
    share.mkdir()
    write_package(share / "claims.llmpkg", tiny_files("c"), name="claims")
    write_package(share / "swapped.llmpkg", manifest=b"[" * 200_000)
    lie = {"signed_by": "SHA256:" + "A" * 43, "status": "approved", "ref": "claims@1",
           "model": "claims", "version": 1}
    (share / "index.json").write_text(json.dumps({
        "format": "llmops-registry", "format_version": 1, "packages": [
            {**lie, "name": "claims", "file": "claims.llmpkg"},
            {**lie, "name": "swapped", "file": "swapped.llmpkg"},
            {**lie, "name": "escape", "file": "../../etc/passwd"}]}))
    home = Home.resolve(tmp_path / "home")
    llmops(home, "registry", "add", "team", str(share))
    proc = llmops(home, "registry", "list", "team", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["claims"]["verified"] and rows["claims"]["signed_by"] is None
    assert "levels deep" in rows["swapped"]["refused"] and rows["swapped"]["signed_by"] is None
    assert "not a file in the registry folder" in rows["escape"]["refused"]
    assert not rows["escape"]["available"]


# ---- what the user accepted is what is imported ------------------------------------------------


def _run_job(catalog: Catalog, params: dict[str, Any]) -> Any:
    final = None
    for ev in runner.start(catalog, "import-package", params).events():
        if isinstance(ev, (Result, Error)):
            final = ev
    return final


def test_accepted_unsigned_package_that_changes_before_the_job_is_refused(
        home: Home, catalog: Catalog, tmp_path: Path) -> None:
    from llmops_desktop.share.unpack import inspect_package

    # `llmops import FILE --allow-unsigned` binds its job to the manifest it read.
    first = write_package(tmp_path / "first.llmpkg", tiny_files("first"), name="first")
    proc = llmops(home, "import", str(first), "--allow-unsigned", "--json")
    assert proc.returncode == 0, proc.stderr
    (job,) = catalog.jobs()
    assert job.params["accept_manifest_sha256"] == inspect_package(home, first).manifest_sha256

    # The user accepted this package as shown ...
    pkg = write_package(tmp_path / "shared.llmpkg", tiny_files("original"), name="original")
    shown = inspect_package(home, pkg).manifest_sha256
    # ... and the file is swapped for another package before the job reads it.
    other = write_package(tmp_path / "other.llmpkg", tiny_files("evil"), name="replaced")
    os.replace(other, pkg)
    before = snapshot(home)
    final = _run_job(catalog, {"path": str(pkg), "allow_unsigned": True,
                               "accept_manifest_sha256": shown})
    assert isinstance(final, Error), final
    assert "changed after you accepted it" in final.message
    assert "Nothing was imported" in final.message
    assert snapshot(home) == before
    assert [a.model_name for a in catalog.artifacts()] == ["first"]
    # Accepting the file as it is now works.
    final = _run_job(catalog, {"path": str(pkg), "allow_unsigned": True,
                               "accept_manifest_sha256": inspect_package(home, pkg)
                               .manifest_sha256})
    assert isinstance(final, Result), final
    assert catalog.resolve("replaced").model_name == "replaced"


def test_cli_question_answered_after_the_file_changed_is_refused(tmp_path: Path) -> None:
    """The user is asked on a terminal; while they read the question the package is
    replaced; their "y" applies to what they were shown, so the import is refused."""
    import pty

    pkg = write_package(tmp_path / "shared.llmpkg", tiny_files("original"), name="original")
    other = write_package(tmp_path / "other.llmpkg", tiny_files("evil"), name="replaced")
    home = Home.resolve(tmp_path / "home")
    with Catalog.open(home):
        pass
    before = snapshot(home)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "llmops_desktop.cli", "--home",
                             str(home.root), "import", str(pkg)], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    os.close(slave)
    asked = b""
    deadline = time.monotonic() + 120
    while b"[y/N]" not in asked and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stderr], [], [], 1.0)
        if ready:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            asked += chunk
    assert b"is not signed" in asked and b"manifest sha256" in asked, asked
    os.replace(other, pkg)
    os.write(master, b"y\n")
    out, err = proc.communicate(timeout=300)
    os.close(master)
    err = (asked + err).decode()
    assert proc.returncode == 5, err
    assert "changed after you accepted it" in err and "Traceback" not in err
    assert snapshot(home) == before


# ---- registering never deletes a store folder --------------------------------------------------


def test_import_never_deletes_a_store_folder_in_the_way(home: Home, catalog: Catalog,
                                                         tmp_path: Path) -> None:
    from llmops_desktop.hashing import content_digest
    from llmops_desktop.share.package import slug

    files = tiny_files("store")
    pkg = write_package(tmp_path / "p.llmpkg", files, name="in-the-way")
    digest = content_digest((p, hashlib.sha256(d).hexdigest()) for p, d in files.items())
    leftover = home.models_dir / f"{slug('in-the-way')}-{digest[:12]}"
    leftover.mkdir(parents=True)
    (leftover / "keep.txt").write_text("someone's files")
    final = _run_job(catalog, {"path": str(pkg), "allow_unsigned": True})
    assert isinstance(final, Result), final
    assert (leftover / "keep.txt").read_text() == "someone's files"
    artifact = catalog.resolve("in-the-way")
    assert artifact.path.parent == leftover.with_name(leftover.name + "-2")
    assert artifact.path.read_bytes() == files["model.gguf"]
