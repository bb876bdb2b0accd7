"""The window's one monitor sampler, and its news on the GUI thread.

:func:`monitor_for` gives every page the same :class:`MonitorController` (the Monitor
page, and the small live charts of other pages). The sampler itself is plain Python on
its own thread (:mod:`llmops_desktop.monitor.sampler`); it is built on a helper thread
too, so the window's start never pays for numpy, psutil or prometheus_client. Its
callbacks reach the GUI thread through the pump (:mod:`llmops_desktop.qt.pump`).
Samples are coalesced: if the GUI has not taken the last one yet, the next does not
queue another delivery, so a busy GUI never falls behind and never waits. The sampler
stops with the window (its Close event, or the app quitting).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Signal
from PySide6.QtWidgets import QWidget

from llmops_desktop.paths import Home
from llmops_desktop.qt.pump import Channel, create_worker
from llmops_desktop.qt.workers import run_in_thread
from llmops_desktop.settings import Settings

log = logging.getLogger(__name__)


class MonitorController(QObject):
    """Owns the app's sampler; relays its samples and alerts as signals."""

    sig_started = Signal()
    """The sampler runs: :attr:`store` and :attr:`gpu_status` are there."""
    sig_failed = Signal(str)
    """The sampler could not start (the message says why)."""
    sig_sample = Signal(object)
    """A new Sample (the latest; samples the GUI was too busy for are skipped)."""
    sig_alert = Signal(object)
    """An AlertEvent fired or cleared."""

    def __init__(self, home: Home, settings: Settings, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.settings = settings
        self.sampler: Any = None  # monitor.sampler.Sampler once started
        self.error = ""
        self._booting = False
        self._stopped = False
        self._api_keys: dict[int, str] = {}
        # Channel.send is a plain function over plain objects: the sampler thread calls it
        self._samples = Channel(lambda _sample: self._on_sample(), receiver=self,
                                latest_only=True)
        self._alerts = Channel(self._on_alert, receiver=self)
        self._on_sample_cb: Callable[[Any], None] = self._samples.send
        self._on_alert_cb: Callable[[Any], None] = self._alerts.send

    # ---- state ------------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        """The sampler's SeriesStore (None until started)."""
        return self.sampler.store if self.sampler is not None else None

    @property
    def gpu_status(self) -> Any:
        return self.sampler.gpu_status if self.sampler is not None else None

    @property
    def latest(self) -> Any:
        return self.sampler.latest if self.sampler is not None else None

    def is_running(self) -> bool:
        return self.sampler is not None and self.sampler.is_running()

    # ---- start and stop ---------------------------------------------------------------------

    def start(self) -> None:
        """Build and start the sampler on a helper thread (returns at once)."""
        if self._booting or self.sampler is not None or self._stopped:
            return
        self._booting = True
        home, settings = self.home, self.settings
        on_sample, on_alert = self._on_sample_cb, self._on_alert_cb

        def boot() -> Any:
            from llmops_desktop.monitor.sampler import Sampler, SamplerConfig

            sampler = Sampler(home, SamplerConfig.from_settings(settings))
            sampler.add_listener(on_sample)
            sampler.add_alert_listener(on_alert)
            sampler.start()
            return sampler

        def failed(exc: BaseException) -> None:
            log.error("monitor sampler failed to start", exc_info=exc)
            self._on_started(None, f"The monitor could not start: {exc}")

        create_worker(boot, returned=lambda sampler: self._on_started(sampler, ""),
                      errored=failed, receiver=self, name="llmops-monitor-boot")

    def _on_started(self, sampler: Any, error: str) -> None:
        self._booting = False
        if sampler is None:
            self.error = error
            self.sig_failed.emit(error)
            return
        if self._stopped:  # the window closed while it was booting
            sampler.stop()
            return
        self.sampler = sampler
        for dep_id, api_key in self._api_keys.items():
            sampler.set_api_key(dep_id, api_key)
        self.sig_started.emit()

    def stop(self, wait: bool = True) -> None:
        """Stop sampling (the history still in memory is written first)."""
        self._stopped = True
        sampler, self.sampler = self.sampler, None
        if sampler is None:
            return
        if wait:
            sampler.stop()
        else:
            create_worker(sampler.stop, name="llmops-monitor-stop")

    # ---- settings ---------------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        """New rate, retention and thresholds, without restarting."""
        self.settings = settings
        if self.sampler is None:
            return
        from llmops_desktop.monitor.alerts import rules_from_settings

        self.sampler.set_rate(settings.monitor_sample_hz)
        self.sampler.set_retention(settings.monitor_retention_days)
        self.sampler.set_rules(rules_from_settings(settings))

    def set_api_key(self, deployment_id: int, key: str | None) -> None:
        """The API key to read a deployment's /metrics with (kept in memory only)."""
        if key:
            self._api_keys[deployment_id] = key
        else:
            self._api_keys.pop(deployment_id, None)
        if self.sampler is not None:
            self.sampler.set_api_key(deployment_id, key)

    # ---- history ----------------------------------------------------------------------------

    def load_history(self, t0: float, t1: float, on_done: Callable[[dict[str, Any]], None],
                     on_error: Callable[[BaseException], None] | None = None,
                     *, receiver: QObject | None = None) -> None:
        """Read history for [t0, t1] off the GUI thread; ``on_done({"series": {key: (t, v)},
        "labels": {key: label}})`` on the GUI thread."""
        home = self.home

        def read() -> dict[str, Any]:
            from llmops_desktop.catalog import Catalog
            from llmops_desktop.monitor.history import read_history, series_labels

            with Catalog.open(home) as catalog:
                return {"series": read_history(catalog.conn, t0, t1),
                        "labels": series_labels(catalog.conn)}

        run_in_thread(read, on_done, on_error, receiver=receiver)

    # ---- relay slots (GUI thread) -------------------------------------------------------------

    def _on_sample(self) -> None:
        sample = self.latest
        if sample is not None:
            self.sig_sample.emit(sample)

    def _on_alert(self, event: Any) -> None:
        self.sig_alert.emit(event)


class _CloseWatcher(QObject):
    """Stops the controller once the window it belongs to has closed (a close the window
    refuses, say to ask about running deployments and being told Cancel, does not)."""

    def __init__(self, controller: MonitorController, window: QWidget) -> None:
        super().__init__(controller)
        self._controller = controller
        self._closing = False
        window.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.Close:
            self._closing = True
        elif kind == QEvent.Type.Show:
            self._closing = False
        elif kind == QEvent.Type.Hide and self._closing and not event.spontaneous():
            self._controller.stop(wait=True)  # the close went through
        return False


def monitor_for(ctx: Any) -> MonitorController:
    """The window's controller (made, and started, on first use)."""
    found = ctx.events.findChild(MonitorController)
    if found is not None:
        return found
    controller = MonitorController(ctx.home, ctx.settings, ctx.events)
    ctx.events.sig_settings_saved.connect(controller.apply_settings)
    window = ctx.events.parent()
    if isinstance(window, QWidget):
        _CloseWatcher(controller, window)
    app = QCoreApplication.instance()
    if app is not None:
        ref = weakref.ref(controller)
        app.aboutToQuit.connect(lambda: (c := ref()) is not None and c.stop(wait=True))
    sampler_holder: dict[str, Any] = {}
    controller.sig_started.connect(lambda: sampler_holder.update(s=controller.sampler))
    # the window's events object going away (window deleted) stops the thread too
    ctx.events.destroyed.connect(lambda *_: (s := sampler_holder.get("s")) is not None
                                 and s.stop(timeout=5))
    controller.start()
    return controller
