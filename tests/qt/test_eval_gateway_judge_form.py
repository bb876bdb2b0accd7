"""The Evaluate page's Run tab with the window's gateway as the judge (#18 item 2).

The gateway started on the Deployments page shows up as a judge; choosing it offers its
models; a key typed in the Judge key field reaches the eval job (and only it): the judged
items are scored through the gateway, whose request log names the key's owner and the
chosen model, and the key is in no job row, run or leftover environment variable.
"""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("pytestqt")

from llmops_desktop.evaluate import runs as run_store  # noqa: E402
from llmops_desktop.evaluate.judge import JUDGE_KEY_ENV  # noqa: E402
from llmops_desktop.evaluate.suites import import_suite  # noqa: E402
from llmops_desktop.gateway.keys import create_key  # noqa: E402
from llmops_desktop.gateway.usage import gateway_log  # noqa: E402
from tests.gateway_fixtures import two_models  # noqa: E402
from tests.test_eval_generation import JUDGED_ROWS, _jsonl  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
START_MS = 90_000
JOB_MS = 300_000


def test_the_windows_gateway_judges_with_a_chosen_model_and_key(qtbot, window, catalog,
                                                                demo_gguf, tmp_path) -> None:
    alpha, beta = two_models(catalog, demo_gguf)
    suite = import_suite(catalog, _jsonl(tmp_path / "judged.jsonl", JUDGED_ROWS), name="judged")
    _, key = create_key(catalog, "eval-judge")
    panel = window.deployments_page.gateway_panel
    panel.port_spin.setValue(0)
    panel.idle_spin.setValue(0)
    with qtbot.waitSignal(panel.gateway.sig_started, timeout=START_MS):
        panel.start_button.click()
    url = panel.gateway.url

    page = window.show_page("evaluate")
    page.tabs.setCurrentIndex(1)
    form = page.run_form
    form.reload()
    index = form.judge_combo.findData(url)
    assert index > 0 and form.judge_combo.itemText(index) == f"gateway  ({url})"
    form.judge_combo.setCurrentIndex(index)
    assert form.judge() == url
    models = [form.judge_model_combo.itemText(i) for i in range(form.judge_model_combo.count())]
    assert sorted(models) == sorted([alpha.ref, beta.ref])
    form.judge_model_combo.setCurrentText(beta.ref)
    form.judge_key_edit.setText(key)
    form.set_checked([alpha.ref])
    form.select_suite(suite.ref)

    finished: dict[int, str] = {}
    window.ctx.jobs.sig_job_finished.connect(lambda jid, state: finished.__setitem__(jid, state))
    job_id = form.start()
    assert job_id is not None, form.status.text()
    assert JUDGE_KEY_ENV not in os.environ  # set for the child's start only
    qtbot.waitUntil(lambda: job_id in finished, timeout=JOB_MS)
    job = catalog.job(job_id)
    assert finished[job_id] == "succeeded", job.error
    assert job.params["judge"] == url and job.params["judge_model"] == beta.ref
    run_id = run_store.latest_run(catalog, alpha.id, suite.id).id
    rows = run_store.results(catalog, run_id)
    assert [r.details["judge_model"] for r in rows] == [beta.ref, beta.ref]

    def asked() -> list[tuple]:  # the gateway writes its log a moment after answering
        return [(r.key_name, r.model, r.status) for r in gateway_log(catalog)
                if r.endpoint == "/v1/chat/completions"]

    qtbot.waitUntil(lambda: len(asked()) >= 3, timeout=15_000)
    assert asked() == [("eval-judge", beta.ref, 200)] * 3
    assert key not in json.dumps(job.params) + json.dumps([r.details for r in rows])

    form.judge_combo.setCurrentIndex(0)  # no judge: no gateway models offered
    assert form.judge() is None and form.judge_model_combo.count() == 0
