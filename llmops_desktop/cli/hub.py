"""``llmops`` commands that reach a hub or serve one: hf-cache, search, download, token,
mirror."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from llmops_desktop.cli.common import (
    hub_client,
    human_size,
    open_catalog,
    print_json,
    report_artifact,
    run_job_in_terminal,
)
from llmops_desktop.errors import CancelledError


def cmd_hf_cache(args: argparse.Namespace) -> int:
    from llmops_desktop.hfcache import default_cache_dir, scan_hf_cache
    from llmops_desktop.paths import Home
    from llmops_desktop.settings import load_settings

    settings = load_settings(Home.resolve(args.home).settings_path)
    cache = default_cache_dir(args.cache_dir or settings.hf_cache_dir)
    models = scan_hf_cache(cache)
    if args.json:
        print_json({"cache_dir": str(cache), "models": [
            {**m.__dict__, "snapshot": str(m.snapshot), "refs": list(m.refs)} for m in models]})
        return 0
    if not models:
        print(f"No models in the Hugging Face cache at {cache}.")
    for m in models:
        refs = f" ({', '.join(m.refs)})" if m.refs else ""
        print(f"{m.repo_id:<48} {m.revision[:10]}{refs:<10} {human_size(m.size_bytes):>9}  "
              f"{m.files} files")
    return 0


def resolve_endpoint(args: argparse.Namespace) -> tuple[str, str]:
    """The hub to talk to and why: --endpoint; else the Hub endpoint setting once it was
    changed from the default; else ``HF_ENDPOINT``, as huggingface_hub's own tools do;
    else the default."""
    from llmops_desktop.paths import Home
    from llmops_desktop.settings import Settings, load_settings

    if getattr(args, "endpoint", None):
        return args.endpoint, "--endpoint"
    configured = load_settings(Home.resolve(args.home).settings_path).hf_endpoint
    default = Settings().hf_endpoint
    if configured.rstrip("/") != default.rstrip("/"):
        return configured, "the Hub endpoint setting"
    if env := os.environ.get("HF_ENDPOINT", "").strip():
        return env, "HF_ENDPOINT"
    return default, "the default; set HF_ENDPOINT or the Hub endpoint setting for a mirror"


def _token_source(args: argparse.Namespace) -> str:
    """Where the hub token comes from, in words (never the token)."""
    from llmops_desktop.paths import Home
    from llmops_desktop.secrets import get_secret

    if os.environ.get("HF_TOKEN", "").strip():
        return "the token from HF_TOKEN"
    return ("the saved hub token" if get_secret(Home.resolve(args.home), "hf_token")
            else "no token")


def _hub_client_saying_where(args: argparse.Namespace):
    """A hub client on the resolved endpoint; says on stderr which one, and why."""
    endpoint, why = resolve_endpoint(args)
    args.endpoint = endpoint
    print(f"Hub endpoint: {endpoint} (from {why}), with {_token_source(args)}.",
          file=sys.stderr)
    return hub_client(args)


def cmd_search(args: argparse.Namespace) -> int:
    client = _hub_client_saying_where(args)
    found = client.search(args.query, author=args.author, limit=args.limit)
    if args.json:
        print_json([m.__dict__ for m in found])
        return 0
    if not found:
        print(f"Nothing matches {args.query!r} at {client.endpoint}.")
    for m in found:
        print(f"{m.repo_id:<56} {m.last_modified[:10]}  "
              f"{'' if m.downloads is None else f'{m.downloads:,} downloads'}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from llmops_desktop.acquire.download import (
        discard_download,
        download_key,
        list_partial_downloads,
    )
    from llmops_desktop.acquire.hub import summary_to_json
    from llmops_desktop.acquire.requests import DownloadRequest
    from llmops_desktop.fields import values_from_args
    from llmops_desktop.paths import Home

    home = Home.resolve(args.home)
    if args.partial:
        partial = list_partial_downloads(home)
        if args.json:
            print_json([{**p.__dict__, "folder": str(p.folder)} for p in partial])
        elif not partial:
            print("No paused or interrupted downloads.")
        for p in partial:
            print(f"{p.repo_id}@{p.commit[:10]}  {human_size(p.bytes_on_disk)} of "
                  f"{human_size(p.total_bytes)}  ({p.endpoint})")
        return 0
    if not args.repo_id:
        raise SystemExit("llmops download: give a repo id (or --partial)")
    client = _hub_client_saying_where(args)
    if args.list or args.discard:
        snapshot = client.snapshot(args.repo_id, args.revision or "main")
        if args.discard:
            gone = discard_download(home, download_key(client.endpoint, args.repo_id,
                                                       snapshot.commit))
            print("discarded the partial download" if gone else "no partial download to discard")
            return 0
        chosen = {f.path for f in snapshot.select(args.include or (), args.exclude or ())}
        if args.json:
            print_json(summary_to_json(snapshot) | {"selected": sorted(chosen)})
            return 0
        print(f"{snapshot.repo_id}@{snapshot.revision} = {snapshot.commit}  {snapshot.license}")
        for f in snapshot.files:
            mark = "*" if f.path in chosen else " "
            print(f" {mark} {human_size(f.size or 0):>9}  {f.path}")
        return 0
    catalog = open_catalog(args)
    request = DownloadRequest(repo_id=args.repo_id, endpoint=client.endpoint,
                              **values_from_args(args, DownloadRequest)).check(catalog)
    try:
        result = run_job_in_terminal(catalog, request, quiet=args.json)
    except CancelledError:
        print("paused: what arrived is kept; run the same command again to resume, or add "
              "--discard to throw it away.", file=sys.stderr)
        raise
    return report_artifact(args, catalog.artifact(result["artifact_id"]), "downloaded",
                            f", commit {result['commit'][:10]}")


def cmd_token(args: argparse.Namespace) -> int:
    import getpass

    from llmops_desktop.paths import Home
    from llmops_desktop.secrets import mask, set_secret

    home = Home.resolve(args.home)
    name = f"{args.which}_token"
    if args.clear:
        set_secret(home, name, "")
        print(f"{args.which} token cleared")
        return 0
    value = (getpass.getpass(f"{args.which} token: ") if sys.stdin.isatty()
             else sys.stdin.readline())
    set_secret(home, name, value)
    print(f"{args.which} token saved ({mask(value.strip())}), readable by you only")
    return 0


def cmd_mirror(args: argparse.Namespace) -> int:
    from llmops_desktop.mirror.run import serve
    from llmops_desktop.paths import Home
    from llmops_desktop.secrets import get_secret
    from llmops_desktop.settings import load_settings

    home = Home.resolve(args.home)
    settings = load_settings(home.settings_path)
    host = args.host or settings.mirror_host
    port = args.port or settings.mirror_port
    token = args.token or get_secret(home, "mirror_token") or None
    serve(home, host=host, port=port, token=token)
    return 0



def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    from llmops_desktop.fields import add_arguments
    from llmops_desktop.settings import Settings

    help_of = {i["name"]: i["description"] for i in Settings.field_info()}
    sp = add("hf-cache", cmd_hf_cache, "list the models in the Hugging Face cache")
    sp.add_argument("--cache-dir", help=help_of["hf_cache_dir"])
    sp = add("search", cmd_search, "search the hub's (or mirror's) models")
    sp.add_argument("query", nargs="?", default="")
    sp.add_argument("--author")
    sp.add_argument("--limit", type=int, default=30)
    sp.add_argument("--endpoint", help=help_of["hf_endpoint"])
    sp = add("download", cmd_download,
             "download a repo (or some of its files) from the hub or a mirror; resumable")
    sp.add_argument("repo_id", nargs="?", help="namespace/name")
    from llmops_desktop.acquire.requests import DownloadRequest

    add_arguments(sp, DownloadRequest)  # --revision, --include, --exclude, --name, --allow-pickle
    sp.add_argument("--endpoint", help=help_of["hf_endpoint"] + " Default: the setting if "
                    "changed, else HF_ENDPOINT, else https://huggingface.co.")
    sp.add_argument("--list", action="store_true", help="list the repo's files; download nothing")
    sp.add_argument("--partial", action="store_true", help="list paused/interrupted downloads")
    sp.add_argument("--discard", action="store_true",
                    help="delete what a paused download already fetched")
    sp = add("token", cmd_token, "save a token (read from the terminal or stdin), or --clear it")
    sp.add_argument("which", choices=("hf", "mirror"))
    sp.add_argument("--clear", action="store_true")
    sp = add("mirror", cmd_mirror, "serve the catalog to colleagues as a Hugging Face mirror")
    sp.add_argument("action", choices=("serve",))
    sp.add_argument("--host", help=help_of["mirror_host"])
    sp.add_argument("--port", type=int, help=help_of["mirror_port"])
    sp.add_argument("--token", help="token clients must send (default: the saved mirror "
                                    "token or LLMOPS_MIRROR_TOKEN); required off 127.0.0.1")
