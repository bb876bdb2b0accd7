"""``POST /v1/embeddings``, as OpenAI answers it.

``input`` is a string, a list of strings, a list of token ids or a list of such lists;
every input becomes one L2-normalised vector (``encoding_format`` ``float``, or
``base64``: little-endian float32, what the ``openai`` client asks for by default). The
engine embeds (the llama.cpp engine between decode steps, several inputs per decode);
an engine or model that cannot embed answers a 400 that says so. Embedding requests do
not take a place in the generation queue: they are short and never hold a slot.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from llmops_desktop.errors import InvalidInputError
from llmops_desktop.httpserve import MAX_BODY, BodyTooLarge, read_body
from llmops_desktop.serving.engines.base import EmbeddingsUnsupportedError
from llmops_desktop.serving.protocol import APIError

MAX_INPUTS = 2048  # OpenAI's limit per request
ENDPOINT = "/v1/embeddings"


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    input: str | list[str] | list[StrictInt] | list[list[StrictInt]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = None
    user: str | None = None


def embeddings_router(state: Any) -> APIRouter:
    """The route, over a server's shared state (engine, deployment, metrics)."""
    router = APIRouter()

    @router.post(ENDPOINT)
    async def embeddings(request: Request) -> Response:
        t0 = time.perf_counter()
        n_tokens = 0
        try:
            req = _parse(await _body(request))
            state.check_model(req.model)
            if req.dimensions is not None:
                raise APIError(400, "'dimensions' is not supported: vectors have the model's "
                                    "own size; leave it out.", param="dimensions",
                               code="unsupported_parameter")
            inputs = await run_in_threadpool(_token_lists, state.engine, req.input)
            n_tokens = sum(len(ids) for ids in inputs)
            try:
                vectors = await run_in_threadpool(state.engine.embed, inputs)
            except EmbeddingsUnsupportedError as exc:
                raise APIError(400, f"{state.deployment.name} cannot embed: {exc}",
                               param="model", code="embeddings_unsupported") from None
            except InvalidInputError as exc:
                raise APIError(400, str(exc), param="input", code="invalid_value") from None
        except APIError as exc:
            state.metrics.observe(endpoint=ENDPOINT, status=exc.status, ttft_s=None,
                                  latency_s=time.perf_counter() - t0, prompt_tokens=0,
                                  completion_tokens=0)
            return exc.response()
        data = [{"object": "embedding", "index": i, "embedding": _encode(v, req.encoding_format)}
                for i, v in enumerate(vectors)]
        state.metrics.observe(endpoint=ENDPOINT, status=200, ttft_s=None,
                              latency_s=time.perf_counter() - t0, prompt_tokens=n_tokens,
                              completion_tokens=0)
        return JSONResponse({"object": "list", "data": data, "model": state.deployment.name,
                             "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens}})

    return router


async def _body(request: Request) -> bytes:
    try:
        return await read_body(request, MAX_BODY)
    except BodyTooLarge as exc:
        raise APIError(413, str(exc), code="request_too_large") from None


def _parse(raw: bytes) -> EmbeddingRequest:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise APIError(400, "The request body is not valid JSON. Send a JSON object with "
                            "Content-Type: application/json.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        return EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = str(first["loc"][0]) if first["loc"] else ""
        message = (f"'{loc}' is required." if first["type"] == "missing"
                   else f"Invalid value for '{loc}': {first['msg']}.")
        raise APIError(400, message, param=loc or None, code="invalid_value") from None


def _token_lists(engine: Any, given: Any) -> list[list[int]]:
    """Every input as token ids (strings through the engine's tokenizer)."""
    if isinstance(given, str) or (given and all(isinstance(t, int) for t in given)):
        given = [given]
    if not given:
        raise APIError(400, "'input' is empty.", param="input", code="invalid_value")
    if len(given) > MAX_INPUTS:
        raise APIError(400, f"'input' has {len(given)} items; send at most {MAX_INPUTS}.",
                       param="input", code="invalid_value")
    out: list[list[int]] = []
    for i, item in enumerate(given):
        if isinstance(item, str):
            if not item:
                raise APIError(400, f"input[{i}] is an empty string.", param="input",
                               code="invalid_value")
            try:
                item = engine.tokenize(item).ids
            except UnicodeError:
                raise APIError(400, f"input[{i}] is not valid Unicode text.", param="input",
                               code="invalid_value") from None
        bad = [t for t in item if not 0 <= t < engine.n_vocab]
        if bad or not item:
            raise APIError(400, f"input[{i}] " + (f"has token id {bad[0]}, outside this model's "
                                                  f"vocabulary (0..{engine.n_vocab - 1})."
                                                  if bad else "is empty."),
                           param="input", code="invalid_value")
        out.append(list(item))
    return out


def _encode(vector: list[float], encoding: str) -> Any:
    if encoding == "float":
        return vector
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
