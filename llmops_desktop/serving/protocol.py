"""The OpenAI wire format: request models, error bodies, response and stream chunks.

Requests are validated with pydantic; anything wrong becomes an :class:`APIError` whose
body is OpenAI's ``{"error": {"message", "type", "param", "code"}}``, so clients (the
``openai`` package included) show the message. Unknown fields are accepted and ignored,
as OpenAI-compatible servers do; OpenAI fields we cannot honour (``n`` > 1, ``logit_bias``,
``logprobs``, tools, non-text content, … see :data:`UNSUPPORTED`) are refused with a 400
that names them rather than silently ignored. Numbers are strict: ``true`` or ``"5"`` is
not a ``max_tokens``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError
from starlette.responses import JSONResponse

from llmops_desktop.serving.logprobs import MAX_TOP_LOGPROBS

MAX_STOP = 16
# OpenAI request fields this server cannot honour yet, with the values that ask for
# nothing (what a client sends when it means "off"): those pass, anything else is a 400
# that names the field.
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "logit_bias": (None, {}),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "frequency_penalty": (None, 0),
    "presence_penalty": (None, 0),
    "functions": (None, []),  # tools, tool_choice, response_format: serving/tools.py
    "function_call": (None, "none"),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
}


class APIError(Exception):
    """An error answered as OpenAI does; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: StrictInt | None = None
    temperature: float = Field(1.0, ge=0.0, le=2.0, strict=True)
    top_p: float = Field(1.0, gt=0.0, le=1.0, strict=True)
    seed: StrictInt | None = None
    stop: str | list[str] | None = None
    stream: StrictBool = False
    stream_options: dict[str, Any] | None = None
    n: StrictInt = 1
    user: str | None = None

    def stops(self) -> list[str]:
        items = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        if len(items) > MAX_STOP:
            raise APIError(400, f"'stop' takes at most {MAX_STOP} strings.", param="stop")
        return [s for s in items if s]

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and (self.stream_options or {}).get("include_usage"))


class CompletionRequest(_Request):
    prompt: str | list[str] | list[StrictInt]
    echo: StrictBool = False
    logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def logprob_count(self) -> int | None:
        """None: no logprobs; N: the chosen token's and the N most likely."""
        return self.logprobs


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def as_template_input(self, index: int) -> dict[str, Any]:
        content = self.content
        if isinstance(content, list):
            texts = []
            for part in content:
                if part.type != "text" or part.text is None:
                    raise APIError(400, f"messages[{index}]: only text content is supported "
                                        f"(got a {part.type!r} part).",
                                   param=f"messages.{index}.content")
                texts.append(part.text)
            content = "".join(texts)
        out: dict[str, Any] = {"role": self.role, "content": content or ""}
        if self.name:
            out["name"] = self.name
        return out


class ChatRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: StrictInt | None = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)

    def logprob_count(self) -> int | None:
        """None: no logprobs; N: the chosen token's and the N most likely."""
        if self.top_logprobs and not self.logprobs:
            raise APIError(400, "'top_logprobs' needs 'logprobs': true.", param="top_logprobs",
                           code="invalid_value")
        return (self.top_logprobs or 0) if self.logprobs else None


def parse_body(raw: bytes, model: type[_Request]) -> Any:
    """The request body as ``model``, or an APIError saying what is wrong and where."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise APIError(400, "The request body is nested too deeply to read.",
                       code="invalid_json") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise APIError(400, f"The request body is not valid JSON ({exc}). Send a JSON object "
                            "with Content-Type: application/json.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        request = model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _trim_union_loc(first["loc"])
        message = first["msg"]
        if first["type"] == "missing":
            message = f"'{loc}' is required."
        else:
            message = f"Invalid value for '{loc}': {message}."
        raise APIError(400, message, param=loc or None,
                       code="missing_required_parameter" if first["type"] == "missing"
                       else "invalid_value") from None
    if request.n != 1:
        raise APIError(400, "'n' must be 1: send one request per completion.",
                       param="n", code="invalid_value")
    for name, harmless in UNSUPPORTED.items():
        if name in data and not any(_same(data[name], ok) for ok in harmless):
            raise APIError(400, f"'{name}' is not supported by this server; leave it out (or "
                                f"send {_shown(harmless)}).", param=name,
                           code="unsupported_parameter")
    return request


def _same(value: Any, ok: Any) -> bool:
    """JSON equality that does not take ``true`` for 1 or ``1.0`` for ``true``."""
    return type(value) is type(ok) and value == ok or (
        ok is not None and not isinstance(ok, bool) and isinstance(ok, int)
        and type(value) is float and value == ok)


def _shown(values: tuple[Any, ...]) -> str:
    return " or ".join(json.dumps(v) for v in values)


def _trim_union_loc(loc: tuple[Any, ...]) -> str:
    """``('prompt', 'str')`` -> ``prompt``: drop the union branch names pydantic adds."""
    parts = [str(p) for p in loc]
    branch_names = {"str", "int", "float", "bool", "list[str]", "list[int]", "list[ContentPart]",
                    "ContentPart", "dict[str,any]", "none"}
    return ".".join(p for p in parts if p.lower().replace(" ", "") not in branch_names)


# ---- responses -----------------------------------------------------------------------------

def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(rid: str, model: str, text: str, finish: str | None, prompt_tokens: int,
                    completion_tokens: int, logprobs: dict[str, Any] | None = None
                    ) -> dict[str, Any]:
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"text": text, "index": 0, "logprobs": logprobs,
                         "finish_reason": finish}],
            "usage": usage(prompt_tokens, completion_tokens)}


def chat_body(rid: str, model: str, text: str, finish: str | None, prompt_tokens: int,
              completion_tokens: int, logprobs: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": logprobs, "finish_reason": finish}],
            "usage": usage(prompt_tokens, completion_tokens)}


class ChunkWriter:
    """Server-sent events for one streamed response, in the shape of OpenAI's chunks."""

    def __init__(self, kind: Literal["completion", "chat"], rid: str, model: str) -> None:
        self.kind, self.rid, self.model = kind, rid, model
        self.created = int(time.time())
        self._object = "chat.completion.chunk" if kind == "chat" else "text_completion"

    def _event(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        body = {"id": self.rid, "object": self._object, "created": self.created,
                "model": self.model, "choices": choices, **extra}
        return b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n"

    def start(self) -> bytes | None:
        if self.kind != "chat":
            return None
        return self._event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                             "logprobs": None, "finish_reason": None}])

    def text(self, text: str, finish: str | None = None,
             logprobs: dict[str, Any] | None = None) -> bytes:
        if self.kind == "chat":
            delta = {"content": text} if text else {}
            return self._event([{"index": 0, "delta": delta, "logprobs": logprobs,
                                 "finish_reason": finish}])
        return self._event([{"text": text, "index": 0, "logprobs": logprobs,
                             "finish_reason": finish}])

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        return self._event([], usage=usage(prompt_tokens, completion_tokens))

    @staticmethod
    def error(error: APIError) -> bytes:
        return b"data: " + json.dumps(error.body()).encode("utf-8") + b"\n\n"

    DONE = b"data: [DONE]\n\n"
