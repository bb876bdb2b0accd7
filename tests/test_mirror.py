"""The team mirror, driven by the real hub clients: huggingface_hub, the hf CLI, transformers.

Every test starts ``python -m llmops_desktop.mirror`` on 127.0.0.1 (a free port), as
the window does, and talks to it over loopback only.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from importing import sha256
from mirror_fixtures import client_env, import_artifact, mirror_command, running_mirror

from llmops_desktop.catalog import Artifact, Catalog

HF_REPO = "acme/tiny-llama"
GGUF_REPO = "acme/tiny-llama-gguf"
TOKEN = "s3cret-mirror-token-4242"


@pytest.fixture
def models(catalog: Catalog, demo_model_dir: Path, demo_gguf: Path) -> dict[str, Artifact]:
    return {HF_REPO: import_artifact(catalog, demo_model_dir, HF_REPO),
            GGUF_REPO: import_artifact(catalog, demo_gguf, GGUF_REPO)}


@pytest.fixture
def mirror(home, models):
    with running_mirror(home.root) as m:
        yield m


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """huggingface_hub in this process, online but only towards the mirror."""
    from huggingface_hub import constants

    # a fresh, empty agent registry on disk: the client then never asks huggingface.co for it
    registry = tmp_path / "agent-harnesses.json"
    registry.write_text('{"standardEnvVars": [], "harnesses": {}}')
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(registry))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return constants


def _catalog_hashes(catalog: Catalog, artifact: Artifact) -> dict[str, str]:
    return {f.relpath: f.sha256 for f in catalog.files(artifact.id)}


def _tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and ".cache" not in p.relative_to(root).parts}


def _request(url: str, method: str = "GET", path: str = "/", headers: dict | None = None
             ) -> tuple[int, dict[str, str], bytes]:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# ---- 1. huggingface_hub downloads ------------------------------------------------------------

def test_snapshot_download_and_hf_hub_download_are_byte_identical(
        mirror, models, catalog, hub, tmp_path) -> None:
    from huggingface_hub import hf_hub_download, snapshot_download

    hf = models[HF_REPO]
    snap = Path(snapshot_download(HF_REPO, endpoint=mirror.url, cache_dir=tmp_path / "c"))
    assert snap.name == json.loads(_request(mirror.url, path=f"/api/models/{HF_REPO}")[2])["sha"]
    assert _tree_hashes(snap) == _catalog_hashes(catalog, hf)
    # huggingface_hub names each cached blob by the ETag: our ETag is the file's sha256
    blobs = {p.name for p in (tmp_path / "c" / "models--acme--tiny-llama" / "blobs").iterdir()}
    assert blobs == set(_catalog_hashes(catalog, hf).values())

    gguf = models[GGUF_REPO]
    (name, digest), = _catalog_hashes(catalog, gguf).items()
    path = Path(hf_hub_download(GGUF_REPO, name, endpoint=mirror.url, cache_dir=tmp_path / "c"))
    assert sha256(path) == digest == sha256(gguf.path)
    assert mirror.url.startswith("http://127.0.0.1:")


# ---- 2. transformers ---------------------------------------------------------------------------

LOAD = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
remote = AutoModelForCausalLM.from_pretrained(sys.argv[1])
tok = AutoTokenizer.from_pretrained(sys.argv[1])
local = AutoModelForCausalLM.from_pretrained(sys.argv[2])
ids = tok("the quick brown fox", return_tensors="pt").input_ids
with torch.no_grad():
    same = torch.equal(remote(ids).logits, local(ids).logits)
print(json.dumps({"same_logits": same, "tokens": ids.shape[1], "vocab": len(tok),
                  "model": type(remote).__name__}))
"""


def test_transformers_from_pretrained_through_hf_endpoint(mirror, models, tmp_path) -> None:
    env = client_env(mirror.url, tmp_path, HF_HUB_DISABLE_XET="1")
    proc = subprocess.run([sys.executable, "-c", LOAD, HF_REPO, str(models[HF_REPO].path)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same_logits"] and result["tokens"] > 1 and result["vocab"] > 100
    assert result["model"] == "LlamaForCausalLM"
    # it really went through the mirror: the files sit in the private hub cache
    assert (tmp_path / "hf-cache" / "models--acme--tiny-llama" / "snapshots").is_dir()
    assert f"GET /{HF_REPO}/resolve/" in mirror.output


# ---- 3. the hf CLI -----------------------------------------------------------------------------

def test_hf_cli_download_to_local_dir(mirror, models, catalog, tmp_path) -> None:
    hf = Path(sys.executable).parent / "hf"
    dest = tmp_path / "out"
    proc = subprocess.run([str(hf), "download", HF_REPO, "--local-dir", str(dest)],
                          env=client_env(mirror.url, tmp_path), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _tree_hashes(dest) == _catalog_hashes(catalog, models[HF_REPO])


# ---- 4. the hub API ----------------------------------------------------------------------------

def test_hub_api_search_info_files_and_revisions(home, catalog, models, demo_model_dir, hub,
                                                 tmp_path) -> None:
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    v1 = models[HF_REPO]
    with running_mirror(home.root) as mirror:
        api = HfApi(endpoint=mirror.url, token=False)
        assert {m.id for m in api.list_models(search="tiny")} == {HF_REPO, GGUF_REPO}
        assert [m.id for m in api.list_models(search="gguf", author="acme")] == [GGUF_REPO]
        assert list(api.list_models(author="nobody")) == []

        info = api.model_info(HF_REPO, files_metadata=True)
        want = {f.relpath: f for f in catalog.files(v1.id)}
        assert {s.rfilename: (s.size, s.lfs.sha256, s.lfs.size) for s in info.siblings} == {
            rel: (f.size, f.sha256, f.size) for rel, f in want.items()}
        assert len(info.sha) == 40 and info.last_modified.tzinfo is not None
        assert sorted(api.list_repo_files(HF_REPO)) == sorted(want)
        sha1 = info.sha
        assert api.model_info(HF_REPO, revision=sha1).sha == sha1
        assert api.model_info(HF_REPO, revision="main").sha == sha1

        # a second version of the model becomes main; the first stays reachable by its sha
        (demo_model_dir / "generation_config.json").write_text('{"max_new_tokens": 7}\n')
        (demo_model_dir / "extra").mkdir()
        (demo_model_dir / "extra" / "notes.txt").write_text("version two\n")
        v2 = import_artifact(catalog, demo_model_dir, HF_REPO)
        assert v2.version == 2
        sha2 = api.model_info(HF_REPO).sha
        assert sha2 != sha1 and api.model_info(HF_REPO, revision="v1").sha == sha1
        assert "extra/notes.txt" in api.list_repo_files(HF_REPO)
        assert "extra/notes.txt" not in api.list_repo_files(HF_REPO, revision=sha1)
        old = hf_hub_download(HF_REPO, "generation_config.json", revision=sha1,
                              endpoint=mirror.url, cache_dir=tmp_path / "c")
        new = hf_hub_download(HF_REPO, "generation_config.json", endpoint=mirror.url,
                              cache_dir=tmp_path / "c")
        assert sha256(Path(old)) == want["generation_config.json"].sha256
        assert Path(new).read_text() == '{"max_new_tokens": 7}\n'
        assert Path(new).parent.name == sha2

        top = {e.path: type(e).__name__ for e in api.list_repo_tree(HF_REPO)}
        assert top["extra"] == "RepoFolder" and "extra/notes.txt" not in top
        assert [e.path for e in api.list_repo_tree(HF_REPO, path_in_repo="extra")] == [
            "extra/notes.txt"]
        deep = [e.path for e in api.list_repo_tree(HF_REPO, recursive=True)]
        assert "extra" in deep and "extra/notes.txt" in deep
        with pytest.raises(EntryNotFoundError):
            list(api.list_repo_tree(HF_REPO, path_in_repo="no-such-folder"))
        with pytest.raises(RevisionNotFoundError):
            api.model_info(HF_REPO, revision="f" * 40)
        refs = api.list_repo_refs(HF_REPO)
        assert [b.target_commit for b in refs.branches] == [sha2]
        assert {t.name: t.target_commit for t in refs.tags} == {"v1": sha1, "v2": sha2}


# ---- 5. raw HTTP -------------------------------------------------------------------------------

def test_resolve_headers_ranges_and_errors(mirror, models, catalog) -> None:
    gguf = models[GGUF_REPO]
    data = gguf.path.read_bytes()
    size = len(data)
    url = f"/{GGUF_REPO}/resolve/main/{gguf.path.name}"
    status, head, body = _request(mirror.url, "HEAD", url)
    commit = head["x-repo-commit"]
    assert status == 200 and body == b"" and len(commit) == 40
    assert head["etag"] == f'"{sha256(gguf.path)}"'
    assert int(head["content-length"]) == size and head["accept-ranges"] == "bytes"
    assert not [k for k in head if k.startswith("x-xet") or k == "link"]

    status, head, body = _request(mirror.url, "GET", url, {"Range": "bytes=100-1123"})
    assert status == 206 and head["content-range"] == f"bytes 100-1123/{size}"
    assert body == data[100:1124] and head["x-repo-commit"] == commit
    status, head, body = _request(mirror.url, "GET", url, {"Range": f"bytes={size - 10}-"})
    assert status == 206 and body == data[-10:]
    assert head["content-range"] == f"bytes {size - 10}-{size - 1}/{size}"
    status, head, _ = _request(mirror.url, "GET", url, {"Range": f"bytes={size + 5}-"})
    assert status == 416 and head["content-range"] == f"bytes */{size}"
    status, _, body = _request(mirror.url, "GET", f"/{GGUF_REPO}/resolve/{commit}/{gguf.path.name}")
    assert status == 200 and body == data

    # 8 parallel connections, as snapshot_download opens
    def piece(i: int) -> bytes:
        lo = i * size // 16
        hi = (i + 1) * size // 16 - 1
        return _request(mirror.url, "GET", url, {"Range": f"bytes={lo}-{hi}"})[2]

    with ThreadPoolExecutor(8) as pool:
        assert b"".join(pool.map(piece, range(16))) == data

    cases = [
        ("/acme/nope/resolve/main/x.gguf", "RepoNotFound"),
        ("/api/models/acme/nope", "RepoNotFound"),
        (f"/{GGUF_REPO}/resolve/{'0' * 40}/{gguf.path.name}", "RevisionNotFound"),
        (f"/api/models/{GGUF_REPO}/revision/refs%2Fpr%2F1", "RevisionNotFound"),
        (f"/{GGUF_REPO}/resolve/main/missing.bin", "EntryNotFound"),
        (f"/api/models/{GGUF_REPO}/tree/main/missing%2Fdir", "EntryNotFound"),
    ]
    for path, code in cases:
        for method in ("GET", "HEAD"):
            status, head, body = _request(mirror.url, method, path)
            assert (status, head.get("x-error-code")) == (404, code), (method, path)
            if method == "GET":
                assert json.loads(body)["error"]
            if code == "EntryNotFound":
                assert head["x-repo-commit"] == commit

    status, head, body = _request(mirror.url, "GET", f"/api/models/{GGUF_REPO}")
    info = json.loads(body)
    assert info["sha"] == commit and info["lastModified"].endswith("Z")
    assert "xetHash" not in json.dumps(info)

    # a file that changed on disk is refused with a clear message, and the mirror lives on
    gguf.path.write_bytes(data[: size // 2])
    status, head, body = _request(mirror.url, "GET", url)
    assert status == 409 and "changed on disk" in json.loads(body)["error"]
    assert "changed on disk" in _request(mirror.url, "HEAD", url)[1]["x-error-message"]
    assert _request(mirror.url, "GET", f"/api/models/{HF_REPO}")[0] == 200


def test_model_listing_paginates_with_absolute_next_links(mirror, models) -> None:
    seen, path = [], "/api/models?limit=1&full=true"
    while path:
        status, head, body = _request(mirror.url, "GET", path)
        assert status == 200
        page = json.loads(body)
        assert len(page) == 1 and page[0]["siblings"]
        seen += [m["id"] for m in page]
        link = head.get("link", "")
        assert not link or (link.startswith(f"<{mirror.url}/api/models?")
                            and link.endswith('>; rel="next"'))
        path = link[len(mirror.url) + 1:link.index(">")] if link else ""
    assert seen == sorted([GGUF_REPO, HF_REPO])


# ---- 6. the token ------------------------------------------------------------------------------

def test_token_guards_every_request_and_is_never_logged(home, models, catalog, hub,
                                                       tmp_path) -> None:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    with running_mirror(home.root, env={"LLMOPS_MIRROR_TOKEN": TOKEN}) as mirror:
        path = f"/api/models/{HF_REPO}"
        status, head, body = _request(mirror.url, "GET", path)
        assert status == 401 and "HF_TOKEN" in json.loads(body)["error"]
        assert head["www-authenticate"].startswith("Bearer")
        for wrong in ("Bearer nope", f"Bearer {TOKEN}x", TOKEN, f"Basic {TOKEN}"):
            assert _request(mirror.url, "GET", path, {"Authorization": wrong})[0] == 401
        assert _request(mirror.url, "HEAD", f"/{HF_REPO}/resolve/main/config.json")[0] == 401
        assert _request(mirror.url, "GET", path, {"Authorization": f"Bearer {TOKEN}"})[0] == 200

        with pytest.raises(HfHubHTTPError, match="401"):
            snapshot_download(HF_REPO, endpoint=mirror.url, cache_dir=tmp_path / "c0",
                              token="wrong-token")
        snap = Path(snapshot_download(HF_REPO, endpoint=mirror.url, cache_dir=tmp_path / "c",
                                      token=TOKEN))
        assert _tree_hashes(snap) == _catalog_hashes(catalog, models[HF_REPO])
    assert "401" in mirror.output and "200" in mirror.output
    assert TOKEN not in mirror.output


def test_refuses_other_hosts_without_a_token(home, monkeypatch) -> None:
    from llmops_desktop.errors import InvalidInputError
    from llmops_desktop.mirror import serve

    monkeypatch.delenv("LLMOPS_MIRROR_TOKEN", raising=False)
    with pytest.raises(InvalidInputError, match="--token.*LLMOPS_MIRROR_TOKEN"):
        serve(home, host="0.0.0.0", port=-1)  # refused before binding (-1 would fail there)
    env = {k: v for k, v in os.environ.items() if k != "LLMOPS_MIRROR_TOKEN"}
    proc = subprocess.run(mirror_command(home.root, host="0.0.0.0"), capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 5
    event = json.loads(proc.stdout.strip().splitlines()[-1])
    assert event["type"] == "error" and "LLMOPS_MIRROR_TOKEN" in event["message"]


# ---- the catalog as repos (no server) ----------------------------------------------------------

def test_repo_ids_commits_and_lfs_pointers(catalog, demo_model_dir) -> None:
    from llmops_desktop.mirror.repos import (
        HubRepos,
        RevisionNotFoundError,
        git_blob_id,
        lfs_pointer,
        repo_id_for,
    )

    assert repo_id_for("acme/tiny-llama") == "acme/tiny-llama"
    assert repo_id_for("tiny") == "local/tiny"
    assert repo_id_for("team/a/b") == "local/team_a_b"
    assert repo_id_for("acme/Tiny Llama (v2)") == "acme/Tiny-Llama-v2"

    a = import_artifact(catalog, demo_model_dir, "tiny")
    repos = HubRepos(catalog)
    assert repos.repo_ids() == ["local/tiny"]
    main = repos.revision("local/tiny")
    assert main.sha == repos.revision("local/tiny", main.sha).sha == repos.revision(
        "local/tiny", "v1").sha
    assert len(main.sha) == 40 and int(main.sha, 16) >= 0
    with pytest.raises(RevisionNotFoundError, match="main, v1"):
        repos.revision("local/tiny", "dev")
    f = main.file("config.json")
    assert f.local_path == a.path / "config.json" and f.etag == f'"{sha256(f.local_path)}"'
    pointer = lfs_pointer(f.sha256, f.size)
    assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1\noid sha256:")
    git = subprocess.run(["git", "hash-object", "--stdin"], input=pointer, capture_output=True)
    if git.returncode == 0:  # the tree's oid is the pointer's real git blob id
        assert git.stdout.decode().strip() == git_blob_id(pointer) == f.blob_id
