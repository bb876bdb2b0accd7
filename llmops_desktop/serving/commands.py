"""``llmops deployments`` (list, stop) and ``llmops feedback`` (list, export)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from llmops_desktop.errors import InvalidInputError, NotFoundError

STOP_WAIT_S = 15.0


def cmd_deployments(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli
    from llmops_desktop.serving.store import deployment, deployments, reconcile

    catalog = cli.open_catalog(args)
    live = {d.id for d in reconcile(catalog)}  # the dead ones are marked failed first
    if args.action == "stop":
        if args.deployment_id is None:
            raise InvalidInputError("Say which: 'llmops deployments stop ID' (see "
                                    "'llmops deployments').")
        d = deployment(catalog, args.deployment_id)
        if d.id not in live or not d.pid:
            raise NotFoundError(f"Deployment #{d.id} ({d.name}) is not running ({d.state}).")
        from llmops_desktop.serving.deploy import stop_server

        stop_server(d.pid, grace=STOP_WAIT_S)  # SIGKILL if it has not stopped by then
        reconcile(catalog)  # a server that had to be killed is marked failed
        state = deployment(catalog, d.id).state
        if args.json:
            cli.print_json({"deployment_id": d.id, "state": state})
        else:
            print(f"Deployment #{d.id} ({d.name}): {state}")
        return 0 if state != "running" else 1
    rows = [d for d in deployments(catalog, limit=args.limit) if args.all or d.id in live]
    if args.json:
        cli.print_json([{**d.__dict__, "running": d.id in live} for d in rows])
        return 0
    if not rows:
        print("No deployment is running. Start one with 'llmops serve ARTIFACT' "
              "(or --all to see past ones).", file=sys.stderr)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in ("ID", "Name", "Model", "Engine", "URL", "State", "PID", "Started"):
        table.add_column(column)
    for d in rows:
        table.add_row(str(d.id), d.name, d.artifact_ref, d.engine, d.url, d.state,
                      str(d.pid or ""), (d.started_at or "")[:19].replace("T", " "))
    Console().print(table)
    return 0


def cmd_feedback(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli
    from llmops_desktop.serving.feedback import export_jsonl, feedback_rows

    catalog = cli.open_catalog(args)
    artifact_id = catalog.resolve(args.artifact).id if args.artifact else None
    if args.action == "to-dataset":
        from llmops_desktop.serving.feedback_data import cmd_to_dataset

        return cmd_to_dataset(args, catalog, artifact_id)
    if args.action == "export":
        if args.output in (None, "-"):
            n = export_jsonl(catalog, sys.stdout, artifact_id=artifact_id)
        else:
            n = export_jsonl(catalog, Path(args.output), artifact_id=artifact_id)
        print(f"{n} rated repl{'ies' if n != 1 else 'y'} exported", file=sys.stderr)
        return 0
    rows = feedback_rows(catalog, artifact_id=artifact_id)
    if args.json:
        cli.print_json([r.to_json() for r in rows])
        return 0
    for r in rows:
        mark = "+" if r.rating > 0 else "-"
        print(f"{mark} {r.ts[:19]} {r.artifact_ref or '?'}: {r.prompt[:40]!r} -> "
              f"{r.reply[:60]!r}")
    if not rows:
        print("No rated replies yet: rate replies with the thumbs in the Playground.",
              file=sys.stderr)
    return 0


def register(add) -> None:
    sp = add("deployments", cmd_deployments,
             "list running deployments (also those started elsewhere), or 'stop ID'")
    sp.add_argument("action", nargs="?", default="list", choices=("list", "stop"))
    sp.add_argument("deployment_id", nargs="?", type=int)
    sp.add_argument("--all", action="store_true", help="also stopped and failed ones")
    sp.add_argument("--limit", type=int, default=50)
    sp = add("feedback", cmd_feedback,
             "rated replies from the Playground: list, or 'export -o FILE.jsonl'")
    sp.add_argument("action", nargs="?", default="list", choices=("list", "export", "to-dataset"))
    sp.add_argument("-o", "--output", help="JSONL file to write (default: stdout)")
    sp.add_argument("--artifact", help="only replies of this artifact")
    from llmops_desktop.serving.feedback_data import add_to_dataset_arguments

    add_to_dataset_arguments(sp)


# ---- the API key of ``llmops serve``: from a file, stdin or the environment, never argv --

def add_api_key_arguments(parser: argparse.ArgumentParser) -> None:
    """``--api-key-file FILE`` for ``llmops serve``; ``--api-key`` only to refuse it."""
    from llmops_desktop.serving.config import API_KEY_ENV

    parser.add_argument("--api-key-file", metavar="FILE",
                        help=f"read the key clients must send from FILE ('-': from stdin); "
                             f"or set {API_KEY_ENV}. Required off 127.0.0.1")
    parser.add_argument("--api-key", help=argparse.SUPPRESS)  # refused: see api_key_from_args


def api_key_from_args(args: argparse.Namespace, name: str = "api_key",
                      env: str = "") -> str | None:
    """The key from ``--api-key-file`` (its first non-blank line), else None (``serve``
    then reads ``$LLMOPS_API_KEY``). A key given on the command line is refused: every
    user of the machine can read it there. No message shows the key. ``name``/``env``:
    another key's flags (``--NAME-file``, ``--NAME`` refused) and variable."""
    from llmops_desktop.netaddr import check_secret
    from llmops_desktop.serving.config import API_KEY_ENV

    variable, option = env or API_KEY_ENV, "--" + name.replace("_", "-") + "-file"
    if getattr(args, name, None) is not None:
        raise InvalidInputError(
            "An API key is not taken on the command line, where every user of this machine "
            f"can read it (ps): put it in a file only you can read and pass {option} "
            f"FILE (or {option} - and send it on stdin), or set {variable}.")
    source = getattr(args, name + "_file", None)
    if not source:
        return None
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise NotFoundError(f"No API key file {source}: write the key in it, or set "
                                f"{variable}.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"Cannot read the API key file {source} "
                                    f"({getattr(exc, 'strerror', None) or type(exc).__name__}); "
                                    "it must be UTF-8 text you can read.") from None
    key = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if not key:
        raise InvalidInputError(f"The API key file {'(stdin)' if source == '-' else source} is "
                                "empty: write the key on its first line.")
    return check_secret(key, "API key")
