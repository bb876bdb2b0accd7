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
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def setting(default: Any, description: str, *, label: str, choices: tuple[str, ...] = (),
            minimum: int | None = None, maximum: int | None = None,
            group: str = "General", restart: bool = False) -> Any:
    """A settings field: its default, what it means, and how a form shows it."""
    return field(default=default, metadata={
        "description": description, "label": label, "choices": choices,
        "minimum": minimum, "maximum": maximum, "group": group, "restart": restart,
    })


def _cpu_threads() -> int:
    return max(1, (os.cpu_count() or 2))


@dataclass(frozen=True)
class Settings:
    default_threads: int = setting(
        _cpu_threads(), "CPU threads that hashing, quantization and llama.cpp use by default.",
        label="Default threads", minimum=1, maximum=512, group="Performance")
    offline: bool = setting(
        True, "Make no network connection at all. Import, quantize, serve and everything "
        "else keep working; only downloads need this off.", label="Offline", group="Network")
    import_mode: str = setting(
        "copy", "How imported files enter the store: copy them, hard-link them (same disk "
        "only, no extra space), or reference them in place (nothing is copied; moving or "
        "editing the originals breaks the artifact).", label="Import mode",
        choices=("copy", "hardlink", "reference"), group="Import")
    allow_pickle: bool = setting(
        False, "Accept PyTorch pickle checkpoints (.bin, .pt, .pth, .ckpt). Loading a pickle "
        "can run any code its author put in it; keep this off unless you trust the source.",
        label="Allow pickle checkpoints", group="Import")
    hf_endpoint: str = setting(
        "https://huggingface.co", "The Hugging Face hub or HF-compatible mirror to download "
        "from (the same as HF_ENDPOINT). A colleague's 'llmops mirror serve' is "
        "http://HOST:PORT.", label="Hub endpoint", group="Network")
    proxy: str = setting(
        "", "HTTP(S) proxy for downloads, such as http://proxy.example:3128. Empty: the "
        "system's HTTPS_PROXY / HTTP_PROXY, if any.",
        label="Proxy", group="Network")
    mirror_host: str = setting(
        "127.0.0.1", "Address the team mirror listens on. Anything but 127.0.0.1 makes the "
        "catalog reachable from the network and needs a mirror token.", label="Mirror address",
        group="Team mirror")
    mirror_port: int = setting(
        8790, "Port of the team mirror.", label="Mirror port", minimum=1, maximum=65535,
        group="Team mirror")
    hf_cache_dir: str = setting(
        "", "The Hugging Face cache to list models from. Empty: $HF_HUB_CACHE, "
        "$HF_HOME/hub, or ~/.cache/huggingface/hub.", label="Hugging Face cache", group="Import")
    monitor_sample_hz: int = setting(
        2, "How many times a second the Monitor reads the GPUs, the system and the "
        "deployments (1-10). Process lists are read once a second at most.",
        label="Monitor sample rate (Hz)", minimum=1, maximum=10, group="Monitor")
    monitor_retention_days: int = setting(
        7, "Days of monitor history (10-second averages) kept in the catalog; older history "
        "is deleted.", label="Monitor history (days)", minimum=1, maximum=3650, group="Monitor")
    alert_gpu_temp_c: int = setting(
        85, "Alert when a GPU's temperature reaches this many °C (0: no alert).",
        label="Alert: GPU temperature (°C)", minimum=0, maximum=150, group="Monitor")
    alert_gpu_mem_pct: int = setting(
        95, "Alert when a GPU's memory is this full, in percent (0: no alert).",
        label="Alert: GPU memory (%)", minimum=0, maximum=100, group="Monitor")
    alert_ram_pct: int = setting(
        90, "Alert when the machine's RAM is this full, in percent (0: no alert).",
        label="Alert: RAM (%)", minimum=0, maximum=100, group="Monitor")
    alert_p95_latency_ms: int = setting(
        30000, "Alert when a deployment's p95 request latency over the last 10 seconds "
        "reaches this many milliseconds (0: no alert).", label="Alert: p95 latency (ms)",
        minimum=0, maximum=3_600_000, group="Monitor")
    alert_error_rate_pct: int = setting(
        10, "Alert when this percentage of a deployment's requests over the last 10 seconds "
        "failed (HTTP 4xx/5xx; clients that left are not counted) (0: no alert).",
        label="Alert: error rate (%)", minimum=0, maximum=100, group="Monitor")
    registries: str = setting(
        "", "Shared-folder registries to publish packages to and pull them from, as "
        "NAME=PATH entries separated by ';' (e.g. team=/mnt/share/models; usb=/media/usb/models)"
        ". A registry is any folder colleagues can reach: a mounted share or a USB drive.",
        label="Registries", group="Sharing")
    require_signatures: bool = setting(
        False, "Refuse to import packages that are not signed. Packages signed by a key that "
        "is not in the trust list are always asked about.", label="Require signatures",
        group="Sharing")
    serve_only_approved: bool = setting(
        False, "Serve only artifacts whose governance status is 'approved'; drafts and "
        "deprecated artifacts are refused with a message.", label="Serve only approved "
        "artifacts", group="Sharing")

    @classmethod
    def field_info(cls) -> list[dict[str, Any]]:
        """Each field's name, type, default and form metadata, in declaration order."""
        out = []
        for f in fields(cls):
            default = f.default if f.default is not MISSING else None
            out.append({"name": f.name, "type": type(default), "default": default, **f.metadata})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def updated(self, **changes: Any) -> Settings:
        """A copy with ``changes`` validated and applied; raises ValueError on a bad value."""
        return replace(self, **{k: coerce_setting(k, v) for k, v in changes.items()})


def coerce_setting(name: str, value: Any) -> Any:
    info = {i["name"]: i for i in Settings.field_info()}.get(name)
    if info is None:
        raise ValueError(f"Unknown setting {name!r}. Known: {', '.join(i['name'] for i in Settings.field_info())}")
    typ = info["type"]
    if typ is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{info['label']}: expected on/off, got {value!r}")
        return bool(value)
    if typ is int:
        try:
            ivalue = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{info['label']}: expected a whole number, got {value!r}") from None
        if info["minimum"] is not None and ivalue < info["minimum"]:
            raise ValueError(f"{info['label']}: at least {info['minimum']}")
        if info["maximum"] is not None and ivalue > info["maximum"]:
            raise ValueError(f"{info['label']}: at most {info['maximum']}")
        return ivalue
    svalue = str(value)
    if info["choices"] and svalue not in info["choices"]:
        raise ValueError(f"{info['label']}: one of {', '.join(info['choices'])}, got {svalue!r}")
    return svalue


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
