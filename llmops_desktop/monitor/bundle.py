"""A diagnostics bundle: one zip a user can send to whoever supports them.

It holds what ``llmops doctor`` reports (versions, GPUs, disk), the settings, the
catalog's schema state, and the recent jobs with the tail of their logs. It never
holds a secret: stored tokens are only said to be set or not, settings and job
parameters whose names look secret are hidden, and every known secret value (and
anything shaped like a token or a key) is blanked out of every text before it is
written. ``llmops doctor --bundle FILE.zip`` and Help > Save a diagnostics bundle…
both call :func:`write_bundle`.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import zipfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmops_desktop.paths import Home

HIDDEN = "[hidden]"
RECENT_JOBS = 20
LOG_TAIL_BYTES = 32 * 1024
MIN_SECRET_LEN = 6  # shorter values would blank ordinary words
# A name that says its value is secret (settings keys, job parameters, environment).
SECRET_NAME = re.compile(r"(token|secret|passw|api[_-]?key|auth|credential|private|"
                         r"(^|_)key$|signing)", re.IGNORECASE)
# Texts shaped like a credential, wherever they appear.
_SECRET_TEXT = [
    re.compile(r"\bhf_[A-Za-z0-9]{8,}"),                       # Hugging Face tokens
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),                    # OpenAI-style API keys
    re.compile(r"\bllmops-[A-Za-z0-9_\-]{12,}"),               # keys this app hands out
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}"),
    re.compile(r"(?i)\b([A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|API_?KEY|AUTH)[A-Z0-9_]*)"
               r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
]
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "LLMOPS_MIRROR_TOKEN", "LLMOPS_API_KEY",
              "OPENAI_API_KEY")


class Scrubber:
    """Blanks known secret values and credential-shaped text out of strings."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self.values: set[str] = set()
        for value in values:
            self.add(value)

    def add(self, value: object) -> None:
        if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LEN:
            self.values.add(value.strip())

    def collect(self, data: object, name: str = "") -> None:
        """Remember every value held under a secret-looking name, at any depth."""
        if isinstance(data, dict):
            for key, value in data.items():
                self.collect(value, str(key))
        elif isinstance(data, (list, tuple)):
            for value in data:
                self.collect(value, name)
        elif name and SECRET_NAME.search(name):
            self.add(str(data) if data is not None else "")

    def text(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            text = text.replace(value, HIDDEN)
        for pattern in _SECRET_TEXT:
            if pattern.groups >= 3:
                text = pattern.sub(lambda m: f"{m.group(1)}{m.group(2)}{HIDDEN}", text)
            else:
                text = pattern.sub(HIDDEN, text)
        return text

    def data(self, data: Any, name: str = "") -> Any:
        """A copy with secret-named values hidden and every string scrubbed."""
        if isinstance(data, dict):
            return {k: self.data(v, str(k)) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.data(v, name) for v in data]
        if name and SECRET_NAME.search(name) and not isinstance(data, (bool, type(None))) \
                and data != "":
            return HIDDEN
        if isinstance(data, str):
            return self.text(data)
        return data


def _secrets_state(home: Home, scrub: Scrubber) -> dict[str, bool]:
    """Which stored secrets are set (their values go to the scrubber, never the bundle)."""
    state = {}
    folder = home.root / "secrets"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            scrub.add(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            pass
        state[path.name] = True
    for name in SECRET_ENV:
        if os.environ.get(name):
            scrub.add(os.environ[name])
            state[f"${name}"] = True
    return state


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def schema_state(home: Home) -> dict[str, Any]:
    """The catalog's schema version against the app's, its tables and their row counts."""
    from llmops_desktop.catalog.schema import SCHEMA_VERSION

    out: dict[str, Any] = {"app_schema": SCHEMA_VERSION, "path": str(home.catalog_path)}
    if not home.catalog_path.exists():
        return {**out, "exists": False}
    try:
        conn = sqlite3.connect(f"file:{home.catalog_path}?mode=ro", uri=True, timeout=5)
        try:
            out["schema"] = conn.execute("PRAGMA user_version").fetchone()[0]
            out["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
            out["integrity"] = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
            out["tables"] = {t: conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
                             for t in tables}
        finally:
            conn.close()
    except sqlite3.Error as exc:
        out["error"] = str(exc)
    return out


def _recent_jobs(home: Home) -> list[Any]:
    from llmops_desktop.catalog import Catalog

    try:
        with Catalog.open(home) as catalog:
            return catalog.jobs(limit=RECENT_JOBS)
    except Exception:  # noqa: BLE001 - a broken catalog is what the bundle is for
        return []


def _log_tail(path: Path | None) -> str:
    if path is None or not path.is_file():
        return ""
    with open(path, "rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - LOG_TAIL_BYTES))
        return fh.read().decode("utf-8", errors="replace")


def write_bundle(home: Home, dest: str | os.PathLike[str]) -> Path:
    """Write the diagnostics zip to ``dest``; returns its path."""
    from llmops_desktop.monitor.doctor import doctor_report

    dest = Path(dest)
    scrub = Scrubber()
    secrets = _secrets_state(home, scrub)
    settings = _read_json(home.settings_path)
    scrub.collect(settings)
    jobs = _recent_jobs(home)
    for job in jobs:
        scrub.collect(job.params)
        scrub.collect(job.result)
    members: dict[str, Any] = {
        "README.txt": ("LLMOps Desktop diagnostics bundle, written "
                       f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}.\n"
                       "Secrets (tokens, keys, passwords) are left out: secrets.json only "
                       "says which are set.\n"),
        "doctor.json": doctor_report(home),
        "settings.json": settings if settings is not None else {},
        "secrets.json": secrets,
        "catalog.json": schema_state(home),
        "jobs.json": [{"id": j.id, "kind": j.kind, "state": j.state.value, "params": j.params,
                       "message": j.message, "error": j.error, "result": j.result,
                       "created_at": j.created_at, "started_at": j.started_at,
                       "finished_at": j.finished_at} for j in jobs],
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            text = content if isinstance(content, str) else json.dumps(
                scrub.data(content), indent=2, default=str)
            zf.writestr(name, scrub.text(text))
        for job in jobs:
            tail = _log_tail(job.log_path)
            if tail:
                zf.writestr(f"logs/job-{job.id}-{job.kind}.log", scrub.text(tail))
    os.replace(tmp, dest)
    return dest
