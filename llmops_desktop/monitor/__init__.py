"""Live GPU, system and deployment figures: a sampler thread, ring buffers, history, alerts.

Plain Python (no Qt): the window's Monitor page and ``llmops monitor`` both use
:class:`~llmops_desktop.monitor.sampler.Sampler`.
"""

from llmops_desktop.monitor.alerts import AlertEvent, AlertRule, rules_from_settings
from llmops_desktop.monitor.gpu import GpuDiagnosis, diagnose
from llmops_desktop.monitor.sampler import Sample, Sampler, SamplerConfig
from llmops_desktop.monitor.series import SeriesStore

__all__ = ["AlertEvent", "AlertRule", "GpuDiagnosis", "Sample", "Sampler", "SamplerConfig",
           "SeriesStore", "diagnose", "rules_from_settings"]
