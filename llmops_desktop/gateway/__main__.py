"""``python -m llmops_desktop.gateway ARGS``: the same as ``llmops gateway ARGS``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from llmops_desktop.errors import LLMOpsError


def main(argv: Sequence[str] | None = None) -> int:
    from llmops_desktop.gateway.commands import GATEWAY_HELP, add_gateway_arguments, cmd_gateway

    p = argparse.ArgumentParser(prog="python -m llmops_desktop.gateway", description=GATEWAY_HELP)
    p.add_argument("--home", help="data home (default: $LLMOPS_HOME or the user data folder)")
    p.add_argument("--json", action="store_true", help="print one JSON line once it serves")
    add_gateway_arguments(p)
    args = p.parse_args(argv)
    try:
        return cmd_gateway(args)
    except LLMOpsError as exc:
        print(f"llmops gateway: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
