"""``POST /v1/messages``: the Anthropic Messages API over the deployment's chat path.

The official ``anthropic`` client works against it (``base_url`` the server, the key as
``x-api-key``, which the API key guard accepts as well as ``Authorization: Bearer``). A
request is translated to the chat request (:mod:`.anthropic_wire`) and then goes where
``/v1/chat/completions`` goes: the bounded queue, the template, the grammar for tool
choices, an engine slot, ``/metrics`` and the request log (endpoint ``/v1/messages``).
Streams are Anthropic's events: ``message_start``, ``content_block_start``/``delta``/
``stop`` (text, and ``tool_use`` with ``input_json_delta``), ``message_delta`` with the
stop reason and usage, ``message_stop``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response, StreamingResponse

from llmops_desktop.httpserve import MAX_BODY, BodyTooLarge, read_body
from llmops_desktop.serving.anthropic_wire import (
    STOP_REASONS,
    MessageEvents,
    RecordingStopMatcher,
    error_body,
    message_body,
    new_message_id,
    parse_messages,
)
from llmops_desktop.serving.protocol import APIError
from llmops_desktop.serving.streaming import Generation
from llmops_desktop.serving.tool_parsing import ToolCallStream
from llmops_desktop.serving.tools import plan_output

log = logging.getLogger("llmops_desktop.serving")
ENDPOINT = "/v1/messages"


def _error(exc: APIError) -> Response:
    return JSONResponse(error_body(exc), status_code=exc.status, headers=exc.headers)


def anthropic_router(state: Any) -> APIRouter:
    """The router for one deployment's :class:`~.app.ServingState`."""
    router = APIRouter()

    @router.post(ENDPOINT)
    async def messages(request: Request) -> Response:
        return await _messages(state, request)

    return router


async def _messages(st: Any, request: Request) -> Response:
    from llmops_desktop.serving import app as core  # the shared request machinery

    m = core._Measure(ENDPOINT)
    try:
        areq, req, prompt, params, output = await _admit(st, request, m)
    except Exception as exc:  # noqa: BLE001 - APIErrors, and bugs: answered, never a crash
        if not isinstance(exc, APIError):
            log.exception("request failed before generation")
            exc = APIError(500, f"The server failed to prepare this request: {exc}",
                           type="server_error")
        m.failed(exc)
        st.finish(m)
        return _error(exc)
    if not await core._wait_for_slot(st.admission, request):
        m.status = core.CLIENT_GONE
        st.finish(m)
        return Response(status_code=core.CLIENT_GONE)
    m.t_slot = time.perf_counter()
    stops = req.stops()
    gen = m.gen = Generation(st.engine, prompt, params, stops)
    gen.stop = RecordingStopMatcher(stops)
    st.active.add(gen)

    def _done() -> None:
        st.active.discard(gen)
        st.admission.release()

    try:
        gen.start(st.executor, _done)
    except RuntimeError:
        _done()
        exc = m.failed(APIError(503, "The server is stopping.", headers={"Retry-After": "5"}))
        st.finish(m)
        return _error(exc)
    m.rid = rid = new_message_id()
    if areq.stream:
        events = MessageEvents(rid, st.deployment.name)
        return StreamingResponse(_stream(st, m, gen, events, output),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return await _complete(st, m, gen, request, output, rid, core)


async def _admit(st: Any, request: Request, m: Any) -> tuple[Any, ...]:
    try:
        raw = await read_body(request, MAX_BODY)
    except BodyTooLarge as exc:
        raise APIError(413, str(exc), code="request_too_large") from None
    areq, req = parse_messages(raw)
    del raw
    m.model, m.stream, m.request = req.model, areq.stream, req
    st.check_model(req.model)
    req.stops()
    output = plan_output(req, "chat", st.engine)
    checked = st.check_prompt(req, "chat")
    if output is not None:
        checked = output.messages(checked, req.messages)
    st.admission.reserve()
    try:
        prompt = await run_in_threadpool(st.prompt_for, checked, "chat",
                                         output.template_tools if output else None)
        m.prompt_tokens = len(prompt)
        params = st.sampling(req, len(prompt), "chat")
        if output is not None and output.grammar:
            params = replace(params, grammar=output.grammar)
    except BaseException:
        st.admission.leave_queue()
        raise
    return areq, req, prompt, params, output


def _stop_sequence(gen: Generation) -> str | None:
    return getattr(gen.stop, "which", None)


async def _complete(st: Any, m: Any, gen: Generation, request: Request, output: Any, rid: str,
                    core: Any) -> Response:
    async def collect() -> str:
        return "".join([text async for text in gen.deltas()])

    work = asyncio.ensure_future(collect())
    gone = asyncio.ensure_future(core._client_gone(request))
    await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    gone.cancel()
    if not work.done():
        gen.cancel()
        work.cancel()
        m.status = core.CLIENT_GONE
        st.finish(m)
        return Response(status_code=core.CLIENT_GONE)
    try:
        text = work.result()
    except Exception as exc:  # noqa: BLE001 - the engine failed; the server stays up
        log.exception("generation failed")
        err = m.failed(APIError(500, f"Generation failed: {exc}", type="server_error"))
        st.finish(m)
        return _error(err)
    content, calls = output.read(text) if output is not None else (text, [])
    stop_sequence = _stop_sequence(gen)
    reason = "tool_use" if calls else "stop_sequence" if stop_sequence \
        else STOP_REASONS.get(gen.finish_reason or "stop", "end_turn")
    body = message_body(rid, st.deployment.name, content, calls, reason,
                        stop_sequence if reason == "stop_sequence" else None,
                        m.prompt_tokens, gen.completion_tokens)
    m.text = text
    st.finish(m)
    return JSONResponse(body)


async def _stream(st: Any, m: Any, gen: Generation, events: MessageEvents,
                  output: Any) -> AsyncIterator[bytes]:
    writer: Any = ToolCallStream(events, output) if output is not None \
        and output.calls_expected else events
    finished = False
    try:
        yield events.start(m.prompt_tokens)
        try:
            async for text in gen.deltas():
                m.text += text
                chunk = writer.text(text)
                if chunk:
                    yield chunk
            yield writer.text("", gen.finish_reason or "stop")
            yield events.end(gen.completion_tokens, _stop_sequence(gen))
        except Exception as exc:  # noqa: BLE001 - the engine failed mid-stream
            log.exception("generation failed")
            yield events.error(m.failed(APIError(500, f"Generation failed: {exc}",
                                                 type="server_error")))
        finished = True
    finally:
        if not finished:
            gen.cancel()
            m.status = 499
        st.finish(m)
