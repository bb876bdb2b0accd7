"""The error-rate alert watches the server's failures (5xx), not a client's mistakes (4xx).

A real ``/metrics`` text (the server's own ServerMetrics) over real HTTP, a deployment row
in the catalog, and the monitor's sampler with the alert rules the settings make."""

from __future__ import annotations

import threading
from pathlib import Path
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmops_desktop.catalog import ArtifactFile, Catalog
from llmops_desktop.monitor.alerts import rules_from_settings
from llmops_desktop.monitor.sampler import Sampler, SamplerConfig
from llmops_desktop.paths import Home
from llmops_desktop.serving.metrics import ServerMetrics
from llmops_desktop.serving.store import create_deployment, update_deployment
from llmops_desktop.settings import Settings
from tests.test_monitor import wait_for


@pytest.fixture
def metrics_server() -> Iterator[tuple[ServerMetrics, str]]:
    metrics = ServerMetrics(deployment="demo", model="demo", engine="llama.cpp",
                            waiting=lambda: 0, running=lambda: 0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = metrics.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield metrics, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _answer(metrics: ServerMetrics, status: int, n: int) -> None:
    for _ in range(n):
        metrics.observe(endpoint="/v1/chat/completions", status=status, ttft_s=0.01,
                        latency_s=0.02, prompt_tokens=3, completion_tokens=2)


def test_client_errors_do_not_fire_the_error_rate_alert(home: Home, catalog: Catalog,
                                                        metrics_server) -> None:
    metrics, url = metrics_server
    artifact = catalog.add_artifact(model_name="demo", kind="gguf", storage="reference",
                                    path=Path("/nowhere/demo.gguf"),
                                    files=[ArtifactFile("demo.gguf", 10, "0" * 64)])
    dep_id = create_deployment(catalog, name="demo", artifact_id=artifact.id,
                               artifact_ref=artifact.ref,
                               engine="llama.cpp", host="127.0.0.1", settings={})
    update_deployment(catalog, dep_id, state="running", url=url)
    rules = rules_from_settings(Settings().updated(alert_error_rate_pct=10))
    fired = []
    with Sampler(home, SamplerConfig(rate_hz=10.0, history=False, rules=tuple(rules))) as sampler:
        sampler.add_alert_listener(fired.append)
        wait_for(sampler, lambda s: bool(s.deployments) and s.deployments[0].status == "ok")
        _answer(metrics, 200, 10)
        _answer(metrics, 404, 6)  # unknown model: the client's mistake
        _answer(metrics, 401, 4)  # no key: the client's mistake
        sample = wait_for(sampler, lambda s: s.deployments[0].requests_total >= 20
                          and s.deployments[0].server_error_rate_pct == 0)
        reading = sample.deployments[0]
        assert reading.error_rate_pct == pytest.approx(50.0)  # every failure, still shown
        for _ in range(5):  # several samples: more than the rule needs to fire
            wait_for(sampler, lambda s: True)
        assert [e for e in fired if e.rule == "alert_error_rate_pct"] == []

        _answer(metrics, 500, 10)  # now the server fails
        wait_for(sampler, lambda s: any(e.rule == "alert_error_rate_pct" for e in fired))
    (event,) = [e for e in fired if e.rule == "alert_error_rate_pct"]
    assert event.state == "firing" and event.series == f"dep.{dep_id}.server_error_rate"
    assert "server error rate" in event.message
