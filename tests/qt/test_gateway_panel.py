"""The Gateway panel of the Deployments page, against a real gateway child and its models.

A key made in the window (shown once, copied) loads a model through the official openai
client; the panel shows the model loaded and the key's requests; a key revoked in the
window gets 401 at once; Stop ends the gateway and its deployment. Off loopback without a
key the gateway's own refusal is shown. A model's settings saved on the page come back
when it is chosen again.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("pytestqt")
openai = pytest.importorskip("openai")

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication, QMessageBox  # noqa: E402

from llmops_desktop.gateway.keys import get_key  # noqa: E402
from llmops_desktop.qt.apikey_dialogs import CreateKeyDialog, KeyShownDialog  # noqa: E402
from tests.gateway_fixtures import deployment_pid, two_models  # noqa: E402
from tests.qt.windows import pid_alive  # noqa: E402

pytestmark = pytest.mark.timeout(600)
START_MS = 90_000
LOAD_MS = 120_000


def when_modal(kind: type, act: Callable[[object], None]) -> None:
    """Run ``act`` on the next modal dialog of ``kind`` once it is open."""
    timer = QTimer()
    timer.setInterval(50)

    def check() -> None:
        dialog = QApplication.activeModalWidget()
        if isinstance(dialog, kind):
            timer.stop()
            act(dialog)

    timer.timeout.connect(check)
    timer.start()
    when_modal.timers.append(timer)  # kept alive until the test ends


when_modal.timers = []


def make_key_in_window(panel, name: str) -> str:
    shown: dict[str, str] = {}

    def fill(dialog: CreateKeyDialog) -> None:
        dialog.name_edit.setText(name)
        dialog.models_edit.setText("alpha*")
        dialog.rpm_spin.setValue(100)
        dialog.accept()

    def copy_and_close(dialog: KeyShownDialog) -> None:
        dialog.copy_button.click()
        shown["key"] = dialog.key_edit.text()
        dialog.accept()

    when_modal(CreateKeyDialog, fill)
    when_modal(KeyShownDialog, copy_and_close)
    key = panel.keys.create_key()
    assert key is not None and key.name == name
    assert QGuiApplication.clipboard().text() == shown["key"]
    return shown["key"]


def key_row(panel, name: str) -> list[str]:
    panel.refresh_usage()
    tree = panel.keys.tree
    for i in range(tree.topLevelItemCount()):
        item = tree.topLevelItem(i)
        if item.text(0) == name:
            return [item.text(c) for c in range(tree.columnCount())]
    raise AssertionError(f"no key row for {name}")


def test_gateway_panel_keys_usage_revoke_and_stop(qtbot, window, catalog, demo_gguf, home):
    alpha, beta = two_models(catalog, demo_gguf)
    page = window.deployments_page
    panel = page.gateway_panel
    text = make_key_in_window(panel, "alice")
    assert text.startswith("llmops-")
    assert not [p for p in home.root.rglob("*") if p.is_file() and text.encode() in p.read_bytes()]
    assert key_row(panel, "alice")[1:3] == ["alpha*", "100"]

    panel.port_spin.setValue(0)
    panel.idle_spin.setValue(0)
    with qtbot.waitSignal(panel.gateway.sig_started, timeout=START_MS):
        panel.start_button.click()
    assert panel.address_edit.text() == panel.base_url() and panel.base_url().startswith(
        "http://127.0.0.1:")
    assert panel.start_button.text() == "Stop gateway" and not panel.port_spin.isEnabled()
    qtbot.waitUntil(lambda: panel.model_states().get(alpha.ref) == "unloaded", timeout=10_000)
    panel.copy_button.click()
    assert QGuiApplication.clipboard().text() == panel.base_url()

    client = openai.OpenAI(base_url=panel.base_url(), api_key=text, max_retries=0,
                           timeout=120)
    reply = client.chat.completions.create(
        model="alpha", messages=[{"role": "user", "content": "Hello"}], max_tokens=4)
    assert reply.model == alpha.ref and reply.choices[0].message.content is not None
    qtbot.waitUntil(lambda: panel.model_states().get(alpha.ref) == "loaded", timeout=10_000)
    rows = {panel.models_tree.topLevelItem(i).text(0): panel.models_tree.topLevelItem(i)
            for i in range(panel.models_tree.topLevelItemCount())}
    assert rows[alpha.ref].text(1) == "loaded" and rows[beta.ref].text(1) == "unloaded"
    child = deployment_pid(catalog, alpha.ref)
    assert rows[alpha.ref].text(3) == str(child)
    with pytest.raises(openai.PermissionDeniedError):  # beta is outside alice's scope
        client.chat.completions.create(model="beta", max_tokens=4,
                                       messages=[{"role": "user", "content": "Hello"}])
    qtbot.waitUntil(lambda: key_row(panel, "alice")[4] == "1", timeout=10_000)
    assert int(key_row(panel, "alice")[5]) > 0  # tokens
    usage = [[panel.usage_tree.topLevelItem(i).text(c) for c in range(3)]
             for i in range(panel.usage_tree.topLevelItemCount())]
    assert ["alice", alpha.ref, "1"] in usage

    panel.keys.tree.setCurrentItem(panel.keys.tree.topLevelItem(0))
    when_modal(QMessageBox, lambda box: box.button(QMessageBox.StandardButton.Yes).click())
    panel.keys.revoke_button.click()
    assert get_key(catalog, "alice").revoked_at
    assert key_row(panel, "alice")[8] == "revoked" and not panel.keys.revoke_button.isEnabled()
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="alpha", max_tokens=4,
                                       messages=[{"role": "user", "content": "Hello"}])

    gateway_pid = panel.gateway.pid
    with qtbot.waitSignal(panel.gateway.sig_stopped, timeout=60_000) as stopped:
        panel.start_button.click()
    assert stopped.args == [""]
    assert not pid_alive(gateway_pid) and not pid_alive(child)
    assert panel.start_button.text() == "Start gateway" and panel.address_edit.text() == ""
    assert panel.models_tree.topLevelItemCount() == 0


def test_off_loopback_without_a_key_the_gateways_refusal_is_shown(qtbot, window):
    panel = window.deployments_page.gateway_panel
    panel.host_combo.setCurrentText("0.0.0.0")
    panel.port_spin.setValue(0)
    errors: list[str] = []
    window.ctx.events.sig_error.connect(errors.append)
    with qtbot.waitSignal(panel.gateway.sig_stopped, timeout=START_MS) as stopped:
        assert panel.start()
    assert "Refusing to serve the gateway on 0.0.0.0 without an API key" in stopped.args[0]
    assert "llmops apikey create" in stopped.args[0]
    assert any("Refusing to serve the gateway" in e for e in errors)
    assert panel.start_button.text() == "Start gateway" and panel.host_combo.isEnabled()


def test_a_models_saved_settings_come_back_when_it_is_chosen(qtbot, window, catalog,
                                                             demo_gguf):
    from llmops_desktop.serving.model_settings import model_settings

    alpha, beta = two_models(catalog, demo_gguf)
    page = window.deployments_page
    page.reload_artifacts()
    assert page.select_artifact(alpha.id)
    qtbot.waitUntil(lambda: page.hardware is not None, timeout=30_000)
    suggested = page.ctx_spin.value()
    page.ctx_spin.setValue(768)
    page.threads_spin.setValue(1)
    page.model_defaults.save_button.click()
    assert model_settings(catalog, alpha.id)["ctx"] == 768
    assert "Saved as this model's defaults" in page.model_defaults.label.text()
    assert page.select_artifact(beta.id)
    assert page.ctx_spin.value() == suggested  # beta: still the suggested settings
    assert page.select_artifact(alpha.id)
    assert (page.ctx_spin.value(), page.threads_spin.value()) == (768, 1)
    request = page.form_request()
    assert request.options.ctx == 768
    page.model_defaults.forget_button.click()
    assert model_settings(catalog, alpha.id) is None
    assert page.ctx_spin.value() == suggested


def test_the_gateway_does_not_outlive_the_window(qtbot, window):
    panel = window.deployments_page.gateway_panel
    panel.port_spin.setValue(0)
    with qtbot.waitSignal(panel.gateway.sig_started, timeout=START_MS):
        assert panel.start()
    pid = panel.gateway.pid
    assert pid is not None and pid_alive(pid)
    window.close()
    assert not pid_alive(pid)
