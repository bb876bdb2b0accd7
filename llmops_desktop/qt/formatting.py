"""Small text helpers shared by the pages (sizes, counts, timestamps)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


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


def local_time(ts: str | None) -> str:
    """A catalog timestamp (UTC, ISO) as local 'YYYY-MM-DD HH:MM'."""
    if not ts:
        return ""
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    except ValueError:
        return ts
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return (when + _LOCAL_OFFSET).strftime("%Y-%m-%d %H:%M")


_LOCAL_OFFSET = datetime.now().astimezone().utcoffset() or timedelta(0)
