"""Threshold alerts on monitor samples, with hysteresis and a cooldown so they never spam.

A rule watches every series that ends in its metric (``gpu.*.temp``, ``dep.*.lat_p95``,
…). It fires once a value has stayed at or above the threshold for ``sustain``
consecutive samples, and clears only once the value falls below the threshold less a
margin (5 %). After firing, the same series stays quiet for ``cooldown_s`` even if it
clears and crosses again. A threshold of 0 turns the rule off. Firing is written to the
catalog's audit log by the sampler and handed to listeners (the window's banner and
desktop notification, the terminal).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

HYSTERESIS = 0.05
DEFAULT_SUSTAIN = 2
DEFAULT_COOLDOWN_S = 300.0


@dataclass(frozen=True)
class AlertRule:
    name: str  # also the settings field that holds the threshold
    what: str  # "temperature", "memory use", ...
    prefix: str  # the series' first part: "gpu", "sys", "dep"
    metric: str  # the series' last part
    threshold: float
    unit: str

    def matches(self, key: str) -> bool:
        return key.startswith(self.prefix + ".") and key.rsplit(".", 1)[-1] == self.metric


def rules_from_settings(settings: Any) -> list[AlertRule]:
    """The rules the settings turn on (a threshold above 0)."""
    rules = [
        AlertRule("alert_gpu_temp_c", "temperature", "gpu", "temp",
                  settings.alert_gpu_temp_c, "°C"),
        AlertRule("alert_gpu_mem_pct", "memory use", "gpu", "mem_pct",
                  settings.alert_gpu_mem_pct, "%"),
        AlertRule("alert_ram_pct", "RAM use", "sys", "ram_pct", settings.alert_ram_pct, "%"),
        AlertRule("alert_p95_latency_ms", "p95 latency", "dep", "lat_p95",
                  settings.alert_p95_latency_ms, "ms"),
        # Server errors (5xx) only: a client's 4xx (bad request, unknown model, no key)
        # is no sign of an unhealthy server.
        AlertRule("alert_error_rate_pct", "server error rate", "dep", "server_error_rate",
                  settings.alert_error_rate_pct, "%"),
    ]
    return [r for r in rules if r.threshold and r.threshold > 0]


@dataclass(frozen=True)
class AlertEvent:
    t: float  # Unix seconds
    rule: str
    series: str
    subject: str  # "GPU 0 (NVIDIA H100)", "the system", "deployment demo"
    value: float
    threshold: float
    unit: str
    state: str  # "firing" or "cleared"
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _fmt(value: float, unit: str) -> str:
    number = f"{value:.0f}" if abs(value) >= 10 or value == int(value) else f"{value:.1f}"
    return f"{number} {unit}" if unit != "%" else f"{number}%"


@dataclass
class _State:
    active: bool = False
    announced: bool = False  # this episode's firing was reported (not within the cooldown)
    above: int = 0
    last_fired: float = -math.inf


class AlertEngine:
    """Evaluates rules on each sample and returns what fired or cleared."""

    def __init__(self, rules: list[AlertRule], *, sustain: int = DEFAULT_SUSTAIN,
                 cooldown_s: float = DEFAULT_COOLDOWN_S) -> None:
        self.rules = rules
        self.sustain = max(1, sustain)
        self.cooldown_s = cooldown_s
        self._state: dict[tuple[str, str], _State] = {}

    def set_rules(self, rules: list[AlertRule]) -> None:
        """New thresholds; a series whose rule changed starts afresh."""
        old = {r.name: r.threshold for r in self.rules}
        self.rules = rules
        for key in [k for k in self._state
                    if old.get(k[0]) != {r.name: r.threshold for r in rules}.get(k[0])]:
            del self._state[key]

    def active(self) -> list[tuple[str, str]]:
        """(rule, series) pairs that are firing now."""
        return [k for k, s in self._state.items() if s.active]

    def evaluate(self, t: float, values: dict[str, float],
                 subjects: dict[str, str] | None = None) -> list[AlertEvent]:
        subjects = subjects or {}
        events = []
        for rule in self.rules:
            for key, value in values.items():
                if value is None or math.isnan(value) or not rule.matches(key):
                    continue
                state = self._state.setdefault((rule.name, key), _State())
                subject = subjects.get(key.rsplit(".", 1)[0], key.rsplit(".", 1)[0])
                if value >= rule.threshold:
                    state.above += 1
                    if (not state.active and state.above >= self.sustain):
                        state.active = True
                        state.announced = t - state.last_fired >= self.cooldown_s
                        if state.announced:
                            state.last_fired = t
                            events.append(AlertEvent(
                                t, rule.name, key, subject, value, rule.threshold, rule.unit,
                                "firing", f"{subject[:1].upper() + subject[1:]}: {rule.what} "
                                f"is {_fmt(value, rule.unit)}, at or above the alert "
                                f"threshold of {_fmt(rule.threshold, rule.unit)}."))
                else:
                    state.above = 0
                    if state.active and value < rule.threshold * (1 - HYSTERESIS):
                        state.active = False
                        if not state.announced:
                            continue
                        events.append(AlertEvent(
                            t, rule.name, key, subject, value, rule.threshold, rule.unit,
                            "cleared", f"{subject[:1].upper() + subject[1:]}: {rule.what} is "
                            f"back to {_fmt(value, rule.unit)} (threshold "
                            f"{_fmt(rule.threshold, rule.unit)})."))
        return events
