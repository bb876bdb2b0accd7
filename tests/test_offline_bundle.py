"""The offline bundle, end to end: build it, then install and use it with no network.

Builds a CPU bundle with ``installers/build-offline-bundle`` (the wheels come from the
configured package indexes; llama-cpp-python from the builder's cache or pip's wheel
cache, checked to use AVX2 and nothing beyond), unpacks it, and inside a network
namespace with only loopback (``unshare -n``) installs it, runs ``llmops demo``,
quantizes the demo model, serves it and gets a completion over HTTP on 127.0.0.1, then
upgrades in place and uninstalls, keeping the catalog. Where the namespace cannot be
made, the test says so and relies on pip's ``--no-index`` (install.sh passes it and
ignores pip's configuration).

About 3-4 minutes on 2 cores (most of it pip); marked slow.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILDER = ROOT / "installers" / "build-offline-bundle"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(platform.system() != "Linux" or platform.machine() != "x86_64",
                       reason="offline bundles are built for Linux x86-64"),
]

# Inside the namespace: bring loopback up, then run the command.
NETNS_PRELUDE = "ip link set lo up 2>/dev/null || true; exec \"$@\""

# Started by the installed Python inside the same namespace: serve, ask, stop.
SERVE_AND_ASK = r"""
import json, re, socket, subprocess, sys, time, urllib.request

out = {}
try:
    socket.create_connection(("1.1.1.1", 443), timeout=3).close()
    out["outside"] = "reached"
except OSError as exc:
    out["outside"] = f"{type(exc).__name__}: {exc}"
proc = subprocess.Popen(["llmops", "serve", sys.argv[1], "--host", "127.0.0.1", "--port", "0"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
url, lines = None, []
deadline = time.monotonic() + 120
while url is None and time.monotonic() < deadline:
    line = proc.stderr.readline()
    if not line:
        break
    lines.append(line)
    m = re.search(r" on (http://127\.0\.0\.1:\d+);", line)
    url = m and m.group(1)
try:
    if url is None:
        out["error"] = "server did not start: " + "".join(lines)
    else:
        req = urllib.request.Request(
            url + "/v1/completions", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"model": sys.argv[1], "prompt": "Once upon a time",
                             "max_tokens": 8, "temperature": 0, "seed": 1}).encode())
        with urllib.request.urlopen(req, timeout=120) as resp:
            out["status"] = resp.status
            out["body"] = json.loads(resp.read())
finally:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
print(json.dumps(out))
"""


def _netns_works() -> tuple[bool, str]:
    if not shutil.which("unshare"):
        return False, "unshare is not installed"
    proc = subprocess.run(["unshare", "-n", "sh", "-c", NETNS_PRELUDE, "sh", "cat",
                           "/proc/net/dev"], capture_output=True, text=True)
    if proc.returncode != 0:
        return False, f"unshare -n failed: {proc.stderr.strip()}"
    names = [line.split(":")[0].strip() for line in proc.stdout.splitlines() if ":" in line]
    if names != ["lo"]:
        return False, f"the namespace has interfaces {names}"
    return True, "network namespace with loopback only (unshare -n)"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bundle")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(BUILDER), "--cpu", "-o", str(out / "b.tar")],
                          capture_output=True, text=True, timeout=1200)
    build_s = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-5000:] + proc.stdout
    print(proc.stdout)
    assert "size:" in proc.stdout and "built in:" in proc.stdout
    archive = out / "b.tar"
    with tarfile.open(archive) as tar:
        tar.extractall(out / "x", filter="tar")
    (folder,) = (out / "x").iterdir()
    return {"dir": folder, "archive": archive, "build_s": build_s, "stdout": proc.stdout}


def test_bundle_contents(bundle: dict) -> None:
    d: Path = bundle["dir"]
    assert {p.name for p in d.iterdir()} >= {
        "wheelhouse", "requirements.lock", "install.sh", "README.md", "SHA256SUMS",
        "BUILD-INFO.json", "llama-cpp-build-flags.txt", "bootstrap"}
    info = json.loads((d / "BUILD-INFO.json").read_text())
    assert info["flavor"] == "cpu" and info["python"] == "%d.%d" % sys.version_info[:2]
    assert info["torch"].endswith("+cpu")
    llama = info["llama_cpp_python"]
    assert "-DGGML_NATIVE=OFF" in llama["cmake_args"] and "-DGGML_AVX2=ON" in llama["cmake_args"]
    assert llama["isa_check"]["ok"], llama["isa_check"]
    # Every wheel pinned with its hash; every file in SHA256SUMS.
    wheels = sorted(p.name for p in (d / "wheelhouse").glob("*.whl"))
    lock = [line for line in (d / "requirements.lock").read_text().splitlines()
            if line and not line.startswith("#")]
    assert len(lock) == len(wheels) and all("==" in x and "--hash=sha256:" in x for x in lock)
    names = {x.split("==")[0] for x in lock}
    assert {"llmops-desktop", "torch", "llama-cpp-python", "transformers",
            "pyside6-essentials"} <= names
    sums = {line.split("  ", 1)[1] for line in (d / "SHA256SUMS").read_text().splitlines()}
    assert {f"wheelhouse/{w}" for w in wheels} | {"install.sh", "requirements.lock"} <= sums


def test_install_use_upgrade_uninstall_offline(bundle: dict, tmp_path: Path) -> None:
    d: Path = bundle["dir"]
    isolated, how = _netns_works()
    print(f"isolation: {how}" if isolated else
          f"isolation: NO network namespace here ({how}); relying on pip --no-index alone")
    home = tmp_path / "user"
    home.mkdir()
    prefix = tmp_path / "opt" / "llmops-desktop"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "HF_", "TRANSFORMERS_", "LLMOPS_", "XDG_", "VIRTUAL_ENV",
                                "PYTHON"))}
    env.update(HOME=str(home), PATH=f"{home / '.local' / 'bin'}:{env.get('PATH', '/usr/bin')}")
    times: dict[str, float] = {}

    def offline(*cmd: str, step: str, ok: bool = True, timeout: int = 600
                ) -> subprocess.CompletedProcess[str]:
        argv = (["unshare", "-n", "sh", "-c", NETNS_PRELUDE, "sh", *cmd] if isolated
                else list(cmd))
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=d,
                              timeout=timeout)
        times[step] = time.monotonic() - t0
        if ok:
            assert proc.returncode == 0, f"{step}:\n{proc.stdout}\n{proc.stderr[-5000:]}"
        return proc

    # Install: checks the sums, installs with no index, self-checks, launcher and commands.
    first = offline("./install.sh", "--prefix", str(prefix), step="install")
    assert "checking SHA256SUMS" in first.stderr and "self-check: llmops doctor" in first.stderr
    assert "The app is usable" in first.stdout or "llmops doctor" in first.stderr
    data_home = home / ".local" / "share" / "llmops-desktop"
    assert f"your data: {data_home}" in first.stdout
    assert not str(data_home).startswith(str(prefix))
    for cmd in ("llmops", "llmops-desktop"):
        link = home / ".local" / "bin" / cmd
        assert link.is_symlink() and os.access(link.resolve(), os.X_OK)
    desktop = home / ".local" / "share" / "applications" / "llmops-desktop.desktop"
    entry = dict(line.split("=", 1) for line in desktop.read_text().splitlines() if "=" in line)
    assert entry["Exec"] == f"{prefix}/bin/llmops-desktop" and Path(entry["Exec"]).exists()
    assert Path(entry["Icon"]).read_bytes() == (ROOT / "resources" / "icons" / "app.svg").read_bytes()
    assert entry["Type"] == "Application" and entry["Name"] == "LLMOps Desktop"
    first_env = (prefix / "current").resolve()

    # Use it, offline: the commands on PATH, the default data home.
    assert offline("llmops", "--version", step="version").stdout.strip().startswith("llmops ")
    offline("llmops", "demo", step="demo")
    offline("llmops", "quantize", "demo-tiny-llama", "--to", "Q8_0", "--no-eval", step="quantize")
    listed = json.loads(offline("llmops", "list", "--json", step="list").stdout)
    assert {a["ref"] for a in listed} >= {"demo-tiny-llama@1", "demo-tiny-llama-Q8_0@1"}
    ask = offline(str(prefix / "current" / "bin" / "python"), "-c", SERVE_AND_ASK,
                  "demo-tiny-llama-Q8_0", step="serve+request")
    result = json.loads(ask.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    assert result["status"] == 200 and result["body"]["usage"]["completion_tokens"] > 0
    assert isinstance(result["body"]["choices"][0]["text"], str)
    if isolated:
        assert result["outside"] != "reached"  # no route out of the namespace
    print(f"completion from the served model: {result['body']['choices'][0]['text']!r}; "
          f"outside connection: {result['outside']}")

    # A second run upgrades in place and keeps the catalog.
    offline("./install.sh", "--prefix", str(prefix), step="upgrade")
    second_env = (prefix / "current").resolve()
    assert second_env != first_env and not first_env.exists()
    assert [p.name for p in (prefix / "versions").iterdir()] == [second_env.name]
    listed_after = json.loads(offline("llmops", "list", "--json", step="list").stdout)
    assert [a["ref"] for a in listed_after] == [a["ref"] for a in listed]

    # Uninstall: app, commands and launcher go; the data stays.
    gone = offline("./install.sh", "--uninstall", "--prefix", str(prefix), step="uninstall")
    assert f"your data stays in {data_home}" in gone.stderr
    assert not prefix.exists() and not desktop.exists()
    assert not (home / ".local" / "bin" / "llmops").exists()
    with sqlite3.connect(data_home / "catalog.db") as conn:
        assert conn.execute("SELECT count(*) FROM artifacts").fetchone()[0] == len(listed)

    # A damaged bundle is refused before anything is installed.
    with open(d / "README.md", "a") as fh:
        fh.write("tampered\n")
    bad = offline("./install.sh", "--prefix", str(prefix), step="damaged", ok=False)
    assert bad.returncode == 1 and "the bundle is damaged" in bad.stderr
    assert "README.md: FAILED" in bad.stderr and not (prefix / "current").exists()

    size = bundle["archive"].stat().st_size
    print(f"bundle {size / 1e6:.0f} MB built in {bundle['build_s']:.0f} s; " +
          ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
