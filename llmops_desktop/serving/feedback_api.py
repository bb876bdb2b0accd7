"""``POST /v1/feedback`` on a deployment: the team's own apps send their users' ratings back.

Body: ``{"response_id": "chatcmpl-…", "rating": 1 | -1 | 0, "comment": "…", "correction":
"…"}`` with the deployment's auth (the API key guard covers this path like the others).
The rating is linked to the request log row of that response (``request_log.response_id``),
the prompt version it was served with and the artifact. The server remembers the text of
its last replies (:class:`ReplyBook`), so the stored rating carries the conversation and the
reply and can become training data; a rating of a reply it no longer remembers (the server
restarted) is kept with its links but no text, unless the body brings ``messages`` and
``reply`` itself.
"""

from __future__ import annotations

import inspect
import json
import threading
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from llmops_desktop.httpserve import BodyTooLarge, read_body
from llmops_desktop.serving.protocol import APIError, ChatRequest

FEEDBACK_PATH = "/v1/feedback"
MAX_FEEDBACK_BODY = 1 << 20
REMEMBERED_REPLIES = 4096


class ReplyBook:
    """The text of the last replies a deployment sent, by response id (bounded, LRU)."""

    def __init__(self, size: int = REMEMBERED_REPLIES) -> None:
        self.size = size
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, response_id: str, request: Any, reply: str,
                 prompt_ref: str | None = None) -> None:
        """Keep what a rating of ``response_id`` needs: the conversation, reply, settings."""
        system, messages, prompt = "", [], ""
        if isinstance(request, ChatRequest):
            turns = [m.as_template_input(i) for i, m in enumerate(request.messages)]
            system = "\n".join(t["content"] for t in turns if t["role"] in ("system", "developer"))
            messages = [{"role": t["role"], "content": t["content"]} for t in turns
                        if t["role"] not in ("system", "developer")]
            prompt = next((t["content"] for t in reversed(messages) if t["role"] == "user"), "")
        elif isinstance(getattr(request, "prompt", None), str):
            prompt = request.prompt
            messages = [{"role": "user", "content": prompt}]
        params = {k: getattr(request, k, None) for k in ("temperature", "top_p", "max_tokens",
                                                          "seed")}
        entry = {"system_prompt": system, "messages": messages, "prompt": prompt,
                 "reply": reply, "params": {k: v for k, v in params.items() if v is not None},
                 "prompt_ref": prompt_ref or ""}
        with self._lock:
            self._items[response_id] = entry
            self._items.move_to_end(response_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(response_id)


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(min_length=1, max_length=200)
    rating: StrictInt
    comment: str = Field("", max_length=20_000)
    correction: str = Field("", max_length=200_000)
    messages: list[dict[str, str]] | None = None
    reply: str | None = None


def parse_feedback(raw: bytes) -> FeedbackBody:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise APIError(400, "The request body is not valid JSON: send {\"response_id\": …, "
                            "\"rating\": 1 | -1 | 0}.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        body = FeedbackBody.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        message = (f"'{loc}' is required." if first["type"] == "missing"
                   else f"Invalid value for '{loc}': {first['msg']}.")
        raise APIError(400, message, param=loc or None, code="invalid_value") from None
    if body.rating not in (-1, 0, 1):
        raise APIError(400, "'rating' must be 1 (good), -1 (bad) or 0 (take a rating back).",
                       param="rating", code="invalid_value")
    return body


def store_feedback(state: Any, body: FeedbackBody) -> dict[str, Any]:
    """Link and store one rating (on a worker thread: it waits for the catalog)."""
    from llmops_desktop.catalog import Catalog
    from llmops_desktop.paths import Home
    from llmops_desktop.serving.feedback import Feedback, find_request, rate

    recorder = getattr(state, "recorder", None)
    if recorder is not None and hasattr(recorder, "flush"):
        recorder.flush()  # the request row of a reply sent a moment ago
    home = getattr(recorder, "home", None) or Home.resolve(None)
    remembered = state.replies.get(body.response_id) if hasattr(state, "replies") else None
    dep = state.deployment
    with Catalog.open(home) as catalog:
        row = find_request(catalog, body.response_id)
        if row is None and remembered is None:
            raise APIError(404, f"No reply {body.response_id!r} was sent by this deployment: "
                                "send the 'id' of a completion it returned.",
                           param="response_id", code="response_not_found")
        entry = remembered or {}
        messages = entry.get("messages") or body.messages or []
        reply = entry.get("reply") if remembered else (body.reply or "")
        feedback = Feedback(
            reply_id=body.response_id, rating=body.rating, reply=reply or "",
            prompt=entry.get("prompt") or next(
                (m.get("content", "") for m in reversed(messages) if m.get("role") == "user"),
                ""),
            messages=messages, system_prompt=entry.get("system_prompt", ""),
            deployment_id=(row or {}).get("deployment_id") or dep.id or None,
            artifact_id=(row or {}).get("artifact_id") or dep.artifact_id,
            artifact_ref=dep.artifact_ref, params=entry.get("params", {}),
            comment=body.comment, correction=body.correction,
            request_id=(row or {}).get("id"),
            prompt_ref=(row or {}).get("prompt_ref") or entry.get("prompt_ref") or "",
            source="api")
        rate(catalog, feedback)
    return {"object": "feedback", "response_id": body.response_id, "rating": body.rating,
            "request_id": feedback.request_id, "prompt": feedback.prompt_ref or None,
            "stored": body.rating != 0 or bool(body.correction)}


def feedback_router(state: Any) -> APIRouter:
    """The route, bound to a deployment's :class:`~llmops_desktop.serving.app.ServingState`."""
    router = APIRouter()

    @router.post(FEEDBACK_PATH)
    async def post_feedback(request: Request) -> Response:
        try:
            raw = await read_body(request, MAX_FEEDBACK_BODY)
        except BodyTooLarge as exc:
            return APIError(413, str(exc), code="request_too_large").response()
        try:
            body = parse_feedback(raw)
            result = await run_in_threadpool(store_feedback, state, body)
        except APIError as exc:
            return exc.response()
        return JSONResponse(result)

    return router


# ---- the gateway: one address for every deployment's ratings -------------------------------

async def gateway_feedback(gateway: Any, request: Request) -> Response:
    """``POST /v1/feedback`` at the gateway (with the caller's gateway key): passed to the
    loaded deployment that sent the reply (each one knows its own replies); a reply of a
    deployment no longer loaded is rated from its request log row, without its text."""
    from llmops_desktop.gateway.keys import KeyRefused

    try:
        key = gateway.authenticate(request)
        if inspect.isawaitable(key):  # the key check runs off the event loop
            key = await key
    except KeyRefused as exc:
        return APIError(401, str(exc), code="invalid_api_key",
                        headers={"WWW-Authenticate": "Bearer"}).response()
    try:
        raw = await read_body(request, MAX_FEEDBACK_BODY)
        body = parse_feedback(raw)
    except BodyTooLarge as exc:
        return APIError(413, str(exc), code="request_too_large").response()
    except APIError as exc:
        return exc.response()
    allowed = [s for s in gateway.pool.slots.values()
               if s.state == "loaded" and s.client is not None
               and (key is None or key.allows(*s.names))]
    for slot in allowed:
        try:
            upstream = await slot.client.post(FEEDBACK_PATH, content=raw,
                                              headers={"content-type": "application/json"})
        except Exception:  # noqa: BLE001 - a deployment going away: ask the next one
            continue
        if upstream.status_code != 404:
            return Response(upstream.content, status_code=upstream.status_code,
                            media_type="application/json")
    try:
        result = await run_in_threadpool(_store_from_log, gateway.catalog.home, body, key)
    except APIError as exc:
        return exc.response()
    return JSONResponse(result)


def _store_from_log(home: Any, body: FeedbackBody, key: Any) -> dict[str, Any]:
    from llmops_desktop.catalog import Catalog
    from llmops_desktop.serving.feedback import Feedback, find_request, rate

    with Catalog.open(home) as catalog:
        row = find_request(catalog, body.response_id)
        if row is None:
            raise APIError(404, f"No reply {body.response_id!r} was sent through this gateway's "
                                "deployments: send the 'id' of a completion it returned.",
                           param="response_id", code="response_not_found")
        artifact = catalog.artifact(row["artifact_id"]) if row["artifact_id"] else None
        names = (artifact.ref, artifact.model_name, str(artifact.id)) if artifact else ()
        if key is not None and not key.allows(*names):
            raise APIError(403, f"The key {key.name!r} may not rate replies of "
                                f"{names[0] if names else 'this model'}.",
                           code="model_not_allowed")
        messages = body.messages or []
        feedback = Feedback(
            reply_id=body.response_id, rating=body.rating, reply=body.reply or "",
            prompt=next((m.get("content", "") for m in reversed(messages)
                         if m.get("role") == "user"), ""),
            messages=messages, deployment_id=row["deployment_id"],
            artifact_id=row["artifact_id"], artifact_ref=names[0] if names else "",
            comment=body.comment, correction=body.correction, request_id=row["id"],
            prompt_ref=row.get("prompt_ref") or "", source="api")
        rate(catalog, feedback)
    return {"object": "feedback", "response_id": body.response_id, "rating": body.rating,
            "request_id": row["id"], "prompt": feedback.prompt_ref or None,
            "stored": body.rating != 0 or bool(body.correction)}
