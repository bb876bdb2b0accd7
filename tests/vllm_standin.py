"""A stand-in for vLLM's OpenAI server where vLLM cannot run (no NVIDIA GPU here): it takes
vLLM's flags, answers ``/health``, ``/metrics`` (vLLM's gauges) and ``/v1/models`` (with
``max_model_len``, behind ``VLLM_API_KEY`` as vLLM does), and writes what it was started
with to ``--record FILE``, so the deployment's supervision (ready line, catalog row, stop)
runs for real. It is no model: the gpu-marked test in test_vllm_engine.py starts vLLM."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


METRICS = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="{name}"}} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="{name}"}} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="{name}"}} 0.25
"""


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model")
    p.add_argument("--served-model-name", nargs="+")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--tensor-parallel-size", type=int)
    p.add_argument("--max-model-len", type=int, default=128)
    p.add_argument("--record")
    p.add_argument("--exit-first", type=int)  # exit with this code before answering
    p.add_argument("--slow", type=float, default=0.0)  # seconds of "loading" first
    args, _ = p.parse_known_args()
    if args.record:
        with open(args.record, "w", encoding="utf-8") as f:
            json.dump({"argv": sys.argv[1:], "pid": os.getpid(), "pgid": os.getpgid(0),
                       "env": {k: os.environ.get(k) for k in (
                           "CUDA_VISIBLE_DEVICES", "VLLM_API_KEY", "LLMOPS_API_KEY")}}, f)
    if args.exit_first is not None:
        return args.exit_first
    time.sleep(args.slow)
    key = os.environ.get("VLLM_API_KEY")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/health":
                self._send(200, b"")
            elif self.path == "/metrics":  # vLLM's gauges, labelled by model as vLLM does
                self._send(200, METRICS.format(name=args.served_model_name[0]).encode())
            elif key and self.headers.get("Authorization") != f"Bearer {key}":
                self._send(401, b'{"error": "Unauthorized"}')
            elif self.path == "/v1/models":
                self._send(200, json.dumps({"object": "list", "data": [
                    {"id": n, "object": "model", "max_model_len": args.max_model_len}
                    for n in args.served_model_name]}).encode())
            else:
                self._send(404, b"{}")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
