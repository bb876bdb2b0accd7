"""The Anthropic Messages wire format: requests translated to our chat request, replies
and stream events built back, errors in Anthropic's shape.

A Messages request becomes the same :class:`ChatRequest` that ``/v1/chat/completions``
takes (system prompt first, ``tool_use`` blocks as assistant tool calls, ``tool_result``
blocks as ``role: tool`` messages, ``tools``/``tool_choice`` as OpenAI's), so templates,
grammars, tool parsing, the queue and the request log are shared.
"""

from __future__ import annotations

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from llmops_desktop.serving.protocol import APIError, ChatRequest, parse_body
from llmops_desktop.serving.streaming import StopMatcher

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}
STOP_REASONS = {"length": "max_tokens", "stop": "end_turn", "tool_calls": "tool_use"}


def error_body(exc: APIError) -> dict[str, Any]:
    kind = ERROR_TYPES.get(exc.status, "api_error" if exc.status >= 500
                           else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    max_tokens: StrictInt = Field(ge=1)
    messages: list[_Message] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    stop_sequences: list[str] | None = None
    temperature: float = Field(1.0, ge=0.0, le=1.0, strict=True)
    top_p: float | None = Field(None, gt=0.0, le=1.0, strict=True)
    top_k: StrictInt | None = None
    stream: StrictBool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None


def parse_messages(raw: bytes) -> tuple[MessagesRequest, ChatRequest]:
    """The Messages request and the chat request it means (or an APIError naming what is
    wrong, with Anthropic's field names)."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise APIError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "The request body must be a JSON object.", code="invalid_json")
    try:
        req = MessagesRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"] if not str(p).startswith(("list[", "str")))
        message = (f"{loc}: Field required" if first["type"] == "missing"
                   else f"{loc}: {first['msg']}")
        raise APIError(400, message, param=loc or None, code="invalid_value") from None
    chat: dict[str, Any] = {"model": req.model, "max_tokens": req.max_tokens,
                            "temperature": req.temperature, "messages": _messages(req)}
    if req.top_p is not None:
        chat["top_p"] = req.top_p
    if req.stop_sequences:
        chat["stop"] = req.stop_sequences
    if req.tools:
        chat["tools"] = [_tool(t, i) for i, t in enumerate(req.tools)]
    if req.tool_choice is not None:
        chat["tool_choice"], parallel = _tool_choice(req.tool_choice)
        if not parallel:
            chat["parallel_tool_calls"] = False
    try:
        return req, parse_body(json.dumps(chat).encode("utf-8"), ChatRequest)
    except APIError as exc:
        raise APIError(400, exc.message.replace("'max_completion_tokens'", "'max_tokens'"),
                       param=exc.param, code=exc.code) from None


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise APIError(400, f"{where}: content must be a string or a list of blocks.",
                       param=where, code="invalid_value")
    texts = []
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "text" \
                or not isinstance(block.get("text"), str):
            raise APIError(400, f"{where}: only text blocks are supported here.", param=where,
                           code="invalid_value")
        texts.append(block["text"])
    return "".join(texts)


def _messages(req: MessagesRequest) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if req.system:
        out.append({"role": "system", "content": _text_of(req.system, "system")})
    for i, msg in enumerate(req.messages):
        where = f"messages.{i}.content"
        blocks = [{"type": "text", "text": msg.content}] if isinstance(msg.content, str) \
            else msg.content
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif kind == "tool_use" and msg.role == "assistant":
                calls.append({"id": str(block.get("id", f"toolu_{i}_{j}")), "type": "function",
                              "function": {"name": str(block.get("name", "")),
                                           "arguments": json.dumps(block.get("input", {}))}})
            elif kind == "tool_result" and msg.role == "user":
                result = block.get("content", "")
                text = _text_of(result, f"{where}.{j}.content")
                if block.get("is_error"):
                    text = f"Error: {text}"
                out.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")),
                            "content": text})
            else:
                raise APIError(400, f"{where}.{j}: a {kind!r} block is not supported in a "
                                    f"{msg.role} message (text, tool_use and tool_result are).",
                               param=f"{where}.{j}", code="invalid_value")
        if msg.role == "assistant":
            if texts or calls:
                entry: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
                if calls:
                    entry["tool_calls"] = calls
                out.append(entry)
        elif texts or not blocks:
            out.append({"role": "user", "content": "".join(texts)})
    return out


def _tool(tool: Any, i: int) -> dict[str, Any]:
    if not isinstance(tool, dict) or "input_schema" not in tool or tool.get("type") not in (
            None, "custom"):
        raise APIError(400, f"tools.{i}: only client tools with a name and an input_schema "
                            "are supported.", param=f"tools.{i}", code="invalid_value")
    fn = {"name": tool.get("name"), "parameters": tool["input_schema"]}
    if isinstance(tool.get("description"), str):
        fn["description"] = tool["description"]
    return {"type": "function", "function": fn}


def _tool_choice(choice: dict[str, Any]) -> tuple[Any, bool]:
    parallel = not choice.get("disable_parallel_tool_use", False)
    kind = choice.get("type")
    if kind in ("auto", "none"):
        return kind, parallel
    if kind == "any":
        return "required", parallel
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}, parallel
    raise APIError(400, "tool_choice: type must be auto, any, tool (with a name) or none.",
                   param="tool_choice", code="invalid_value")


class RecordingStopMatcher(StopMatcher):
    """A StopMatcher that remembers which stop sequence matched (Anthropic reports it)."""

    which: str | None = None

    def feed(self, text: str) -> str:
        buf = self._held + text
        out = super().feed(text)
        if self.matched and self.which is None:
            hits = [(buf.find(s), s) for s in self.stops if buf.find(s) != -1]
            self.which = min(hits)[1] if hits else None
        return out


def tool_use_blocks(calls: list[Any]) -> list[dict[str, Any]]:
    return [{"type": "tool_use", "id": "toolu_" + c.id.removeprefix("call_"), "name": c.name,
             "input": json.loads(c.arguments)} for c in calls]


def message_body(rid: str, model: str, content: str | None, calls: list[Any],
                 stop_reason: str, stop_sequence: str | None, input_tokens: int,
                 output_tokens: int) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    blocks += tool_use_blocks(calls)
    return {"id": rid, "type": "message", "role": "assistant", "model": model,
            "content": blocks, "stop_reason": stop_reason, "stop_sequence": stop_sequence,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}}


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def sse(event: str, data: dict[str, Any]) -> bytes:
    return (f"event: {event}\ndata: ".encode() + json.dumps(data, ensure_ascii=False).encode()
            + b"\n\n")


class MessageEvents:
    """Anthropic's stream events for one message. :meth:`text` and :meth:`tool_calls` are
    what :class:`~.tool_parsing.ToolCallStream` calls, so tool calls stream here too."""

    def __init__(self, rid: str, model: str) -> None:
        self.rid, self.model = rid, model
        self.index = 0
        self.open = False
        self.stop_reason = "end_turn"

    def start(self, input_tokens: int) -> bytes:
        return sse("message_start", {"type": "message_start", "message": {
            "id": self.rid, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 0}}})

    def _close(self) -> bytes:
        if not self.open:
            return b""
        self.open = False
        self.index += 1
        return sse("content_block_stop", {"type": "content_block_stop",
                                          "index": self.index - 1})

    def text(self, text: str, finish: str | None = None, **_: Any) -> bytes:
        out = b""
        if text:
            if not self.open:
                self.open = True
                out += sse("content_block_start", {"type": "content_block_start",
                                                   "index": self.index,
                                                   "content_block": {"type": "text",
                                                                     "text": ""}})
            out += sse("content_block_delta", {"type": "content_block_delta",
                                               "index": self.index,
                                               "delta": {"type": "text_delta", "text": text}})
        if finish is not None:
            out += self._close()
            self.stop_reason = STOP_REASONS.get(finish, "end_turn")
        return out

    def tool_calls(self, calls: list[Any]) -> bytes:
        out = self._close()
        for block in tool_use_blocks(calls):
            arguments = json.dumps(block["input"], ensure_ascii=False)
            out += sse("content_block_start", {"type": "content_block_start",
                                               "index": self.index,
                                               "content_block": {**block, "input": {}}})
            for i in range(0, len(arguments), 16):
                out += sse("content_block_delta", {
                    "type": "content_block_delta", "index": self.index,
                    "delta": {"type": "input_json_delta", "partial_json": arguments[i:i + 16]}})
            out += sse("content_block_stop", {"type": "content_block_stop",
                                              "index": self.index})
            self.index += 1
        self.stop_reason = "tool_use"
        return out

    def end(self, output_tokens: int, stop_sequence: str | None) -> bytes:
        reason = "stop_sequence" if stop_sequence and self.stop_reason == "end_turn" \
            else self.stop_reason
        return (sse("message_delta", {"type": "message_delta",
                                      "delta": {"stop_reason": reason,
                                                "stop_sequence": stop_sequence
                                                if reason == "stop_sequence" else None},
                                      "usage": {"output_tokens": output_tokens}})
                + sse("message_stop", {"type": "message_stop"}))

    @staticmethod
    def error(exc: APIError) -> bytes:
        return sse("error", error_body(exc))
