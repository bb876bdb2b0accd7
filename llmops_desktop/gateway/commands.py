"""``llmops gateway`` (one address for every model) and ``llmops apikey`` (keys per person)."""

from __future__ import annotations

import argparse
import sys

from llmops_desktop.errors import InvalidInputError


def cmd_gateway(args: argparse.Namespace) -> int:
    import json

    from llmops_desktop.gateway.run import GatewayOptions, run_gateway

    options = GatewayOptions(host=args.host, port=args.port, idle_unload=args.idle_unload,
                             memory_budget_gb=args.memory_budget,
                             load_timeout=args.load_timeout, gpus=args.gpus)

    def ready(info: dict) -> None:
        if args.json:  # one line a script (or a test) waits for
            print(json.dumps({"type": "ready", **info}), flush=True)
        print(f"Gateway on {info['url']} (OpenAI base URL {info['url']}/v1); "
              f"{len(info['models'])} model(s) on demand: {', '.join(info['models']) or 'none'}",
              file=sys.stderr, flush=True)

    def states(models: list) -> None:  # the window's Gateway panel reads these lines
        print(json.dumps({"type": "models", "models": models}), flush=True)

    run_gateway(options, home=getattr(args, "home", None), on_ready=ready,
                on_state=states if args.json else None)
    return 0


def cmd_apikey(args: argparse.Namespace) -> int:
    from llmops_desktop.cli import common as cli
    from llmops_desktop.gateway.keys import create_key, list_keys, revoke_key

    catalog = cli.open_catalog(args)
    if args.action in ("create", "revoke") and not args.name:
        raise InvalidInputError(f"Say whose key: 'llmops apikey {args.action} NAME'.")
    if args.action == "create":
        key, text = create_key(catalog, args.name, models=args.models, rpm=args.rpm,
                               tpm=args.tpm, expires=args.expires)
        if args.json:
            cli.print_json({**key.to_json(), "key": text})
        else:
            print(text)
            print(f"API key for {key.name} (scope {key.models}). It is shown only now and kept "
                  "nowhere: hand it over, then clear your terminal.", file=sys.stderr)
        return 0
    if args.action == "revoke":
        key = revoke_key(catalog, args.name)
        if args.json:
            cli.print_json(key.to_json())
        else:
            print(f"Revoked {key.name} ({key.revoked_at[:19].replace('T', ' ')} UTC)")
        return 0
    keys = list_keys(catalog)
    if args.json:
        cli.print_json([k.to_json() for k in keys])
        return 0
    if not keys:
        print("No API keys yet: 'llmops apikey create NAME' makes one per person.",
              file=sys.stderr)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    for column in ("Name", "Key id", "Models", "RPM", "TPM", "Requests", "Tokens",
                   "Last used", "Expires", "State"):
        table.add_column(column)
    for k in keys:
        state = "revoked" if k.revoked_at else "expired" if k.expired() else "active"
        table.add_row(k.name, k.key_id, k.models, str(k.rpm or "-"), str(k.tpm or "-"),
                      str(k.requests), str(k.prompt_tokens + k.completion_tokens),
                      (k.last_used_at or "never")[:19].replace("T", " "),
                      (k.expires_at or "never")[:10], state)
    Console().print(table)
    return 0


def register(add) -> None:
    add_gateway_arguments(add("gateway", cmd_gateway, GATEWAY_HELP))
    sp = add("apikey", cmd_apikey, "API keys per person for the gateway: create NAME, list, "
             "revoke NAME")
    sp.add_argument("action", nargs="?", default="list", choices=("create", "list", "revoke"))
    sp.add_argument("name", nargs="?", help="whose key (a person or an app)")
    sp.add_argument("--models", default="*", metavar="GLOB",
                    help="models the key may use: globs over NAME or NAME@VERSION, "
                         "comma-separated (default: all)")
    sp.add_argument("--rpm", type=int, metavar="N", help="requests per minute, at most")
    sp.add_argument("--tpm", type=int, metavar="N", help="tokens per minute, at most")
    sp.add_argument("--expires", metavar="DATE", help="the key stops working then "
                    "(YYYY-MM-DD, UTC)")


GATEWAY_HELP = ("one OpenAI-compatible address for every model: loaded on demand, unloaded "
                "when idle, a key per person")


def add_gateway_arguments(sp: argparse.ArgumentParser) -> None:
    from llmops_desktop.gateway.run import DEFAULT_GATEWAY_PORT

    sp.add_argument("--host", default="127.0.0.1",
                    help="address to listen on; anything but loopback needs an API key "
                         "('llmops apikey create NAME')")
    sp.add_argument("--port", type=int, default=DEFAULT_GATEWAY_PORT,
                    help=f"TCP port (default {DEFAULT_GATEWAY_PORT}; 0 picks a free one)")
    sp.add_argument("--idle-unload", type=float, default=600.0, metavar="SECONDS",
                    help="stop a model's deployment after this long without requests "
                         "(default 600; 0: never)")
    sp.add_argument("--memory-budget", type=float, metavar="GB",
                    help="GiB all loaded models may hold together (GPU memory where "
                         "offloaded, RAM otherwise); the least recently used idle one is "
                         "unloaded to make room")
    sp.add_argument("--load-timeout", type=float, default=180.0, metavar="SECONDS",
                    help="how long a request waits for its model to load before a 503")
    sp.add_argument("--gpus", metavar="0,1", help="GPUs the deployments may use "
                    "(CUDA_VISIBLE_DEVICES of each deployment)")
