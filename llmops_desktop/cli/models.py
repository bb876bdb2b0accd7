"""``llmops`` commands for the catalog itself: list, show, import, rm, tag, jobs, demo,
quantize, serve, settings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from llmops_desktop.cli.common import (
    format_params,
    human_size,
    open_catalog,
    print_json,
    report_artifact,
    run_job_in_terminal,
)


def cmd_list(args: argparse.Namespace) -> int:
    catalog = open_catalog(args)
    artifacts = catalog.artifacts()
    if args.filter:
        needle = args.filter.lower()
        artifacts = [a for a in artifacts if needle in " ".join(
            [a.ref, a.kind, str(a.metadata.get("architecture", "")),
             str(a.metadata.get("quantization", "")), *a.tags]).lower()]
    if args.json:
        print_json([a.to_json() for a in artifacts])
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
                      format_params(md.get("parameters")), human_size(a.size_bytes),
                      str(a.parent_id or ""), ", ".join(a.tags))
    Console().print(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    catalog = open_catalog(args)
    a = catalog.resolve(args.artifact)
    files = catalog.files(a.id)
    ancestors = catalog.ancestors(a.id)
    descendants = catalog.descendants(a.id)
    audit = catalog.audit_entries(artifact_id=a.id)
    from llmops_desktop.quantize.variants import variant_table

    from llmops_desktop.share.evalruns import artifact_eval_runs, run_text

    variants = variant_table(catalog, a.id)
    eval_runs = artifact_eval_runs(catalog, a.id)
    if args.json:
        print_json({**a.to_json(), "files": [f.__dict__ for f in files],
                     "evaluations": [e.to_json() for e in catalog.evaluations(a.id)],
                     "eval_runs": eval_runs, "variants": variants,
                     "ancestors": [x.to_json() for x in ancestors],
                     "descendants": [x.to_json() | {"evaluations": [
                         e.to_json() for e in catalog.evaluations(x.id)]} for x in descendants],
                     "audit": [e.__dict__ for e in audit]})
        return 0
    print(f"{a.ref}  (artifact #{a.id}, {a.kind}, {a.state.value})")
    print(f"  path:     {a.path}  [{a.storage}]")
    print(f"  size:     {human_size(a.size_bytes)} in {len(files)} files")
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
        print("  variants:                    type          size  bits/w  perplexity   vs this"
              "  KL div.   top-1")
        for v in variants:
            ppl = f"{v['perplexity']:10.3f}" if v["perplexity"] is not None else " " * 10
            delta = f"{v['perplexity_change'] * 100:+7.2f}%" if v["perplexity_change"] is not None else ""
            bpw = f"{v['bits_per_weight']:6.2f}" if v["bits_per_weight"] else "      "
            kl = (f"  {v['kl_divergence']:8.2e}  {v['top1_agreement'] * 100:6.2f}%"
                  if v.get("kl_divergence") is not None and v.get("top1_agreement") is not None
                  else "")
            print(f"    {v['ref'][:28]:<28} {v['type']:<8} {human_size(v['size_bytes']):>9} "
                  f"{bpw}  {ppl}  {delta:>8}{kl}")
    if eval_runs:
        print("  evaluation runs:")
        for run in eval_runs:
            print(f"    {run_text(run)}")
    print("  files:")
    for f in files:
        print(f"    {f.sha256}  {human_size(f.size):>9}  {f.relpath}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from llmops_desktop.fields import values_from_args
    from llmops_desktop.import_request import ImportRequest

    request = ImportRequest.for_path(args.path, **values_from_args(args, ImportRequest))
    if request.is_package:  # verified and signature-checked: the package import
        from llmops_desktop.share.commands import cmd_import_package

        return cmd_import_package(args)
    catalog = open_catalog(args)
    result = run_job_in_terminal(catalog, request.check(catalog), quiet=args.json)
    return report_artifact(args, catalog.artifact(result["artifact_id"]), "imported")


def cmd_demo(args: argparse.Namespace) -> int:
    from llmops_desktop.fields import values_from_args

    catalog = open_catalog(args)
    from llmops_desktop.demo import DemoRequest

    request = DemoRequest(**values_from_args(args, DemoRequest)).check(catalog)
    result = run_job_in_terminal(catalog, request, quiet=args.json)
    verb = "already had demo model" if result.get("existing") else "made demo model"
    return report_artifact(args, catalog.artifact(result["artifact_id"]), verb,
                            existing=bool(result.get("existing")))


def cmd_rm(args: argparse.Namespace) -> int:
    catalog = open_catalog(args)
    artifact = catalog.resolve(args.artifact)
    removed = catalog.remove_artifact(artifact.id, cascade=args.cascade)
    if args.json:
        print_json({"removed": [a.to_json() for a in removed]})
    else:
        for a in removed:
            kept = " (files left in place: referenced)" if a.storage == "reference" else ""
            print(f"removed {a.ref} (artifact #{a.id}){kept}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    catalog = open_catalog(args)
    artifact = catalog.resolve(args.artifact)
    if args.remove:
        tags = catalog.set_tags(artifact.id, remove=args.tags)
    else:
        tags = catalog.set_tags(artifact.id, add=args.tags)
    if args.json:
        print_json({"artifact_id": artifact.id, "tags": list(tags)})
    else:
        print(f"{artifact.ref}: {', '.join(tags) or '(no tags)'}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from llmops_desktop.jobs import runner

    catalog = open_catalog(args)
    if args.action == "cancel":
        job = runner.cancel(catalog, _need_id(args))
        if args.json:
            print_json(job.to_json())
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
            print_json(job.to_json())
        else:
            for key, value in job.to_json().items():
                print(f"{key + ':':<12}{value}")
        return 0
    jobs = catalog.jobs(limit=args.limit)
    if args.json:
        print_json([j.to_json() for j in jobs])
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
        print_json({"home": str(home.root), **settings.to_dict()})
        return 0
    print(f"{'home':<18}{home.root}")
    for info in Settings.field_info():
        if args.key and info["name"] != args.key:
            continue
        print(f"{info['name']:<18}{getattr(settings, info['name'])!s:<12} {info['description']}")
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    from llmops_desktop.fields import values_from_args
    from llmops_desktop.quantize.targets import BNB_MODES, GGUF_TARGETS, estimate
    from llmops_desktop.quantize.task import QuantizeRequest

    if args.list_targets:
        rows = [{"target": t.name, "bits_per_weight": t.bits_per_weight,
                 "description": t.description} for t in GGUF_TARGETS.values()]
        rows += [{"target": m, "bits_per_weight": None, "description": "bitsandbytes "
                  "checkpoint for the torch engine"} for m in BNB_MODES]
        if args.json:
            print_json(rows)
        else:
            for r in rows:
                bits = f"{r['bits_per_weight']:5.2f}" if r["bits_per_weight"] else "     "
                print(f"{r['target']:<9} {bits}  {r['description']}")
        return 0
    if not args.artifact or not args.targets:
        raise SystemExit("llmops quantize: give an ARTIFACT and at least one --to TARGET "
                         "(--list-targets shows them)")
    catalog = open_catalog(args)
    parent = catalog.resolve(args.artifact)
    request = QuantizeRequest(artifact_id=parent.id,
                              **values_from_args(args, QuantizeRequest)).check(catalog)
    if args.estimate:
        est = {t: estimate(parent.metadata, t) for t in request.targets}
        if args.json:
            print_json(est)
        else:
            for t, e in est.items():
                print(f"{t:<9} ~{human_size(e['size_bytes']):>9} on disk, "
                      f"~{human_size(e['memory_bytes']):>9} to run at {e['context']} tokens")
        return 0
    result = run_job_in_terminal(catalog, request, quiet=args.json)
    made = [catalog.artifact(i) for i in result.get("artifact_ids", [])]
    if args.json:
        print_json({"artifacts": [a.to_json() | {"evaluations": [
            e.to_json() for e in catalog.evaluations(a.id)]} for a in made],
            "perplexity": result.get("perplexity", {}), "kl": result.get("kl", {})})
        return 0
    ppl = result.get("perplexity", {})
    base = ppl.get("parent")
    for a in made:
        label = str(a.params.get("target", ""))
        figure = ppl.get(label)
        delta = f" ({(figure / base - 1) * 100:+.2f}% vs parent)" if figure and base else ""
        shown = f", perplexity {figure:.3f}{delta}" if figure else ""
        kl = result.get("kl", {}).get(label) or {}
        if kl.get("kl_divergence") is not None:
            lo, hi = kl.get("kl_ci95") or (0.0, 0.0)
            shown += (f", KL divergence {kl['kl_divergence']:.3g} (95 % {lo:.3g}–{hi:.3g}, "
                      f"99th pct {kl.get('kl_p99', 0):.3g}), top-1 agreement "
                      f"{kl['top1_agreement'] * 100:.2f} %")
        print(f"made {a.ref} (artifact #{a.id}, {human_size(a.size_bytes)}){shown}")
        if kl.get("error"):
            print(f"  KL divergence not measured: {kl['error']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from llmops_desktop.serving.commands import api_key_from_args
    from llmops_desktop.serving.config import API_KEY_ENV, options_from_args
    from llmops_desktop.serving.deploy import DeployRequest
    from llmops_desktop.serving.run import serve

    # The same request the window builds, checked the same way, then served in-process.
    request = DeployRequest.from_options(
        args.artifact, options_from_args(args),
        api_key=api_key_from_args(args) or os.environ.get(API_KEY_ENV, "")).check()
    serve(request.artifact, request.options, home=args.home, api_key=request.api_key or None)
    return 0



def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    from llmops_desktop.fields import add_arguments

    sp = add("list", cmd_list, "list the artifacts in the catalog")
    sp.add_argument("--filter", help="show only artifacts whose name, kind or tags contain this")
    sp = add("show", cmd_show, "show an artifact: metadata, files with sha256, lineage")
    sp.add_argument("artifact", help="artifact id, model name (latest version) or NAME@VERSION")
    sp = add("import", cmd_import, "import a model folder, a .gguf file or an HF cache entry")
    sp.add_argument("path", help="a folder, a .gguf file, or a repo id in the Hugging Face cache")
    from llmops_desktop.import_request import ImportRequest

    add_arguments(sp, ImportRequest)  # --name, --mode, --allow-pickle, --tag
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
    from llmops_desktop.demo import DemoRequest

    add_arguments(sp, DemoRequest)  # --seed
    sp = add("quantize", cmd_quantize,
             "make GGUF variants (F16, Q8_0, Q4_K_M, …) or a bitsandbytes checkpoint; "
             "perplexity of parent and child is measured")
    sp.add_argument("artifact", nargs="?")
    from llmops_desktop.quantize.task import QuantizeRequest

    add_arguments(sp, QuantizeRequest)  # --to, --keep-f16, --threads, --eval-text, --no-eval, …
    sp.add_argument("--estimate", action="store_true",
                    help="print each target's estimated size and memory; make nothing")
    sp.add_argument("--list-targets", action="store_true", help="list the targets")
    from llmops_desktop.serving.config import add_serve_arguments

    sp = add("serve", cmd_serve, "serve an artifact over an OpenAI-compatible HTTP API")
    sp.add_argument("artifact", help="artifact id, model name (latest version) or NAME@VERSION")
    add_serve_arguments(sp)
    from llmops_desktop.serving.commands import add_api_key_arguments

    add_api_key_arguments(sp)
    sp = add("settings", cmd_settings, "show settings, or 'settings KEY VALUE' to change one")
    sp.add_argument("key", nargs="?")
    sp.add_argument("value", nargs="?")
