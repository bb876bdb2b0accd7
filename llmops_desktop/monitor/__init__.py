"""Live GPU, system and deployment figures: a sampler thread, ring buffers, history, alerts.

Plain Python (no Qt): the window's Monitor page and ``llmops monitor`` both use
:class:`~llmops_desktop.monitor.sampler.Sampler`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use (PEP 562): importing one module of this package (``llmops
# monitor``'s argument parser, say) must not cost every command numpy and psutil.
_WHERE = {"AlertEvent": "alerts", "AlertRule": "alerts", "rules_from_settings": "alerts",
          "GpuDiagnosis": "gpu", "diagnose": "gpu", "Sample": "sampler", "Sampler": "sampler",
          "SamplerConfig": "sampler", "SeriesStore": "series"}

__all__ = ["AlertEvent", "AlertRule", "GpuDiagnosis", "Sample", "Sampler", "SamplerConfig",
           "SeriesStore", "diagnose", "rules_from_settings"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
