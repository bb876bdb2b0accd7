"""Small text helpers shared by the pages (sizes, counts, timestamps)."""

from __future__ import annotations

from datetime import datetime, timezone


def human_size(num: int | float | None) -> str:
    if num is None:
        return ""
    value = float(num)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def human_count(num: int | float | None) -> str:
    """1234567 -> '1.2M' (parameter counts)."""
    if not num:
        return ""
    value = float(num)
    for unit in ("", "K", "M", "B", "T"):
        if abs(value) < 1000:
            return f"{value:.0f}{unit}" if not unit else f"{value:.1f}{unit}"
        value /= 1000
    return f"{value:.1f}P"


def local_time(ts: str | float | None) -> str:
    """A timestamp (a catalog's UTC ISO string, or Unix seconds) as local 'YYYY-MM-DD HH:MM',
    in the zone in force on that date (summer time included)."""
    if ts is None or ts == "":
        return ""
    try:
        if isinstance(ts, (int, float)):
            when = datetime.fromtimestamp(float(ts), tz=timezone.utc)
        else:
            when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        return str(ts)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone().strftime("%Y-%m-%d %H:%M")


# The one vocabulary of job states (DESIGN.md), as every page shows them. The table of the
# Jobs page, its header and the Models page's messages all go through job_state_label.
JOB_STATE_LABELS = {"queued": "queued", "running": "running", "succeeded": "succeeded",
                    "failed": "failed", "cancelled": "cancelled",
                    "interrupted": "interrupted"}
CANCELLING = "cancelling…"


def job_state_label(state: object) -> str:
    """A job state (a JobState or its value) in the words every page uses."""
    value = str(getattr(state, "value", state))
    return JOB_STATE_LABELS.get(value, value)


# Words for parameter names that read badly when merely de-underscored.
_PARAM_WORDS = {
    "artifact_id": "Artifact", "base_id": "Base model", "dataset_id": "Dataset",
    "dataset_version_id": "Dataset version", "repo_id": "Repository", "n_ctx": "Context",
    "lora_r": "LoRA rank", "lora_alpha": "LoRA alpha", "lora_dropout": "LoRA dropout",
    "lr": "Learning rate", "max_steps": "Most steps", "seed": "Seed", "url": "Address",
    "eval_text": "Evaluation text", "targets": "Targets", "hf_endpoint": "Hub address",
}


def param_label(key: str) -> str:
    """'eval_text' -> 'Evaluation text', 'max_new_tokens' -> 'Max new tokens'."""
    if key in _PARAM_WORDS:
        return _PARAM_WORDS[key]
    words = key.replace("_", " ").replace("-", " ").strip()
    return words[:1].upper() + words[1:]


def param_value(key: str, value: object) -> str:
    """A parameter's value in words: yes/no, lists joined, ids as '#5', no Python reprs."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_id") and isinstance(value, int):
        return f"#{value}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(param_value("", v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{param_label(str(k)).lower()} {param_value(str(k), v)}"
                         for k, v in value.items() if v not in (None, "", [], {}))
    return str(value)


def params_text(params: dict[str, object], sep: str = " · ") -> str:
    """Job or artifact parameters as words ('Seed: 0 · Targets: Q4_K_M'); unset ones
    (None, empty) are left out rather than shown as 'None'."""
    from llmops_desktop.monitor.bundle import SECRET_NAME

    return sep.join(f"{param_label(k)}: "
                    + ("(hidden)" if SECRET_NAME.search(k) else param_value(k, v))
                    for k, v in params.items()
                    if v not in (None, "", [], {}) and not k.startswith("_"))
