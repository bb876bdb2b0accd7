"""``python -m llmops_desktop.serving``: one deployment as a child process of the window.

Writes JSON lines on stdout, as job children do: a ``log`` line and then a ``result``
line ``{"type": "result", "data": {"url", "deployment_id", "name", "model", "engine",
"n_ctx", "parallel", "pid"}}`` once it accepts connections (``--port 0`` picks a free
port; the line says which), one ``log`` line per request, and an ``error`` line if it
cannot start. The API key comes from ``$LLMOPS_API_KEY`` only: a command line is visible
to every user of the machine. SIGTERM stops it cleanly (the request log is written
first) with exit code 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from llmops_desktop.errors import LLMOpsError


def _emit(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    from llmops_desktop.httpserve import log_as_json_lines
    from llmops_desktop.serving.config import add_serve_arguments, options_from_args
    from llmops_desktop.serving.run import serve

    p = argparse.ArgumentParser(prog="python -m llmops_desktop.serving",
                                description="Serve one catalog artifact over an "
                                            "OpenAI-compatible HTTP API.")
    p.add_argument("--home", help="data home (default: $LLMOPS_HOME or the user data folder)")
    p.add_argument("--artifact", required=True,
                   help="artifact id, model name (latest version) or NAME@VERSION")
    add_serve_arguments(p)
    args = p.parse_args(argv)

    log_as_json_lines(sys.stdout)

    def ready(info: dict[str, Any]) -> None:
        _emit({"type": "log", "message": f"serving {info['name']} on {info['url']}",
               "level": "info"})
        _emit({"type": "result", "data": info})

    try:
        serve(args.artifact, options_from_args(args), home=args.home, on_ready=ready)
    except LLMOpsError as exc:
        _emit({"type": "error", **exc.to_event()})  # class, message, exit code, fields
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
