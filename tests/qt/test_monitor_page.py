"""The Monitor page: system and no-GPU panels from the real sampler, a panel for a real
running deployment, history after a restart, CSV and PNG export, alerts in the window."""

from __future__ import annotations

import csv
import gc
import time

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtGui import QImage

from llmops_desktop.catalog import Catalog
from llmops_desktop.monitor.gpu import diagnose
from llmops_desktop.monitor.history import HistoryRow, write_rows
from llmops_desktop.qt.main_window import PAGES, MainWindow
from llmops_desktop.qt.pages.monitor import MonitorPage
from llmops_desktop.settings import Settings, save_settings

GPU = diagnose()
TIMEOUT_MS = 20_000


@pytest.fixture
def open_window(qtbot, home):
    windows = []

    def make() -> MainWindow:
        win = MainWindow(home)
        win.deployments_on_close = "stop"  # never ask (qtbot closes it in its teardown)
        qtbot.addWidget(win)
        win.show()
        windows.append(win)
        return win

    yield make
    for win in windows:
        win.close()
        win.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


def points(curve) -> int:
    t, _ = curve.getData()
    return 0 if t is None else len(t)


def monitor_page(qtbot, win: MainWindow) -> MonitorPage:
    page = win.show_page("monitor")
    assert isinstance(page, MonitorPage)
    qtbot.waitUntil(lambda: page.controller.is_running(), timeout=TIMEOUT_MS)
    return page


def test_system_and_no_gpu_panels_chart_live_figures(qtbot, open_window):
    win = open_window()
    page = monitor_page(qtbot, win)
    n = PAGES.index(MonitorPage) + 1
    assert win.page_actions[n - 1].shortcut().toString() == f"Ctrl+{n % 10}"  # 10th: Ctrl+0
    for _ in range(3):
        with qtbot.waitSignal(page.controller.sig_sample, timeout=TIMEOUT_MS):
            pass
    system = page.system_panel
    assert system.isVisible() and "RAM" in system.info.text()
    cpu_chart = system.charts[0]
    qtbot.waitUntil(lambda: points(cpu_chart.curves["sys.cpu"]) >= 2,
                    timeout=TIMEOUT_MS)
    t, v = cpu_chart.curves["sys.cpu"].getData()
    assert abs(t[-1] - time.time()) < 10 and 0 <= v[-1] <= 100
    if GPU.available:
        assert page.gpu_panels and not page.no_gpu_panel.isVisible()
    else:
        assert page.no_gpu_panel.isVisible() and not page.gpu_panels
        assert GPU.reason in page.no_gpu_panel.text()
        assert GPU.message.split(":")[0] in page.no_gpu_panel.text()
    # hover read-out: the value under the mouse, by series
    text = cpu_chart.readout_at(float(t[-1]))
    assert "all cores" in text and "%" in text
    # pausing freezes the charts; the sampler carries on
    page.pause_button.setChecked(True)
    before = cpu_chart.redraws
    for _ in range(2):
        with qtbot.waitSignal(page.controller.sig_sample, timeout=TIMEOUT_MS):
            pass
    assert cpu_chart.redraws == before
    page.pause_button.setChecked(False)
    # the small chart other pages embed, fed from the same sampler
    from llmops_desktop.qt.charts import MiniChart, SeriesSpec

    mini = MiniChart([SeriesSpec("sys.cpu", "CPU")], page.controller.store, y_range=(0, 100))
    qtbot.addWidget(mini)
    mini.show()
    qtbot.waitUntil(lambda: points(mini.curves["sys.cpu"]) >= 2, timeout=TIMEOUT_MS)


def test_export_csv_and_png(qtbot, open_window, tmp_path):
    page = monitor_page(qtbot, open_window())
    qtbot.waitUntil(lambda: len(page.controller.store.window("sys.cpu", 0)[0]) >= 3,
                    timeout=TIMEOUT_MS)
    path = tmp_path / "monitor.csv"
    rows = page.export_csv(path)
    with open(path, newline="", encoding="utf-8") as fh:
        data = list(csv.DictReader(fh))
    assert rows == len(data) > 0
    cpu = [r for r in data if r["series"] == "sys.cpu"]
    assert len(cpu) >= 3 and all(0 <= float(r["value"]) <= 100 for r in cpu)
    assert cpu[0]["unit"] == "%" and cpu[0]["panel"] == "System"
    assert abs(float(cpu[-1]["unix_time"]) - time.time()) < 30
    assert cpu[-1]["time_utc"].endswith("+00:00")
    ram = [r for r in data if r["series"] == "sys.ram_pct"]
    assert ram and float(ram[-1]["value"]) > 0
    png = tmp_path / "monitor.png"
    assert page.export_png(png)
    image = QImage(str(png))
    assert not image.isNull() and image.width() > 200


def test_history_is_charted_after_a_restart(qtbot, open_window, home):
    now = time.time()
    with Catalog.open(home) as catalog:  # what an earlier session of the app kept
        write_rows(catalog.conn, [HistoryRow("sys.cpu", now - 1800 + 10 * i, 42.0, 40, 44, 20)
                                  for i in range(30)], {"sys.cpu": "the system"})
    page = monitor_page(qtbot, open_window())
    page.window_combo.setCurrentIndex(2)  # 1 h
    chart = page.system_panel.charts[0]
    qtbot.waitUntil(lambda: "sys.cpu" in chart.history, timeout=TIMEOUT_MS)
    t, v = chart.series_data("sys.cpu", now - 3600, now + 60)
    old = v[t < now - 600]
    assert len(old) == 30 and (old == 42.0).all()
    # a custom range entirely in the past comes from history alone
    page.show_range(now - 1900, now - 1500)
    qtbot.waitUntil(lambda: chart.fixed_range == (now - 1900, now - 1500), timeout=TIMEOUT_MS)
    t, v = chart.data()["sys.cpu"]
    assert len(t) >= 20 and (v == 42.0).all()


def test_alert_shows_in_the_window_and_the_audit_log(qtbot, open_window, home):
    save_settings(home.settings_path, Settings().updated(alert_ram_pct=1))
    win = open_window()
    page = monitor_page(qtbot, win)
    qtbot.waitUntil(lambda: "RAM use" in page.banner.text(), timeout=TIMEOUT_MS)
    assert page.banner.kind == "error" and "threshold of 1%" in page.banner.text()
    assert page.notifications and "RAM use" in page.notifications[0]
    with Catalog.open(home) as catalog:
        audit = [e for e in catalog.audit_entries() if e.action == "monitor-alert"]
    assert audit and audit[0].details["series"] == "sys.ram_pct"
    # raising the threshold in Settings reaches the running sampler
    win.ctx.events.sig_settings_saved.emit(Settings().updated(alert_ram_pct=100))
    assert page.controller.sampler.alerts.rules[0].threshold != 1


def test_a_running_deployment_gets_its_panel(qtbot, open_window, home, demo_gguf_session):
    import requests

    from tests.mirror_fixtures import import_artifact
    from tests.serving_fixtures import server_process

    with Catalog.open(home) as catalog:
        import_artifact(catalog, demo_gguf_session, "demo-gguf")
    with server_process(home.root, "--artifact", "demo-gguf", "--threads", "1",
                        "--name", "watched") as server:
        dep_id, url = server.info["deployment_id"], server.info["url"]
        page = monitor_page(qtbot, open_window())
        qtbot.waitUntil(lambda: dep_id in page.deployment_panels, timeout=TIMEOUT_MS)
        panel = page.deployment_panels[dep_id]
        assert panel.title() == "Deployment: watched"
        qtbot.waitUntil(panel.isVisible, timeout=TIMEOUT_MS)
        for i in range(3):
            r = requests.post(url + "/v1/completions", timeout=60,
                              json={"model": "watched", "prompt": f"Hi {i}", "max_tokens": 4})
            assert r.status_code == 200
        latency = panel.charts[2]

        def drawn() -> bool:
            page.scroll.ensureWidgetVisible(latency)  # charts out of sight are not drawn
            return points(latency.curves[f"dep.{dep_id}.lat_p95"]) >= 1

        qtbot.waitUntil(drawn, timeout=TIMEOUT_MS)
        assert "req/s" in panel.info.text() and url in panel.info.text()
        assert panel.status == "ok" and not panel.key_button.isVisible()


def test_closing_the_window_stops_sampling_and_keeps_the_history(qtbot, open_window, home):
    win = open_window()
    page = monitor_page(qtbot, win)
    sampler = page.controller.sampler
    qtbot.waitUntil(lambda: sampler.latest is not None and sampler.latest.seq >= 2,
                    timeout=TIMEOUT_MS)
    win.close()
    assert not sampler.is_running() and not page.controller.is_running()
    with Catalog.open(home) as catalog:
        n = catalog.conn.execute("SELECT COUNT(*) FROM monitor_history h JOIN monitor_series s "
                                 "ON s.id = h.series_id WHERE s.name = 'sys.cpu'").fetchone()[0]
    assert n >= 1  # the interval still open was written on the way out
