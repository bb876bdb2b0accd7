"""The gateway's HTTP app: one OpenAI-compatible address for every model the policy allows.

``/v1/models`` lists the models the caller's key may use, each with its ``state``
(loaded, loading, unloaded). ``/v1/chat/completions``, ``/v1/completions`` and the Anthropic
Messages API ``/v1/messages`` (the key as ``x-api-key`` or ``Authorization: Bearer``; errors
in Anthropic's shape) check the key (401), its scope (403, from the body's ``model``) and
limits (429 with ``Retry-After``), load the model if need be (503 with ``Retry-After`` when
it cannot load now) and pass the request to its deployment.
``/health`` answers without a key; ``/metrics`` is Prometheus text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from llmops_desktop.gateway import proxy
from llmops_desktop.gateway.keys import ApiKey, KeyRefused, KeyRing, keys_required
from llmops_desktop.gateway.limits import RateLimits
from llmops_desktop.gateway.pool import DeploymentPool, Unavailable
from llmops_desktop.gateway.usage import GatewayMetrics, UsageBook
from llmops_desktop.httpserve import BodyLimit, BodyTooLarge, read_body

log = logging.getLogger("llmops_desktop.gateway")

FLUSH_EVERY_S = 0.5


MESSAGES = "/v1/messages"  # the Anthropic Messages API: its own error shape and usage
ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 503: "overloaded_error"}


def error(status: int, message: str, *, code: str | None = None, type: str | None = None,
          retry_after: int | None = None, anthropic: bool = False) -> JSONResponse:
    """An error as the client's API writes it: OpenAI's, or Anthropic's for /v1/messages."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if anthropic:
        kind = ANTHROPIC_ERRORS.get(status, "api_error" if status >= 500
                                    else "invalid_request_error")
        return JSONResponse({"type": "error", "error": {"type": kind, "message": message}},
                            status_code=status, headers=headers)
    kind = type or {401: "authentication_error", 403: "permission_error",
                    429: "rate_limit_error", 404: "invalid_request_error"}.get(
                        status, "invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": kind, "param": None,
                                   "code": code}}, status_code=status, headers=headers)


class Gateway:
    """The state behind the routes: the pool, the keys, the limits, the books."""

    def __init__(self, pool: DeploymentPool, *, open_without_keys: bool) -> None:
        self.pool = pool
        self.catalog = pool.catalog
        self.keys = KeyRing(self.catalog)
        self.limits = RateLimits()
        self.metrics = GatewayMetrics()
        self.book = UsageBook(self.catalog, self.metrics)
        self.open_without_keys = open_without_keys  # loopback and no key was ever made
        self._tasks: list[asyncio.Task[Any]] = []

    def _token(self, request: Request) -> str | None:
        """The bearer token to check; None when this gateway needs none."""
        if self.open_without_keys and not keys_required(self.catalog):
            return None  # whatever a client sends (the openai client always sends one)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return request.headers.get("x-api-key", "").strip()  # Anthropic's own header

    def authenticate(self, request: Request) -> ApiKey | None:
        """The caller's key; None when this gateway needs none. Raises KeyRefused."""
        token = self._token(request)
        return None if token is None else self.keys.check(token)

    async def authenticate_async(self, request: Request) -> ApiKey | None:
        """:meth:`authenticate`, with a key's first scrypt off the event loop."""
        token = self._token(request)
        return None if token is None else await self.keys.check_async(token)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.pool.bind(loop, lambda url: proxy.make_client(url, self.pool.internal_key))
        self.pool.refresh()
        self._tasks = [asyncio.create_task(self.pool.run_idle_unloader()),
                       asyncio.create_task(self._flush_often())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.shutdown()
        self.book.flush()

    async def _flush_often(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                self.book.flush()
            except Exception as exc:  # noqa: BLE001 - kept and retried; the gateway goes on
                log.warning("request log not written yet (%s); retrying", exc)
            self.metrics.loaded.set(sum(s.state == "loaded" for s in self.pool.slots.values()))

    # ---- routes ------------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "loaded": [s.name for s in self.pool.slots.values()
                                                        if s.state == "loaded"]})

    async def metrics_text(self, request: Request) -> Response:
        try:
            await self.authenticate_async(request)
        except KeyRefused as exc:
            return error(401, str(exc), code="invalid_api_key")
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    async def models(self, request: Request) -> Response:
        try:
            key = await self.authenticate_async(request)
        except KeyRefused as exc:
            return error(401, str(exc), code="invalid_api_key")
        slots = [s for s in self.pool.refresh() if key is None or key.allows(*s.names)]
        return JSONResponse({"object": "list", "data": [
            {"id": s.name, "object": "model", "owned_by": "llmops", "created": 0,
             "state": s.state if s.state != "stopping" else "loaded",
             "engine": s.options.engine, "memory_bytes": s.need,
             **({"error": s.error} if s.error else {})} for s in slots]})

    async def generate(self, request: Request) -> Response:
        """/v1/chat/completions, /v1/completions and /v1/messages: key, scope (the body's
        model), limits, then the model's deployment; usage and the log row from its answer."""
        started = time.perf_counter()
        endpoint = request.url.path
        anthropic = endpoint == MESSAGES

        def fail(status: int, message: str, **kw: Any) -> JSONResponse:
            return error(status, message, anthropic=anthropic, **kw)

        try:
            key = await self.authenticate_async(request)
        except KeyRefused as exc:
            self.book.record(key_name=None, model="", endpoint=endpoint, stream=False,
                             status=401, latency_ms=_ms(started), error=str(exc))
            return fail(401, str(exc), code="invalid_api_key")
        key_name = key.name if key else None
        try:
            payload = json.loads(await read_body(request))
        except BodyTooLarge as exc:
            return fail(413, str(exc), code="request_too_large")
        except ValueError:
            return fail(400, "The body must be a JSON object.", code="invalid_json")
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model:
            return fail(400, "Say which model: 'model' (see /v1/models).", code="missing_model")
        stream = payload.get("stream") is True
        if model.startswith("prompt:") and not anthropic:  # a versioned prompt: its model
            from llmops_desktop.errors import InvalidInputError, NotFoundError
            from llmops_desktop.serving.prompts_route import gateway_prompt_target

            try:
                model, payload["model"] = gateway_prompt_target(self.catalog, model, payload)
            except (NotFoundError, InvalidInputError) as exc:
                return fail(404 if isinstance(exc, NotFoundError) else 400, str(exc),
                            code="model_not_found" if isinstance(exc, NotFoundError)
                            else "invalid_value")

        def refuse(status: int, message: str, **kw: Any) -> Response:
            named = slot.name if slot is not None else model
            self.book.record(key_name=key_name, model=named, endpoint=endpoint, stream=stream,
                             status=status, latency_ms=_ms(started), error=message,
                             counted=False)
            return fail(status, message, **kw)

        slot = self.pool.find(model)
        if slot is None or (key is not None and not key.allows(*slot.names)):
            if slot is not None:
                return refuse(403, f"The key {key_name!r} may not use {slot.name} (its scope: "
                                   f"{key.models}).", code="model_not_allowed")
            return refuse(404, f"No model {model!r} here; see /v1/models.",
                          code="model_not_found")
        if key is not None:
            over = self.limits.check(key.name, key.rpm, key.tpm)
            if over is not None:
                limit, wait = over
                return refuse(429, f"The key {key_name!r} is over its limit of {limit}; try "
                                   f"again in {wait} s.", code="rate_limit_exceeded",
                              retry_after=wait)
        body, added = proxy.prepare_body(payload, usage_event=not anthropic)
        for attempt in range(2):
            try:
                await self.pool.acquire(slot)
            except Unavailable as exc:
                return refuse(exc.status, exc.message, code=exc.code,
                              retry_after=exc.retry_after)
            try:
                if slot.client is None:  # it died between loading and now
                    raise proxy.httpx.ConnectError("the deployment is gone")
                upstream = await proxy.open_upstream(slot.client, endpoint, body)
                break
            except proxy.CONNECTION_ERRORS as exc:
                self.pool.release(slot)
                # A deployment that died (killed, crashed) before it took the request:
                # start it again and send the request there, once.
                if attempt == 0 and await self.pool.confirm_dead(slot):
                    continue
                return refuse(502, f"The deployment of {slot.name} did not answer "
                                   f"({type(exc).__name__}); try again.",
                              code="deployment_unavailable")
            except BaseException:
                self.pool.release(slot)
                raise
        return await self._relay(slot, key, endpoint, upstream, stream, added, started)

    async def _relay(self, slot: Any, key: ApiKey | None, endpoint: str, upstream: Any,
                     stream: bool, added: bool, started: float) -> Response:
        outcome = proxy.Outcome()
        key_name = key.name if key else None
        released = False

        def done(result: proxy.Outcome) -> None:
            nonlocal released
            if released:
                return
            released = True
            self.pool.release(slot)
            if key is not None:
                self.limits.add_tokens(key.name, result.prompt_tokens + result.completion_tokens)
            self.book.record(key_name=key_name, model=slot.name, endpoint=endpoint,
                             stream=stream, status=result.status, latency_ms=_ms(started),
                             ttft_ms=result.ttft_ms, prompt_tokens=result.prompt_tokens,
                             completion_tokens=result.completion_tokens, error=result.error)

        outcome.status = upstream.status_code
        headers = proxy.response_headers(upstream)
        if stream and upstream.status_code == 200:
            async def close() -> None:  # however the stream ends, even before it starts
                await upstream.aclose()
                done(outcome)

            return RelayResponse(proxy.relay_events(upstream, outcome, started, added, done),
                                 close, status_code=200, headers=headers)
        try:
            content = await upstream.aread()
            outcome.ttft_ms = _ms(started)
            try:
                proxy.read_usage(json.loads(content), outcome)
            except ValueError:
                pass
        except proxy.CONNECTION_ERRORS:
            outcome.status, outcome.error = 502, f"{slot.name}'s deployment stopped answering"
            gone = error(502, f"The deployment of {slot.name} stopped answering; the next "
                          "request starts it again.", code="deployment_unavailable",
                          anthropic=endpoint == MESSAGES)
            content, headers = bytes(gone.body), {"content-type": "application/json"}
        finally:
            await upstream.aclose()
            done(outcome)
        return Response(content, status_code=outcome.status, headers=headers)


class RelayResponse(StreamingResponse):
    """A stream whose ``on_close`` runs however it ends: a client that leaves before the
    first event still frees its place on the deployment and gets its log row."""

    def __init__(self, content: Any, on_close: Any, **kw: Any) -> None:
        super().__init__(content, **kw)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _feedback_route(gateway: Gateway) -> Any:
    """POST /v1/feedback: passed to the deployment that sent the reply (#19)."""
    from llmops_desktop.serving.feedback_api import gateway_feedback

    async def feedback(request: Request) -> Response:
        return await gateway_feedback(gateway, request)

    return feedback


def create_gateway_app(gateway: Gateway) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    routes = [Route("/health", gateway.health), Route("/metrics", gateway.metrics_text),
              Route("/v1/models", gateway.models),
              Route("/v1/chat/completions", gateway.generate, methods=["POST"]),
              Route("/v1/completions", gateway.generate, methods=["POST"]),
              Route(MESSAGES, gateway.generate, methods=["POST"]),
              Route("/v1/feedback", _feedback_route(gateway), methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return BodyLimit(app)
