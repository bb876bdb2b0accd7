"""One source of truth for settings: typed fields with a description.

The same description becomes the CLI help, the GUI form's label tooltip and
the README. Settings live in ``settings.json`` in the data home; unknown keys
are kept (a newer app's settings survive an older app), bad values fall back
to the default with a warning instead of refusing to start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from llmops_desktop.fields import field_specs, spec

log = logging.getLogger(__name__)


def _cpu_threads() -> int:
    return max(1, (os.cpu_count() or 2))


@dataclass(frozen=True)
class Settings:
    default_threads: int = spec(
        _cpu_threads(), "CPU threads that hashing, quantization and llama.cpp use by default.",
        label="Default threads", minimum=1, maximum=512, group="Performance")
    offline: bool = spec(
        True, "Make no network connection at all. Import, quantize, serve and everything "
        "else keep working; only downloads need this off.", label="Offline", group="Network")
    import_mode: str = spec(
        "copy", "How imported files enter the store: copy them, hard-link them (same disk "
        "only, no extra space), or reference them in place (nothing is copied; moving or "
        "editing the originals breaks the artifact).", label="Import mode",
        choices=("copy", "hardlink", "reference"), group="Import")
    allow_pickle: bool = spec(
        False, "Accept PyTorch pickle checkpoints (.bin, .pt, .pth, .ckpt). Loading a pickle "
        "can run any code its author put in it; keep this off unless you trust the source.",
        label="Allow pickle checkpoints", group="Import")
    hf_endpoint: str = spec(
        "https://huggingface.co", "The Hugging Face hub or HF-compatible mirror to download "
        "from (the same as HF_ENDPOINT). A colleague's 'llmops mirror serve' is "
        "http://HOST:PORT.", label="Hub endpoint", group="Network")
    proxy: str = spec(
        "", "HTTP(S) proxy for downloads, such as http://proxy.example:3128. Empty: the "
        "system's HTTPS_PROXY / HTTP_PROXY, if any.",
        label="Proxy", group="Network")
    mirror_host: str = spec(
        "127.0.0.1", "Address the team mirror listens on. Anything but 127.0.0.1 makes the "
        "catalog reachable from the network and needs a mirror token.", label="Mirror address",
        group="Team mirror")
    mirror_port: int = spec(
        8790, "Port of the team mirror.", label="Mirror port", minimum=1, maximum=65535,
        group="Team mirror")
    hf_cache_dir: str = spec(
        "", "The Hugging Face cache to list models from. Empty: $HF_HUB_CACHE, "
        "$HF_HOME/hub, or ~/.cache/huggingface/hub.", label="Hugging Face cache", group="Import")
    monitor_sample_hz: int = spec(
        2, "How many times a second the Monitor reads the GPUs, the system and the "
        "deployments (1-10). Process lists are read once a second at most.",
        label="Monitor sample rate (Hz)", minimum=1, maximum=10, group="Monitor")
    monitor_retention_days: int = spec(
        7, "Days of monitor history (10-second averages) kept in the catalog; older history "
        "is deleted.", label="Monitor history (days)", minimum=1, maximum=3650, group="Monitor")
    alert_gpu_temp_c: int = spec(
        85, "Alert when a GPU's temperature reaches this many °C (0: no alert).",
        label="Alert: GPU temperature (°C)", minimum=0, maximum=150, group="Monitor")
    alert_gpu_mem_pct: int = spec(
        95, "Alert when a GPU's memory is this full, in percent (0: no alert).",
        label="Alert: GPU memory (%)", minimum=0, maximum=100, group="Monitor")
    alert_ram_pct: int = spec(
        90, "Alert when the machine's RAM is this full, in percent (0: no alert).",
        label="Alert: RAM (%)", minimum=0, maximum=100, group="Monitor")
    alert_p95_latency_ms: int = spec(
        30000, "Alert when a deployment's p95 request latency over the last 10 seconds "
        "reaches this many milliseconds (0: no alert).", label="Alert: p95 latency (ms)",
        minimum=0, maximum=3_600_000, group="Monitor")
    alert_error_rate_pct: int = spec(
        10, "Alert when this percentage of a deployment's requests over the last 10 seconds "
        "failed on the server's side (HTTP 5xx; a client's own mistakes, 4xx, and clients "
        "that left are not counted) (0: no alert).",
        label="Alert: error rate (%)", minimum=0, maximum=100, group="Monitor")
    registries: str = spec(
        "", "Shared-folder registries to publish packages to and pull them from, as "
        "NAME=PATH entries separated by ';' (e.g. team=/mnt/share/models; usb=/media/usb/models)"
        ". A registry is any folder colleagues can reach: a mounted share or a USB drive.",
        label="Registries", group="Sharing")
    require_signatures: bool = spec(
        False, "Refuse to import packages that are not signed. Packages signed by a key that "
        "is not in the trust list are always asked about.", label="Require signatures",
        group="Sharing")
    serve_only_approved: bool = spec(
        False, "Serve only artifacts whose governance status is 'approved'; drafts and "
        "deprecated artifacts are refused with a message.", label="Serve only approved "
        "artifacts", group="Sharing")
    approval_needs_evaluation: bool = spec(
        False, "An artifact can be approved only once it has a passing evaluation run: a "
        "finished run on a suite whose pass thresholds it meets ('llmops eval').",
        label="Approval needs evaluation", group="Sharing")

    @classmethod
    def field_info(cls) -> list[dict[str, Any]]:
        """Each field's name, type, default and form metadata, in declaration order."""
        return [s.info() for s in field_specs(cls)]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def updated(self, **changes: Any) -> Settings:
        """A copy with ``changes`` validated and applied; raises ValueError on a bad value."""
        return replace(self, **{k: coerce_setting(k, v) for k, v in changes.items()})


def coerce_setting(name: str, value: Any) -> Any:
    """``value`` as setting ``name`` takes it; ValueError (InvalidInputError) if it cannot."""
    specs = {s.name: s for s in field_specs(Settings)}
    if name not in specs:
        raise ValueError(f"Unknown setting {name!r}. Known: {', '.join(specs)}")
    return specs[name].coerce(value)


def load_settings(path: Path) -> Settings:
    """Read settings (a missing file gives defaults, a bad value its default), and tell
    huggingface_hub and transformers, in this process and its children, what the Offline
    setting says: offline unless turned off; telemetry and update checks always off."""
    settings = _read_settings(path)
    os.environ.update(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_UPDATE_CHECK="1",
                      DO_NOT_TRACK="1")
    if settings.offline:
        os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return settings


def _read_settings(path: Path) -> Settings:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as exc:
        log.warning("Ignoring unreadable settings file %s: %s", path, exc)
        return Settings()
    values = {}
    for info in Settings.field_info():
        if info["name"] in raw:
            try:
                values[info["name"]] = coerce_setting(info["name"], raw[info["name"]])
            except ValueError as exc:
                log.warning("Setting %s ignored: %s", info["name"], exc)
    return Settings(**values)


def save_settings(path: Path, settings: Settings) -> None:
    """Write atomically, keeping keys this version does not know."""
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(existing, dict):
            existing = {}
    except (OSError, ValueError):
        existing = {}
    existing.update(settings.to_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(existing, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
