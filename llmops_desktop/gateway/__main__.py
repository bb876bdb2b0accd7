"""``python -m llmops_desktop.gateway ARGS``: the same as ``llmops gateway ARGS``."""

from __future__ import annotations

import sys

from llmops_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main(["gateway", *sys.argv[1:]]))
