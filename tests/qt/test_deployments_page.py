"""The Deployments page against a real server child: serve the demo GGUF, call it, stop it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")


from llmops_desktop.qt.pages.deployments import DeploymentsPage
from tests.qt.windows import pid_alive

START_TIMEOUT_MS = 30_000
SCREENSHOT = Path("/tmp/tour/15-deployments.png")


def test_serve_call_and_stop(qtbot, gguf_artifact, window):
    window.models_page.select_artifact(gguf_artifact)
    window.models_page.act_serve.trigger()  # the Models page's "Serve…" opens the page
    page = window.deployments_page
    assert window.current_page_id() == "deployments"
    assert isinstance(page, DeploymentsPage)
    assert page.artifact_combo.currentData() == gguf_artifact
    assert page.engine_combo.currentText() == "llama.cpp"
    page.port_spin.setValue(0)
    page.ctx_spin.setValue(256)
    page.threads_spin.setValue(1)

    with qtbot.waitSignal(page.deploy.sig_started, timeout=START_TIMEOUT_MS) as started:
        page.start_button.click()
    key, url = started.args
    d = page.deploy.get(key)
    assert d is not None and d.state == "running" and url.startswith("http://127.0.0.1:")
    assert page.tree.topLevelItem(0).text(4) == "running"
    assert page.tree.topLevelItem(0).text(3) == url
    assert f"{url}/v1/chat/completions" in page.curl_edit.toPlainText()
    assert f'base_url="{url}/v1"' in page.python_edit.toPlainText()
    assert repr(d.name) in page.python_edit.toPlainText()

    body = json.dumps({"model": d.name, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "Hello"}]}).encode()
    req = urllib.request.Request(f"{url}/v1/chat/completions", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = json.load(resp)
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["usage"]["completion_tokens"] <= 4

    qtbot.waitUntil(lambda: "POST /v1/chat/completions 200" in page.log_view.toPlainText(),
                    timeout=10_000)
    page.tabs.setCurrentIndex(1)  # recent requests, read from the catalog every 2 s
    qtbot.waitUntil(lambda: page.requests.topLevelItemCount() == 1, timeout=10_000)
    assert page.requests.topLevelItem(0).text(2) == "200"

    page.tabs.setCurrentWidget(page.live)  # small live charts from the monitor's sampler
    from llmops_desktop.qt.charts import MiniChart

    assert len(page.live.findChildren(MiniChart)) == 3
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.tabs.setCurrentIndex(0)
    window.grab().save(str(SCREENSHOT))

    pid = d.info["pid"]
    with qtbot.waitSignal(page.deploy.sig_stopped, timeout=15_000) as stopped:
        page.stop_button.click()
    assert stopped.args == [key, ""]
    assert d.state == "stopped" and page.tree.topLevelItem(0).text(4) == "stopped"
    assert not pid_alive(pid)
    assert not page.stop_button.isEnabled()
