"""``python -m llmops_desktop.mirror``: the mirror as a child process of the window.

Writes JSON lines on stdout, as job children do: ``{"type": "log", "message":
"mirror listening on http://HOST:PORT", "level": "info"}`` once it accepts
connections (``--port 0`` picks a free port; the line says which), then one
``log`` line per request, and an ``error`` line if it cannot start. SIGTERM stops it
cleanly with exit code 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from llmops_desktop.errors import LLMOpsError


def _emit(message: str, level: str = "info") -> None:
    print(json.dumps({"type": "log", "message": message, "level": level}), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    from llmops_desktop.httpserve import log_as_json_lines
    from llmops_desktop.mirror.run import DEFAULT_HOST, DEFAULT_PORT, serve
    from llmops_desktop.paths import Home

    p = argparse.ArgumentParser(prog="python -m llmops_desktop.mirror",
                                description="Serve the catalog's models as a Hugging Face hub "
                                            "mirror (HF_ENDPOINT=http://HOST:PORT).")
    p.add_argument("--home", help="data home (default: $LLMOPS_HOME or the user data folder)")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default 127.0.0.1; any other needs a token)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--token", help="token clients must send as their HF token (prefer "
                                   "LLMOPS_MIRROR_TOKEN: a command line is visible to others)")
    args = p.parse_args(argv)

    log_as_json_lines(sys.stdout)
    try:
        serve(Home.resolve(args.home), args.host, args.port, args.token,
              on_ready=lambda url: _emit(f"mirror listening on {url}"))
    except LLMOpsError as exc:
        print(json.dumps({"type": "error", **exc.to_event()}), flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
