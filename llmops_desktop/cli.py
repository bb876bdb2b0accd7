"""``llmops``: every catalog operation from a terminal, for people and for scripts.

Each command calls the same service function the window does. ``--json``
prints machine-readable output on stdout; progress goes to stderr. Exit codes:
0 ok, 1 failure, 2 usage, 3 not found, 4 conflict (duplicate, has dependents),
5 invalid input, 6 disk full, 7 catalog unusable, 8 offline, 9 refused credentials,
10 network failure, 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from llmops_desktop import __version__
from llmops_desktop.errors import CancelledError, LLMOpsError, error_from_name


def _human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _params(n: Any) -> str:
    if not isinstance(n, int):
        return ""
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.1f}{suffix}"
    return str(n)


def _print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _open_catalog(args: argparse.Namespace):
    from llmops_desktop.catalog import Catalog
    from llmops_desktop.jobs.runner import recover
    from llmops_desktop.paths import Home

    catalog = Catalog.open(Home.resolve(args.home))
    recover(catalog)
    return catalog


# ---- running a job with a progress bar ---------------------------------------------------------

def run_job_in_terminal(catalog, kind: str, params: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    """Start a job, draw its progress on stderr, return its result or raise its error."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    from rich.progress import Progress as Bar

    from llmops_desktop.jobs import runner
    from llmops_desktop.jobs.events import Error, Log, Progress, Result

    console = Console(stderr=True)
    run = runner.start(catalog, kind, params)
    result: dict[str, Any] | None = None
    error: Error | None = None
    show = not quiet and console.is_terminal
    bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
              TransferSpeedColumn(), TimeRemainingColumn(), console=console, disable=not show,
              transient=True)
    try:
        with bar:
            task = bar.add_task(f"job #{run.job_id} {kind}", total=None)
            for event in run.events():
                if isinstance(event, Progress):
                    bar.update(task, completed=event.done, total=event.total or None,
                               description=(event.message or kind)[:48])
                elif isinstance(event, Log) and not quiet:
                    if event.level in ("warning", "error") or not show:
                        console.print(f"[dim]{event.level}:[/dim] {event.message}",
                                      highlight=False)
                elif isinstance(event, Result):
                    result = event.data
                elif isinstance(event, Error):
                    error = event
    except KeyboardInterrupt:
        console.print(f"cancelling job #{run.job_id} …")
        run.cancel()
        raise CancelledError("Cancelled by the user.") from None
    job = run.wait()
    if error is not None:
        raise error_from_name(error.error_type, error.message)
    if result is None:
        raise error_from_name("JobError", job.error or f"job #{job.id} ended {job.state.value}")
    return result


# ---- commands ----------------------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    artifacts = catalog.artifacts()
    if args.filter:
        needle = args.filter.lower()
        artifacts = [a for a in artifacts if needle in " ".join(
            [a.ref, a.kind, str(a.metadata.get("architecture", "")),
             str(a.metadata.get("quantization", "")), *a.tags]).lower()]
    if args.json:
        _print_json([a.to_json() for a in artifacts])
        return 0
    if not artifacts:
        print("The catalog is empty. Try 'llmops demo' or 'llmops import PATH'.")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for col in ("ID", "Model", "Ver", "Kind", "Architecture", "Quant/dtype", "Params", "Size",
                "Parent", "Tags"):
        table.add_column(col)
    for a in artifacts:
        md = a.metadata
        table.add_row(str(a.id), a.model_name, str(a.version), a.kind,
                      str(md.get("architecture", "")),
                      str(md.get("quantization") or md.get("dtype") or ""),
                      _params(md.get("parameters")), _human_size(a.size_bytes),
                      str(a.parent_id or ""), ", ".join(a.tags))
    Console().print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    a = catalog.resolve(args.artifact)
    files = catalog.files(a.id)
    ancestors = catalog.ancestors(a.id)
    descendants = catalog.descendants(a.id)
    audit = catalog.audit_entries(artifact_id=a.id)
    from llmops_desktop.quantize.variants import variant_table

    variants = variant_table(catalog, a.id)
    if args.json:
        _print_json({**a.to_json(), "files": [f.__dict__ for f in files],
                     "evaluations": [e.to_json() for e in catalog.evaluations(a.id)],
                     "variants": variants,
                     "ancestors": [x.to_json() for x in ancestors],
                     "descendants": [x.to_json() | {"evaluations": [
                         e.to_json() for e in catalog.evaluations(x.id)]} for x in descendants],
                     "audit": [e.__dict__ for e in audit]})
        return 0
    print(f"{a.ref}  (artifact #{a.id}, {a.kind}, {a.state.value})")
    print(f"  path:     {a.path}  [{a.storage}]")
    print(f"  size:     {_human_size(a.size_bytes)} in {len(files)} files")
    print(f"  source:   {a.source}")
    print(f"  created:  {a.created_at}")
    if a.license:
        print(f"  license:  {a.license}")
    if a.description:
        print(f"  about:    {a.description[:200]}")
    if a.tags:
        print(f"  tags:     {', '.join(a.tags)}")
    for key, value in a.metadata.items():
        print(f"  {key + ':':<22}{value}")
    print("  lineage:")
    for x in reversed(ancestors):
        print(f"    {x.ref} (#{x.id}, {x.kind})")
    print(f"    * {a.ref} (#{a.id})")
    for x in descendants:
        print(f"      └ {x.ref} (#{x.id}, {x.kind}, from #{x.parent_id})")
    if len(variants) > 1:
        print("  variants:                    type          size  bits/w  perplexity  vs this")
        for v in variants:
            ppl = f"{v['perplexity']:10.3f}" if v["perplexity"] is not None else " " * 10
            delta = f"{v['perplexity_change'] * 100:+7.2f}%" if v["perplexity_change"] is not None else ""
            bpw = f"{v['bits_per_weight']:6.2f}" if v["bits_per_weight"] else "      "
            print(f"    {v['ref'][:28]:<28} {v['type']:<8} {_human_size(v['size_bytes']):>9} "
                  f"{bpw}  {ppl}  {delta}")
    print("  files:")
    for f in files:
        print(f"    {f.sha256}  {_human_size(f.size):>9}  {f.relpath}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    if args.path.lower().endswith(".llmpkg"):  # a package: verified and signed-checked
        from llmops_desktop.share.commands import cmd_import_package

        return cmd_import_package(args)
    catalog = _open_catalog(args)
    params = {"path": os.path.abspath(os.path.expanduser(args.path))
              if os.path.exists(os.path.expanduser(args.path)) else args.path,
              "name": args.name, "mode": args.mode, "allow_pickle": args.allow_pickle or None,
              "tags": args.tag or []}
    result = run_job_in_terminal(catalog, "import", params, quiet=args.json)
    return _report_artifact(args, catalog.artifact(result["artifact_id"]), "imported")


def _report_artifact(args: argparse.Namespace, artifact, verb: str, extra: str = "",
                     **json_extra: Any) -> int:
    """What a command that made an artifact prints: its JSON, or one line for people."""
    if args.json:
        _print_json({**artifact.to_json(), **json_extra})
    else:
        print(f"{verb} {artifact.ref} (artifact #{artifact.id}, "
              f"{_human_size(artifact.size_bytes)}{extra}) -> {artifact.path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    result = run_job_in_terminal(catalog, "demo", {"seed": args.seed}, quiet=args.json)
    verb = "already had demo model" if result.get("existing") else "made demo model"
    return _report_artifact(args, catalog.artifact(result["artifact_id"]), verb,
                            existing=bool(result.get("existing")))


def cmd_rm(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    artifact = catalog.resolve(args.artifact)
    removed = catalog.remove_artifact(artifact.id, cascade=args.cascade)
    if args.json:
        _print_json({"removed": [a.to_json() for a in removed]})
    else:
        for a in removed:
            kept = " (files left in place: referenced)" if a.storage == "reference" else ""
            print(f"removed {a.ref} (artifact #{a.id}){kept}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    artifact = catalog.resolve(args.artifact)
    if args.remove:
        tags = catalog.set_tags(artifact.id, remove=args.tags)
    else:
        tags = catalog.set_tags(artifact.id, add=args.tags)
    if args.json:
        _print_json({"artifact_id": artifact.id, "tags": list(tags)})
    else:
        print(f"{artifact.ref}: {', '.join(tags) or '(no tags)'}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from llmops_desktop.jobs import runner

    catalog = _open_catalog(args)
    if args.action == "cancel":
        job = runner.cancel(catalog, _need_id(args))
        if args.json:
            _print_json(job.to_json())
        else:
            print(f"job #{job.id}: {job.state.value}")
        return 0
    if args.action in ("show", "log"):
        job = catalog.job(_need_id(args))
        if args.action == "log":
            if job.log_path and job.log_path.exists():
                sys.stdout.write(job.log_path.read_text(encoding="utf-8", errors="replace"))
            return 0
        if args.json:
            _print_json(job.to_json())
        else:
            for key, value in job.to_json().items():
                print(f"{key + ':':<12}{value}")
        return 0
    jobs = catalog.jobs(limit=args.limit)
    if args.json:
        _print_json([j.to_json() for j in jobs])
        return 0
    if not jobs:
        print("No jobs yet.")
    for j in jobs:
        pct = f"{j.progress * 100:5.1f}%" if j.progress is not None else "      "
        detail = j.error or j.message
        print(f"#{j.id:<5} {j.kind:<10} {j.state.value:<12} {pct}  {j.created_at[:19]}  {detail[:80]}")
    return 0


def _need_id(args: argparse.Namespace) -> int:
    if args.job_id is None:
        raise SystemExit(f"llmops jobs {args.action}: give a job id")
    return args.job_id


def cmd_hf_cache(args: argparse.Namespace) -> int:
    from llmops_desktop.hfcache import default_cache_dir, scan_hf_cache
    from llmops_desktop.paths import Home
    from llmops_desktop.settings import load_settings

    settings = load_settings(Home.resolve(args.home).settings_path)
    cache = default_cache_dir(args.cache_dir or settings.hf_cache_dir)
    models = scan_hf_cache(cache)
    if args.json:
        _print_json({"cache_dir": str(cache), "models": [
            {**m.__dict__, "snapshot": str(m.snapshot), "refs": list(m.refs)} for m in models]})
        return 0
    if not models:
        print(f"No models in the Hugging Face cache at {cache}.")
    for m in models:
        refs = f" ({', '.join(m.refs)})" if m.refs else ""
        print(f"{m.repo_id:<48} {m.revision[:10]}{refs:<10} {_human_size(m.size_bytes):>9}  "
              f"{m.files} files")
    return 0


def cmd_settings(args: argparse.Namespace) -> int:
    from llmops_desktop.paths import Home
    from llmops_desktop.settings import Settings, load_settings, save_settings

    home = Home.resolve(args.home)
    settings = load_settings(home.settings_path)
    if args.key and args.value is not None:
        try:
            settings = settings.updated(**{args.key: args.value})
        except ValueError as exc:
            from llmops_desktop.errors import InvalidInputError

            raise InvalidInputError(str(exc)) from None
        save_settings(home.settings_path, settings)
    if args.json:
        _print_json({"home": str(home.root), **settings.to_dict()})
        return 0
    print(f"{'home':<18}{home.root}")
    for info in Settings.field_info():
        if args.key and info["name"] != args.key:
            continue
        print(f"{info['name']:<18}{getattr(settings, info['name'])!s:<12} {info['description']}")
    return 0


def _hub_client(args: argparse.Namespace):
    from llmops_desktop.acquire.hub import HubClient
    from llmops_desktop.jobs.runner import child_env
    from llmops_desktop.paths import Home
    from llmops_desktop.secrets import get_secret
    from llmops_desktop.settings import load_settings

    home = Home.resolve(args.home)
    settings = load_settings(home.settings_path)
    # This process talks to the hub itself (search, --list): same environment as a job's.
    env = child_env(home, settings)
    os.environ.clear()
    os.environ.update(env)
    return HubClient(args.endpoint or settings.hf_endpoint, get_secret(home, "hf_token"),
                     offline=settings.offline)


def cmd_search(args: argparse.Namespace) -> int:
    client = _hub_client(args)
    found = client.search(args.query, author=args.author, limit=args.limit)
    if args.json:
        _print_json([m.__dict__ for m in found])
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
    from llmops_desktop.paths import Home

    home = Home.resolve(args.home)
    if args.partial:
        partial = list_partial_downloads(home)
        if args.json:
            _print_json([{**p.__dict__, "folder": str(p.folder)} for p in partial])
        elif not partial:
            print("No paused or interrupted downloads.")
        for p in partial:
            print(f"{p.repo_id}@{p.commit[:10]}  {_human_size(p.bytes_on_disk)} of "
                  f"{_human_size(p.total_bytes)}  ({p.endpoint})")
        return 0
    if not args.repo_id:
        raise SystemExit("llmops download: give a repo id (or --partial)")
    client = _hub_client(args)
    if args.list or args.discard:
        snapshot = client.snapshot(args.repo_id, args.revision)
        if args.discard:
            gone = discard_download(home, download_key(client.endpoint, args.repo_id,
                                                       snapshot.commit))
            print("discarded the partial download" if gone else "no partial download to discard")
            return 0
        chosen = {f.path for f in snapshot.select(args.include or (), args.exclude or ())}
        if args.json:
            _print_json(summary_to_json(snapshot) | {"selected": sorted(chosen)})
            return 0
        print(f"{snapshot.repo_id}@{snapshot.revision} = {snapshot.commit}  {snapshot.license}")
        for f in snapshot.files:
            mark = "*" if f.path in chosen else " "
            print(f" {mark} {_human_size(f.size or 0):>9}  {f.path}")
        return 0
    catalog = _open_catalog(args)
    params = {"repo_id": args.repo_id, "revision": args.revision,
              "include": args.include or [], "exclude": args.exclude or [], "name": args.name,
              "endpoint": client.endpoint}
    try:
        result = run_job_in_terminal(catalog, "download", params, quiet=args.json)
    except CancelledError:
        print("paused: what arrived is kept; run the same command again to resume, or add "
              "--discard to throw it away.", file=sys.stderr)
        raise
    return _report_artifact(args, catalog.artifact(result["artifact_id"]), "downloaded",
                            f", commit {result['commit'][:10]}")


def cmd_quantize(args: argparse.Namespace) -> int:
    from llmops_desktop.quantize.targets import BNB_MODES, GGUF_TARGETS, estimate
    from llmops_desktop.quantize.task import plan_targets

    if args.list_targets:
        rows = [{"target": t.name, "bits_per_weight": t.bits_per_weight,
                 "description": t.description} for t in GGUF_TARGETS.values()]
        rows += [{"target": m, "bits_per_weight": None, "description": "bitsandbytes "
                  "checkpoint for the torch engine"} for m in BNB_MODES]
        if args.json:
            _print_json(rows)
        else:
            for r in rows:
                bits = f"{r['bits_per_weight']:5.2f}" if r["bits_per_weight"] else "     "
                print(f"{r['target']:<9} {bits}  {r['description']}")
        return 0
    if not args.artifact or not args.to:
        raise SystemExit("llmops quantize: give an ARTIFACT and at least one --to TARGET "
                         "(--list-targets shows them)")
    catalog = _open_catalog(args)
    parent = catalog.resolve(args.artifact)
    plan = plan_targets(parent, args.to, force=args.force)
    if args.estimate:
        est = {t: estimate(parent.metadata, t) for t in plan}
        if args.json:
            _print_json(est)
        else:
            for t, e in est.items():
                print(f"{t:<9} ~{_human_size(e['size_bytes']):>9} on disk, "
                      f"~{_human_size(e['memory_bytes']):>9} to run at {e['context']} tokens")
        return 0
    params = {"artifact_id": parent.id, "targets": plan, "keep_intermediate": args.keep_f16,
              "threads": args.threads, "eval_text": os.path.abspath(args.eval_text)
              if args.eval_text else None, "force": args.force, "evaluate": not args.no_eval}
    result = run_job_in_terminal(catalog, "quantize", params, quiet=args.json)
    made = [catalog.artifact(i) for i in result.get("artifact_ids", [])]
    if args.json:
        _print_json({"artifacts": [a.to_json() | {"evaluations": [
            e.to_json() for e in catalog.evaluations(a.id)]} for a in made],
            "perplexity": result.get("perplexity", {})})
        return 0
    ppl = result.get("perplexity", {})
    base = ppl.get("parent")
    for a in made:
        label = str(a.params.get("target", ""))
        figure = ppl.get(label)
        delta = f" ({(figure / base - 1) * 100:+.2f}% vs parent)" if figure and base else ""
        shown = f", perplexity {figure:.3f}{delta}" if figure else ""
        print(f"made {a.ref} (artifact #{a.id}, {_human_size(a.size_bytes)}){shown}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from llmops_desktop.serving.config import options_from_args
    from llmops_desktop.serving.run import serve

    serve(args.artifact, options_from_args(args), home=args.home, api_key=args.api_key)
    return 0


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


# ---- parser ------------------------------------------------------------------------------------

# Modules that add their own commands: each has ``register(add)``, where ``add(name, fn,
# help)`` returns the subcommand's parser (with ``--json`` already on it).
COMMAND_MODULES: tuple[str, ...] = (
    "llmops_desktop.datasets.commands",
    "llmops_desktop.finetune.commands",
    "llmops_desktop.monitor.commands",
    "llmops_desktop.serving.commands",
    "llmops_desktop.share.commands",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from llmops_desktop.settings import Settings

    help_of = {i["name"]: i["description"] for i in Settings.field_info()}
    p = argparse.ArgumentParser(prog="llmops", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Exit codes: 0 ok, 1 failure, 2 usage, 3 not found, "
                                       "4 conflict, 5 invalid input, 6 disk full, 7 catalog "
                                       "unusable, 8 offline, 9 refused credentials, 10 network "
                                       "failure, 130 cancelled.")
    p.add_argument("--version", action="version", version=f"llmops {__version__}")
    p.add_argument("--home", help="data home (default: $LLMOPS_HOME or the user data folder)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        sp.set_defaults(fn=fn)
        return sp

    sp = add("list", cmd_list, "list the artifacts in the catalog")
    sp.add_argument("--filter", help="show only artifacts whose name, kind or tags contain this")
    sp = add("show", cmd_show, "show an artifact: metadata, files with sha256, lineage")
    sp.add_argument("artifact", help="artifact id, model name (latest version) or NAME@VERSION")
    sp = add("import", cmd_import, "import a model folder, a .gguf file or an HF cache entry")
    sp.add_argument("path", help="a folder, a .gguf file, or a repo id in the Hugging Face cache")
    sp.add_argument("--name", help="model name in the catalog (default: from the source)")
    sp.add_argument("--mode", choices=("copy", "hardlink", "reference"),
                    help=help_of["import_mode"])
    sp.add_argument("--allow-pickle", action="store_true", help=help_of["allow_pickle"])
    sp.add_argument("--tag", action="append", help="tag the new artifact (repeatable)")
    from llmops_desktop.share.commands import add_import_flags

    add_import_flags(sp)  # --trust-unknown, --allow-unsigned for .llmpkg packages
    sp = add("rm", cmd_rm, "remove an artifact and its stored files")
    sp.add_argument("artifact")
    sp.add_argument("--cascade", action="store_true",
                    help="also remove every artifact derived from it")
    sp = add("tag", cmd_tag, "add tags to an artifact (or remove them with --remove)")
    sp.add_argument("artifact")
    sp.add_argument("tags", nargs="+")
    sp.add_argument("--remove", action="store_true")
    sp = add("jobs", cmd_jobs, "list jobs; 'jobs show|log|cancel ID'")
    sp.add_argument("action", nargs="?", default="list", choices=("list", "show", "log", "cancel"))
    sp.add_argument("job_id", nargs="?", type=int)
    sp.add_argument("--limit", type=int, default=50)
    sp = add("demo", cmd_demo, "make a tiny random-weight Llama and import it (seconds, offline)")
    sp.add_argument("--seed", type=int, default=0)
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
    sp.add_argument("--revision", default="main", help="branch, tag or commit (default: main)")
    sp.add_argument("--include", action="append", metavar="GLOB",
                    help="only files matching this glob (repeatable), e.g. '*Q4_K_M.gguf'")
    sp.add_argument("--exclude", action="append", metavar="GLOB", help="skip files matching")
    sp.add_argument("--name", help="model name in the catalog (default: the repo id)")
    sp.add_argument("--endpoint", help=help_of["hf_endpoint"])
    sp.add_argument("--list", action="store_true", help="list the repo's files; download nothing")
    sp.add_argument("--partial", action="store_true", help="list paused/interrupted downloads")
    sp.add_argument("--discard", action="store_true",
                    help="delete what a paused download already fetched")
    sp = add("quantize", cmd_quantize,
             "make GGUF variants (F16, Q8_0, Q4_K_M, …) or a bitsandbytes checkpoint; "
             "perplexity of parent and child is measured")
    sp.add_argument("artifact", nargs="?")
    sp.add_argument("--to", action="append", metavar="TARGET",
                    help="target type (repeatable): Q4_K_M, Q8_0, F16, bnb-nf4, …")
    sp.add_argument("--keep-f16", action="store_true",
                    help="keep the F16 GGUF made on the way from an HF model as an artifact")
    sp.add_argument("--threads", type=int, help=help_of["default_threads"])
    sp.add_argument("--eval-text", metavar="FILE",
                    help="held-out text for perplexity (default: the one shipped with the app)")
    sp.add_argument("--no-eval", action="store_true",
                    help="skip measuring perplexity (saves time on big models)")
    sp.add_argument("--force", action="store_true",
                    help="allow requantizing to a higher precision than the parent has")
    sp.add_argument("--estimate", action="store_true",
                    help="print each target's estimated size and memory; make nothing")
    sp.add_argument("--list-targets", action="store_true", help="list the targets")
    from llmops_desktop.serving.config import add_serve_arguments

    sp = add("serve", cmd_serve, "serve an artifact over an OpenAI-compatible HTTP API")
    sp.add_argument("artifact", help="artifact id, model name (latest version) or NAME@VERSION")
    add_serve_arguments(sp)
    sp.add_argument("--api-key", help="key clients must send (prefer LLMOPS_API_KEY: a command "
                                      "line is visible to others); required off 127.0.0.1")
    sp = add("token", cmd_token, "save a token (read from the terminal or stdin), or --clear it")
    sp.add_argument("which", choices=("hf", "mirror"))
    sp.add_argument("--clear", action="store_true")
    sp = add("mirror", cmd_mirror, "serve the catalog to colleagues as a Hugging Face mirror")
    sp.add_argument("action", choices=("serve",))
    sp.add_argument("--host", help=help_of["mirror_host"])
    sp.add_argument("--port", type=int, help=help_of["mirror_port"])
    sp.add_argument("--token", help="token clients must send (default: the saved mirror "
                                    "token or LLMOPS_MIRROR_TOKEN); required off 127.0.0.1")
    sp = add("settings", cmd_settings, "show settings, or 'settings KEY VALUE' to change one")
    sp.add_argument("key", nargs="?")
    sp.add_argument("value", nargs="?")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(add)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except LLMOpsError as exc:
        if getattr(args, "json", False):
            _print_json({"error": type(exc).__name__, "message": str(exc)})
        print(f"llmops: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("llmops: cancelled", file=sys.stderr)
        return CancelledError.exit_code
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
