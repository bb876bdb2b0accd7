"""``python -m llmops_desktop.cli``: the same as the ``llmops`` command."""

from __future__ import annotations

import sys

from llmops_desktop.cli import main

if __name__ == "__main__":
    sys.exit(main())
