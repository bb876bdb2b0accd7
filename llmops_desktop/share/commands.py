"""``llmops export | publish | registry | pull | keys | status`` (and ``import FILE.llmpkg``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from llmops_desktop.share import errors as _errors  # noqa: F401 - registers the error types


def _cli():
    from llmops_desktop.cli import common as cli

    return cli


def _home_settings(args: argparse.Namespace):
    from llmops_desktop.paths import Home
    from llmops_desktop.settings import load_settings

    home = Home.resolve(args.home)
    return home, load_settings(home.settings_path)


def _size(n: float) -> str:
    return _cli().human_size(n)


# ---- export / publish --------------------------------------------------------------------------

def _variants(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def cmd_export(args: argparse.Namespace) -> int:
    cli = _cli()
    catalog = cli.open_catalog(args)
    artifact = catalog.resolve(args.artifact)
    if args.format == "package":
        from llmops_desktop.share.package import estimate_size, package_path_for, plan_export

        plan = plan_export(catalog, artifact.id, with_parents=args.with_parents,
                           variants=_variants(args.variants))
        size = estimate_size(catalog, plan, sign=args.sign)
        if args.estimate:
            if args.json:
                cli.print_json({"size_bytes": size, "artifacts": plan.summary()})
            else:
                for row in plan.summary():
                    print(f"{row['ref']:<32} {row['role']:<8} {row['type']:<10} "
                          f"{_size(row['size_bytes']):>10}  {row['files']} files")
                print(f"package: about {_size(size)}")
            return 0
        if not args.output:
            raise SystemExit("llmops export: give -o FILE.llmpkg (or a folder)")
        dest = package_path_for(args.output, artifact)
        if not args.json:
            print(f"exporting {len(plan.items)} artifact(s), about {_size(size)}, to {dest}",
                  file=sys.stderr)
        output = str(dest.absolute())
    else:
        if not args.output:
            raise SystemExit(f"llmops export: give -o DIR for the {args.format} folder")
        output = os.path.abspath(os.path.expanduser(args.output))
    from llmops_desktop.share.export import ExportRequest

    request = ExportRequest(artifact_id=artifact.id, output=output, format=args.format,
                            with_parents=args.with_parents, variants=_variants(args.variants),
                            sign=args.sign, system=args.system).check(catalog)
    result = cli.run_job_in_terminal(catalog, request, quiet=args.json)
    if args.json:
        cli.print_json(result)
    else:
        signed = f", signed {result['signed_by']}" if result.get("signed_by") else ""
        print(f"exported {artifact.ref} as {result['format']} -> {result['path']} "
              f"({_size(result['size_bytes'])}{signed})")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from llmops_desktop.share.registry import registry_root

    cli = _cli()
    _, settings = _home_settings(args)
    root = registry_root(settings, args.to)
    catalog = cli.open_catalog(args)
    artifact = catalog.resolve(args.artifact)
    from llmops_desktop.share.export import ExportRequest

    request = ExportRequest(artifact_id=artifact.id, format="package", registry=args.to,
                            with_parents=args.with_parents, variants=_variants(args.variants),
                            sign=not args.no_sign).check(catalog)
    result = cli.run_job_in_terminal(catalog, request, quiet=args.json)
    if args.json:
        cli.print_json(result)
    else:
        name = (result.get("published") or {}).get("name", "")
        print(f"published {artifact.ref} to {args.to} ({root}) as {args.to}/{name} "
              f"({_size(result['size_bytes'])})")
    return 0


# ---- registries --------------------------------------------------------------------------------

def cmd_registry(args: argparse.Namespace) -> int:
    from llmops_desktop.settings import save_settings
    from llmops_desktop.share.registry import (
        format_registries,
        list_packages,
        registries,
    )

    cli = _cli()
    home, settings = _home_settings(args)
    if args.action in ("add", "remove"):
        regs = registries(settings)
        if not args.name:
            raise SystemExit(f"llmops registry {args.action}: give a NAME")
        if args.action == "add":
            if not args.path:
                raise SystemExit("llmops registry add: give NAME PATH")
            path = os.path.abspath(os.path.expanduser(args.path))
            os.makedirs(path, exist_ok=True)
            regs[args.name] = Path(path)
        else:
            if args.name not in regs:
                from llmops_desktop.share.errors import RegistryNotFoundError

                raise RegistryNotFoundError(f"No registry named {args.name!r}.")
            regs.pop(args.name)
        save_settings(home.settings_path, settings.updated(registries=format_registries(regs)))
        if args.json:
            cli.print_json({n: str(p) for n, p in regs.items()})
        else:
            print(f"registries: {format_registries(regs) or '(none)'}")
        return 0
    catalog = cli.open_catalog(args)
    rows = list_packages(catalog, settings, args.name, verify=True)
    if args.json:
        cli.print_json(rows)
        return 0
    if not registries(settings):
        print("No registries yet. Add one with 'llmops registry add NAME /path/to/folder'.")
        return 0
    if not rows:
        print("The registries offer no packages yet. 'llmops publish ARTIFACT --to NAME' "
              "puts one there.")
    for r in rows:
        if "error" in r:
            print(f"{r['registry']}: {r['error']}")
            continue
        if r.get("refused"):
            print(f"{r['spec']:<44} REFUSED: {r['refused']}")
            continue
        mark = f"local ({r['local_ref']})" if r["local"] else ""
        signed = ("signed" if r.get("signed_by") else "unsigned") if r.get("verified") else \
            "missing"
        print(f"{r['spec']:<44} {str(r.get('type') or r.get('kind')):<8} "
              f"{_size(r.get('size_bytes') or 0):>10}  {str(r.get('status') or ''):<10} "
              f"{signed:<8} {mark}")
    return 0


# ---- import / pull -----------------------------------------------------------------------------

def _ask(question: str) -> bool:
    sys.stderr.write(question + " [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def decide_signature(home: Any, settings: Any, path: str, *, trust_unknown: bool,
                     allow_unsigned: bool, interactive: bool) -> tuple[dict[str, Any], Any]:
    """Read the package, ask the core's signature question (or take the flag's answer), and
    return the import job's signature parameters (or raise the refusal)."""
    from llmops_desktop.share.requests import prepare_package_import
    from llmops_desktop.share.unpack import trust_decision

    require = bool(getattr(settings, "require_signatures", False))
    request, question, info = prepare_package_import(home, path, require_signatures=require)
    if question is not None:
        answered = allow_unsigned if info.signature is None else trust_unknown
        if answered or (interactive and _ask(question.text)):
            request = question.if_accepted
    trust_decision(info, require_signatures=require, accept_fingerprint=request.accept_fingerprint,
                   allow_unsigned=request.allow_unsigned)
    return {k: v for k, v in request.to_params().items() if k != "path"}, info


def cmd_import_package(args: argparse.Namespace, path: str | None = None) -> int:
    """``llmops import FILE.llmpkg`` and ``llmops pull``: verify, ask, import as a job."""
    cli = _cli()
    home, settings = _home_settings(args)
    path = os.path.abspath(os.path.expanduser(path or args.path))
    catalog = cli.open_catalog(args)
    interactive = sys.stdin.isatty() and not getattr(args, "json", False)
    params, info = decide_signature(home, settings, path,
                                    trust_unknown=getattr(args, "trust_unknown", False),
                                    allow_unsigned=getattr(args, "allow_unsigned", False),
                                    interactive=interactive)
    if not getattr(args, "json", False):
        print(f"{info.path.name}: {info.manifest.main.ref}, {info.signer_text()}",
              file=sys.stderr)
    from llmops_desktop.share.requests import PackageImportRequest

    request = PackageImportRequest(path=path, **params)
    result = cli.run_job_in_terminal(catalog, request, quiet=getattr(args, "json", False))
    from llmops_desktop.share.evalruns import carried_runs, run_text

    main = catalog.artifact(result["artifact_id"])
    runs = {i: carried_runs(catalog, i) for i in result.get("created") or []}
    if getattr(args, "json", False):
        cli.print_json({**main.to_json(), "package": result,
                        "eval_runs": {str(i): r for i, r in runs.items() if r}})
    else:
        reused = len(result.get("reused") or [])
        extra = f", {reused} already here" if reused else ""
        print(f"imported {main.ref} (artifact #{main.id}, {_size(main.size_bytes)}{extra}; "
              f"{result.get('signature')}) -> {main.path}")
        for artifact_id, carried in runs.items():
            if carried:
                print(f"  evaluation runs of {catalog.artifact(artifact_id).ref} "
                      "(from the package):")
            for run in carried:
                print(f"    {run_text({**run, 'from_package': None})}")
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from llmops_desktop.share.registry import resolve_package

    _, settings = _home_settings(args)
    _, path, _ = resolve_package(settings, args.package)
    return cmd_import_package(args, str(path))


# ---- keys --------------------------------------------------------------------------------------

def cmd_keys(args: argparse.Namespace) -> int:
    from llmops_desktop.share import keys

    cli = _cli()
    home, _ = _home_settings(args)
    if args.action == "show":
        pair = keys.ensure_keypair(home)
        data = {"fingerprint": pair.fingerprint, "public_key": pair.public_line,
                "private_key_file": str(keys.keys_dir(home) / keys.PRIVATE_NAME)}
        if args.json:
            cli.print_json(data)
        else:
            print(f"fingerprint: {pair.fingerprint}\npublic key:  {pair.public_line}\n"
                  f"private key: {data['private_key_file']} (readable by you only)")
        return 0
    if args.action == "export-public":
        if not args.arg1:
            raise SystemExit("llmops keys export-public FILE")
        dest = keys.export_public_key(home, args.arg1)
        if args.json:
            cli.print_json({"path": str(dest)})
        else:
            print(f"wrote your public key to {dest}; give it to colleagues who import your "
                  "packages")
        return 0
    if args.action == "trust":
        if not args.arg1 or not args.arg2:
            raise SystemExit("llmops keys trust NAME KEYFILE")
        entry = keys.trust_key(home, args.arg1, args.arg2)
        if args.json:
            cli.print_json(entry.to_json())
        else:
            print(f"trusted {entry.name}: {entry.fingerprint}")
        return 0
    if args.action == "untrust":
        if not args.arg1:
            raise SystemExit("llmops keys untrust NAME")
        entry = keys.untrust_key(home, args.arg1)
        if args.json:
            cli.print_json(entry.to_json())
        else:
            print(f"removed {entry.name} ({entry.fingerprint}) from the trust list")
        return 0
    trusted = keys.trusted_keys(home)
    if args.json:
        cli.print_json([k.to_json() for k in trusted])
    elif not trusted:
        print("No trusted keys. Add a colleague's with 'llmops keys trust NAME KEYFILE'.")
    for k in trusted:
        print(f"{k.name:<20} {k.fingerprint}  (added {k.added_at[:10]} by {k.added_by})")
    return 0


# ---- governance --------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    from llmops_desktop.share.governance import get_status, set_status, status_history

    cli = _cli()
    catalog = cli.open_catalog(args)
    artifact = catalog.resolve(args.artifact)
    if args.status:
        set_status(catalog, artifact.id, args.status, args.message or "")
    history = status_history(catalog, artifact.id)
    status = get_status(catalog, artifact.id)
    if args.json:
        cli.print_json({"artifact_id": artifact.id, "ref": artifact.ref, "status": status,
                         "history": [h.to_json() for h in history]})
        return 0
    print(f"{artifact.ref}: {status}")
    for h in history:
        print(f"  {h.ts[:19]}  {h.user}@{h.host}  {h.old} -> {h.new}: {h.comment}")
    return 0


# ---- registration ------------------------------------------------------------------------------

def add_import_flags(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--trust-unknown", action="store_true",
                    help="accept a package signed by a key that is not in the trust list")
    sp.add_argument("--allow-unsigned", action="store_true",
                    help="accept an unsigned package (unless Settings require signatures)")


def register(add: Any) -> None:
    from llmops_desktop.share.governance import STATUSES

    sp = add("export", cmd_export, "export an artifact: a signed, checksummed package "
             "(.llmpkg), an Ollama folder, or a Hugging Face folder")
    sp.add_argument("artifact", help="artifact id, model name (latest version) or NAME@VERSION")
    sp.add_argument("-o", "--output", help="the package file (or a folder for it); for "
                    "--format ollama/hf the folder to write")
    sp.add_argument("--format", choices=("package", "ollama", "hf"), default="package")
    sp.add_argument("--with-parents", action="store_true",
                    help="include the artifacts it was made from (its lineage)")
    sp.add_argument("--variants", metavar="TYPES",
                    help="include GGUF variants made from it, e.g. Q4_K_M,Q8_0")
    sp.add_argument("--sign", action="store_true", help="sign the manifest with your key")
    sp.add_argument("--estimate", action="store_true",
                    help="print what goes in and the package's size; write nothing")
    sp.add_argument("--system", help="system prompt for the Ollama Modelfile (SYSTEM)")
    sp = add("publish", cmd_publish, "export a signed package into a shared-folder registry "
             "and list it in the registry's index")
    sp.add_argument("artifact")
    sp.add_argument("--to", required=True, metavar="REGISTRY", help="registry name (Settings)")
    sp.add_argument("--with-parents", action="store_true")
    sp.add_argument("--variants", metavar="TYPES")
    sp.add_argument("--no-sign", action="store_true", help="publish unsigned")
    sp = add("registry", cmd_registry, "list what registries offer ('registry list [NAME]'), "
             "or 'registry add NAME PATH' / 'registry remove NAME'")
    sp.add_argument("action", nargs="?", default="list", choices=("list", "add", "remove"))
    sp.add_argument("name", nargs="?")
    sp.add_argument("path", nargs="?")
    sp = add("pull", cmd_pull, "import a package from a registry, verifying it")
    sp.add_argument("package", metavar="REGISTRY/PACKAGE")
    add_import_flags(sp)
    sp = add("keys", cmd_keys, "your signing key and the trust list: show, export-public FILE, "
             "trust NAME FILE, untrust NAME, list")
    sp.add_argument("action", nargs="?", default="show",
                    choices=("show", "export-public", "trust", "untrust", "list"))
    sp.add_argument("arg1", nargs="?", metavar="NAME|FILE")
    sp.add_argument("arg2", nargs="?", metavar="FILE")
    sp = add("status", cmd_status, "show an artifact's governance status and its history, or "
             "change it: 'status ARTIFACT approved -m COMMENT'")
    sp.add_argument("artifact")
    sp.add_argument("status", nargs="?", choices=STATUSES)
    sp.add_argument("-m", "--message", help="why (required to change the status)")
