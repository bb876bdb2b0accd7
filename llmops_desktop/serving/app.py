"""The OpenAI-compatible HTTP side of a deployment: FastAPI routes over one engine.

``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (SSE when ``stream``),
``/health`` and ``/metrics``. A generation request's body is read up to 16 MiB (with or
without a Content-Length; 413 beyond) and validated (a 4xx with an OpenAI error body for
anything wrong); it then takes a place in the bounded queue (503 with ``Retry-After``
when it is full) and only then is its prompt tokenized, so a flood of huge prompts costs
no more tokenizing than ``--max-queue`` allows. It waits for an engine slot, and generates
on a worker thread. A client that goes away, while queued or mid-stream, cancels its
generation. Every generation request, whatever its outcome, goes to ``/metrics`` and to
the recorder (the catalog's request log).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, Protocol

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response, StreamingResponse

from llmops_desktop.catalog import utcnow
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.httpserve import MAX_BODY, BodyLimit, BodyTooLarge, read_body
from llmops_desktop.serving.admission import Admission
from llmops_desktop.serving.anthropic_api import anthropic_router
from llmops_desktop.serving.auth import ApiKeyGuard
from llmops_desktop.serving.config import DeploymentConfig
from llmops_desktop.serving.engines.base import (
    ChatTemplateMissingError,
    Engine,
    PromptTokens,
    SamplingParams,
)
from llmops_desktop.serving.feedback_api import ReplyBook, feedback_router
from llmops_desktop.serving.embeddings import embeddings_router
from llmops_desktop.serving.logprobs import logprobs_body
from llmops_desktop.serving.metrics import CONTENT_TYPE, ServerMetrics
from llmops_desktop.serving.prompts_route import PromptResolver
from llmops_desktop.serving.protocol import (
    APIError,
    ChatRequest,
    ChunkWriter,
    CompletionRequest,
    chat_body,
    completion_body,
    new_id,
    parse_body,
)
from llmops_desktop.serving.store import RequestRecord
from llmops_desktop.serving.streaming import Generation, decode_timings, with_timings
from llmops_desktop.serving.tools import plan_output, stream_writer

log = logging.getLogger("llmops_desktop.serving")
Kind = Literal["completion", "chat"]
CLIENT_GONE = 499  # nginx's "client closed request", for the log and /metrics


class RequestSink(Protocol):
    def record(self, row: RequestRecord) -> None: ...


class _Measure:
    """What one generation request did, filled in as it goes."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint, self.t0, self.ts = endpoint, time.perf_counter(), utcnow()
        self.model, self.stream, self.status = "", False, 200
        self.error: str | None = None
        self.prompt_tokens = 0
        self.t_slot: float | None = None
        self.gen: Generation | None = None
        self.output: Any = None  # tools and response_format (serving/tools.py)
        self.rid: str | None = None  # the response id the client gets (#19)
        self.request: Any = None
        self.text = ""
        self.prompt_ref: str | None = None
        self.timings: dict[str, Any] | None = None  # sent with the reply (decode_timings)

    def failed(self, exc: APIError) -> APIError:
        self.status, self.error = exc.status, exc.code or exc.type
        return exc


class ServingState:
    """Everything the routes share: the engine, its queue, metrics and the recorder."""

    def __init__(self, deployment: DeploymentConfig, engine: Engine,
                 recorder: RequestSink | None) -> None:
        self.deployment, self.engine, self.recorder = deployment, engine, recorder
        self.admission = Admission(engine.parallel_slots, deployment.options.max_queue)
        self.metrics = ServerMetrics(deployment=deployment.name, model=deployment.artifact_ref,
                                     engine=deployment.engine,
                                     waiting=lambda: self.admission.waiting,
                                     running=lambda: self.admission.running)
        self.metrics.watch_engine(getattr(engine, "stats", None))
        self.executor = ThreadPoolExecutor(max_workers=engine.parallel_slots,
                                           thread_name_prefix="llmops-generate")
        self.created = int(time.time())
        self.active: set[Generation] = set()
        self.replies = ReplyBook()  # what POST /v1/feedback links a rating to
        self.prompts = PromptResolver(self)  # "model": "prompt:NAME@ALIAS"
        self.tokenized = Counter("llmops_prompts_tokenized", "Prompts given to the tokenizer "
                                 "(only requests with a place in the queue are)",
                                 registry=self.metrics.registry)

    def check_model(self, model: str) -> None:
        if model not in self.deployment.aliases:
            raise APIError(404, f"The model {model!r} does not exist on this server; it serves "
                                f"{self.deployment.name!r} (GET /v1/models lists it).",
                           param="model", code="model_not_found")

    def check_prompt(self, req: Any, kind: Kind) -> Any:
        """What can be checked without the tokenizer (cheap, before a place in the queue):
        the chat messages as the template gets them, or the one prompt (text or ids)."""
        if kind == "chat":
            return [m.as_template_input(i) for i, m in enumerate(req.messages)]
        if req.echo:
            raise APIError(400, "'echo' is not supported.", param="echo", code="invalid_value")
        prompt = req.prompt
        if isinstance(prompt, list):
            if prompt and all(isinstance(t, int) for t in prompt):
                bad = [t for t in prompt if not 0 <= t < self.engine.n_vocab]
                if bad:
                    raise APIError(400, f"Token id {bad[0]} is outside this model's vocabulary "
                                        f"(0..{self.engine.n_vocab - 1}).", param="prompt",
                                   code="invalid_value")
                return PromptTokens(list(prompt))
            if len(prompt) != 1:
                raise APIError(400, "Send exactly one prompt per request.", param="prompt",
                               code="invalid_value")
            prompt = prompt[0]
        return prompt

    def prompt_for(self, checked: Any, kind: Kind,
                   tools: list[dict[str, Any]] | None = None) -> PromptTokens:
        """Tokenize what :meth:`check_prompt` returned (on a worker thread: long prompts
        take a while). Only a request with a place in the queue gets here."""
        if isinstance(checked, PromptTokens):
            return checked
        engine = self.engine
        self.tokenized.inc()
        param = "messages" if kind == "chat" else "prompt"
        try:
            if kind == "chat":
                if tools:  # a template that renders tools itself (serving/tools.py)
                    return engine.tokenize_chat(checked, tools=tools)  # type: ignore[call-arg]
                return engine.tokenize_chat(checked)
            return engine.tokenize(checked)
        except ChatTemplateMissingError as exc:
            raise APIError(400, str(exc), param=param, code="chat_template_missing") from None
        except UnicodeError:
            raise APIError(400, f"The {'messages are' if kind == 'chat' else 'prompt is'} not "
                                "valid Unicode text.", param=param, code="invalid_value") from None
        except InvalidInputError as exc:
            raise APIError(400, str(exc), param=param, code="invalid_value") from None

    def sampling(self, req: Any, n_prompt: int, kind: Kind) -> SamplingParams:
        n_ctx = self.engine.n_ctx
        if n_prompt == 0:
            raise APIError(400, "The prompt is empty.", param="prompt", code="invalid_value")
        if n_prompt >= n_ctx:
            raise APIError(400, f"The prompt is {n_prompt} tokens, but this deployment's context "
                                f"is {n_ctx} tokens and at least one must be left for the "
                                "completion. Shorten the prompt, or serve with a larger --ctx.",
                           param="messages" if kind == "chat" else "prompt",
                           code="context_length_exceeded")
        param, requested = "max_tokens", req.max_tokens
        if kind == "chat" and req.max_completion_tokens is not None:
            param, requested = "max_completion_tokens", req.max_completion_tokens
        room = n_ctx - n_prompt
        if requested is None:
            max_tokens = min(16, room) if kind == "completion" else room
        elif requested < 1:
            raise APIError(400, f"'{param}' must be at least 1, not {requested}.", param=param,
                           code="invalid_value")
        elif requested > room:
            raise APIError(400, f"This model's maximum context length is {n_ctx} tokens. However, "
                                f"you requested {n_prompt + requested} tokens ({n_prompt} in the "
                                f"prompt, {requested} for the completion). Reduce the prompt or "
                                f"'{param}'.", param=param, code="context_length_exceeded")
        else:
            max_tokens = requested
        seed = req.seed % 2**31 if req.seed is not None else None
        logprobs = req.logprob_count()
        if logprobs is not None and not self.engine.supports_logprobs:
            raise APIError(400, f"The {self.engine.name} engine does not report logprobs; "
                                "leave 'logprobs' out.", param="logprobs",
                           code="unsupported_parameter")
        return SamplingParams(max_tokens=max_tokens, temperature=req.temperature,
                              top_p=req.top_p, seed=seed, logprobs=logprobs)

    def finish(self, m: _Measure) -> None:
        """Count the request in /metrics and hand it to the recorder."""
        t_end = time.perf_counter()
        gen = m.gen
        latency = t_end - m.t0
        completion = gen.completion_tokens if gen else 0
        ttft = gen.first_token_at - m.t0 if gen and gen.first_token_at else None
        busy = t_end - m.t_slot if m.t_slot is not None else None
        tps = completion / busy if completion and busy else None
        if m.timings is not None:  # the figure the client was given, not another one
            tps = m.timings["predicted_per_second"]
        self.metrics.observe(endpoint=m.endpoint, status=m.status, ttft_s=ttft,
                             latency_s=latency, prompt_tokens=m.prompt_tokens,
                             completion_tokens=completion)
        if m.status == 200:
            self.admission.observe(latency)
        if self.recorder is not None:
            self.recorder.record(RequestRecord(
                deployment_id=self.deployment.id, artifact_id=self.deployment.artifact_id,
                ts=m.ts, endpoint=m.endpoint, model=m.model, stream=m.stream, status=m.status,
                latency_ms=latency * 1000, prompt_tokens=m.prompt_tokens,
                completion_tokens=completion, ttft_ms=ttft * 1000 if ttft is not None else None,
                queue_ms=(m.t_slot - m.t0) * 1000 if m.t_slot is not None else None,
                tokens_per_s=tps, finish_reason=gen.finish_reason if gen else None,
                error=m.error, response_id=m.rid, prompt_ref=m.prompt_ref))
        if m.status == 200 and m.rid:
            self.replies.remember(m.rid, m.request, m.text, m.prompt_ref)
        if m.prompt_ref:
            self.prompts.observe(m.prompt_ref, m.status)
        log.info("%s %s %d, %d+%d tokens, %.0f ms", "POST", m.endpoint, m.status,
                 m.prompt_tokens, completion, latency * 1000)

    def close(self) -> None:
        """Cancel what still runs and wait for the worker threads (at most a token each)."""
        for gen in list(self.active):
            gen.cancel()
        self.executor.shutdown(wait=True, cancel_futures=True)


def create_app(deployment: DeploymentConfig, engine: Engine, recorder: RequestSink | None = None,
               *, api_key: str | None = None) -> FastAPI:
    """The ASGI app for one deployment. With ``api_key``, every path but /health needs
    ``Authorization: Bearer <key>``."""
    app = FastAPI(title=f"LLMOps Desktop: {deployment.name}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    state = ServingState(deployment, engine, recorder)
    app.state.llmops = state

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return APIError(400, f"Invalid request: {exc.errors()[0].get('msg', exc)}").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = ("Unknown endpoint " + request.url.path + "." if exc.status_code == 404
                   else str(exc.detail))
        return APIError(exc.status_code, message, code="not_found" if exc.status_code == 404
                        else None, headers=dict(exc.headers or {})).response()

    @app.get("/health")
    async def health() -> dict[str, Any]:
        info = {k: v for k, v in engine.describe().items() if k != "model_path"}
        return {"status": "ok", "deployment": deployment.name, "model": deployment.artifact_ref,
                **info, "running": state.admission.running, "waiting": state.admission.waiting}

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    def _model_card() -> dict[str, Any]:
        return {"id": deployment.name, "object": "model", "created": state.created,
                "owned_by": "llmops-desktop"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str) -> dict[str, Any]:
        state.check_model(model_id)
        return _model_card()

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await _generate(state, request, "completion")

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await _generate(state, request, "chat")

    app.include_router(feedback_router(state))
    app.include_router(anthropic_router(state))  # POST /v1/messages
    app.include_router(embeddings_router(state))
    if api_key:
        app.add_middleware(ApiKeyGuard, key=api_key, rejected=state.metrics.requests)
    app.add_middleware(BodyLimit, limit=MAX_BODY)  # outermost: even a 401 reads no body
    return app


async def _generate(st: ServingState, request: Request, kind: Kind) -> Response:
    m = _Measure(request.url.path)
    try:
        req, prompt, params, stops = await _admit(st, request, kind, m)
    except Exception as exc:  # noqa: BLE001 - APIErrors, and bugs: answered, never a crash
        if not isinstance(exc, APIError):
            log.exception("request failed before generation")
            exc = APIError(500, f"The server failed to prepare this request: {exc}",
                           type="server_error", code="internal_error")
        m.failed(exc)
        st.finish(m)
        return exc.response()
    if not await _wait_for_slot(st.admission, request):
        m.status = CLIENT_GONE
        st.finish(m)
        return Response(status_code=CLIENT_GONE)
    m.t_slot = time.perf_counter()
    gen = m.gen = Generation(st.engine, prompt, params, stops)
    st.active.add(gen)

    def _done() -> None:
        st.active.discard(gen)
        st.admission.release()

    try:
        gen.start(st.executor, _done)
    except RuntimeError:  # the executor is shut down: we are stopping
        _done()
        exc = m.failed(APIError(503, "The server is stopping.", type="server_error",
                                code="server_stopping", headers={"Retry-After": "5"}))
        st.finish(m)
        return exc.response()
    rid = m.rid = new_id("chatcmpl" if kind == "chat" else "cmpl")
    if req.stream:
        writer = stream_writer(m.output, ChunkWriter(kind, rid, st.deployment.name))
        return StreamingResponse(_stream(st, m, gen, writer, req.include_usage),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await _complete(st, m, gen, request, kind, rid)


async def _admit(st: ServingState, request: Request, kind: Kind, m: _Measure
                 ) -> tuple[Any, PromptTokens, SamplingParams, list[str]]:
    """Read and validate, take a place in the queue, then tokenize (or raise an APIError;
    the place is given back then)."""
    try:
        raw = await read_body(request, MAX_BODY)
    except BodyTooLarge as exc:
        raise APIError(413, str(exc), code="request_too_large") from None
    if st.prompts.wants(raw):
        raw, m.prompt_ref = await run_in_threadpool(st.prompts.apply, raw, kind)
    req = parse_body(raw, ChatRequest if kind == "chat" else CompletionRequest)
    del raw
    m.model, m.stream, m.request = req.model, req.stream, req
    st.check_model(req.model)
    stops = req.stops()
    m.output = output = plan_output(req, kind, st.engine)
    checked = st.check_prompt(req, kind)
    if output is not None and kind == "chat":
        checked = output.messages(checked, req.messages)
    st.admission.reserve()
    try:
        prompt = await run_in_threadpool(st.prompt_for, checked, kind,
                                         output.template_tools if output else None)
        m.prompt_tokens = len(prompt)
        params = st.sampling(req, len(prompt), kind)
        if output is not None and output.grammar:
            params = replace(params, grammar=output.grammar)
    except BaseException:
        st.admission.leave_queue()
        raise
    return req, prompt, params, stops


async def _wait_for_slot(admission: Admission, request: Request) -> bool:
    """Wait for an engine slot; False if the client went away first."""
    if admission.free():
        await admission.acquire()
        return True
    acquire = asyncio.ensure_future(admission.acquire())
    gone = asyncio.ensure_future(_client_gone(request))
    await asyncio.wait({acquire, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if acquire.done() and not acquire.cancelled():
        acquire.result()
        return True
    acquire.cancel()
    try:
        await acquire
    except asyncio.CancelledError:
        return False
    admission.release()  # it got the slot just as we cancelled: give it back
    return False


async def _client_gone(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _complete(st: ServingState, m: _Measure, gen: Generation, request: Request,
                    kind: Kind, rid: str) -> Response:
    async def collect() -> str:
        return "".join([text async for text in gen.deltas()])

    work = asyncio.ensure_future(collect())
    gone = asyncio.ensure_future(_client_gone(request))
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if not work.done():
        gen.cancel()
        work.cancel()
        m.status = CLIENT_GONE
        st.finish(m)
        return Response(status_code=CLIENT_GONE)
    try:
        text = work.result()
    except Exception as exc:  # noqa: BLE001 - the engine failed; the server stays up
        log.exception("generation failed")
        err = m.failed(APIError(500, f"Generation failed: {exc}", type="server_error",
                                code="generation_failed"))
        st.finish(m)
        return err.response()
    build = chat_body if kind == "chat" else completion_body
    logprobs = (logprobs_body(kind, gen.take_logprobs()) if gen.params.logprobs is not None
                else None)
    body = build(rid, st.deployment.name, text, gen.finish_reason, m.prompt_tokens,
                 gen.completion_tokens, logprobs)
    if m.output is not None and kind == "chat":
        body = m.output.chat_body(body, text)
    m.text = text
    st.finish(m)
    return JSONResponse(body)


async def _stream(st: ServingState, m: _Measure, gen: Generation, writer: ChunkWriter,
                  include_usage: bool) -> AsyncIterator[bytes]:
    finished = False
    try:
        first = writer.start()
        if first:
            yield first
        try:
            offset = 0
            async for text in gen.deltas():
                m.text += text
                logprobs = None
                if gen.params.logprobs is not None:
                    logprobs = logprobs_body(writer.kind, gen.take_logprobs(), offset)
                    offset += len(text)
                yield writer.text(text, logprobs=logprobs)
            yield writer.text("", gen.finish_reason)
            if include_usage:  # with llama.cpp's 'timings' (the Playground's tokens/s)
                m.timings = decode_timings(m.t_slot or m.t0, gen)
                yield with_timings(writer.usage(m.prompt_tokens, gen.completion_tokens),
                                   m.timings)
        except Exception as exc:  # noqa: BLE001 - the engine failed mid-stream
            log.exception("generation failed")
            yield writer.error(m.failed(APIError(500, f"Generation failed: {exc}",
                                                 type="server_error",
                                                 code="generation_failed")))
        yield writer.DONE
        finished = True
    finally:
        if not finished:  # the client went away (or the server is stopping)
            gen.cancel()
            m.status = CLIENT_GONE
        st.finish(m)
