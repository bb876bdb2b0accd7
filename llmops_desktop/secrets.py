"""Tokens, kept apart from settings, job parameters, logs and the catalog.

Each secret is one file under ``<home>/secrets/`` with mode 0600. Environment
variables win (``HF_TOKEN`` for the hub token, ``LLMOPS_MIRROR_TOKEN`` for the
mirror), so scripts need not write tokens to disk.
"""

from __future__ import annotations

import os
from pathlib import Path

from llmops_desktop.paths import Home

_ENV = {"hf_token": "HF_TOKEN", "mirror_token": "LLMOPS_MIRROR_TOKEN"}


def _path(home: Home, name: str) -> Path:
    if name not in _ENV:
        raise ValueError(f"unknown secret {name!r}")
    return home.root / "secrets" / name


def get_secret(home: Home, name: str) -> str:
    """The secret's value, or "" when none is set."""
    env = os.environ.get(_ENV[name], "").strip()
    if env:
        return env
    try:
        return _path(home, name).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def set_secret(home: Home, name: str, value: str) -> None:
    """Store (or with an empty value, forget) a secret, readable by this user only."""
    path = _path(home, name)
    if not value.strip():
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value.strip())
    os.replace(tmp, path)


def mask(value: str) -> str:
    """What a log or a form may show of a token."""
    return "" if not value else ("*" * 4 + value[-4:] if len(value) > 8 else "****")
