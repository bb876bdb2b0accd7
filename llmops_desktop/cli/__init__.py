"""``llmops``: every catalog operation from a terminal, for people and for scripts.

Each command calls the same service function the window does. ``--json``
prints machine-readable output on stdout; progress goes to stderr. Exit codes:
0 ok, 1 failure, 2 usage, 3 not found, 4 conflict (duplicate, has dependents),
5 invalid input, 6 disk full, 7 catalog unusable, 8 offline, 9 refused credentials,
10 network failure, 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llmops_desktop import __version__
from llmops_desktop.cli.common import print_json
from llmops_desktop.errors import CancelledError, LLMOpsError

# Modules that add their own commands: each has ``register(add)``, where ``add(name, fn,
# help)`` returns the subcommand's parser (with ``--json`` already on it). Their shared
# helpers live in ``llmops_desktop.cli.common``, which imports none of them.
COMMAND_MODULES: tuple[str, ...] = (
    "llmops_desktop.cli.models",
    "llmops_desktop.cli.hub",
    "llmops_desktop.datasets.commands",
    "llmops_desktop.finetune.commands",
    "llmops_desktop.monitor.commands",
    "llmops_desktop.serving.commands",
    "llmops_desktop.serving.chat_cli",
    "llmops_desktop.prompts.commands",
    "llmops_desktop.gateway.commands",
    "llmops_desktop.share.commands",
    "llmops_desktop.evaluate.commands",
    "llmops_desktop.evaluate.arena_commands",
)


def build_parser() -> argparse.ArgumentParser:
    import importlib

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
        # --home after the command too ("llmops demo --home DIR"); absent, it keeps the global one.
        sp.add_argument("--home", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.set_defaults(fn=fn)
        return sp

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
            # Its fields too: a script learns, say, the existing_id of a duplicate.
            print_json({"error": type(exc).__name__, "message": str(exc),
                        "exit_code": exc.exit_code,
                        "fields": {n: getattr(exc, n, None) for n in exc.field_names()}})
        print(f"llmops: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("llmops: cancelled", file=sys.stderr)
        return CancelledError.exit_code
    except BrokenPipeError:
        return 0
