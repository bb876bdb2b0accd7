"""Reading tool calls out of a model's text, and streaming them as OpenAI deltas.

Template families (as llama.cpp's ``common/chat.cpp`` tells them apart, by what the
template writes):

- ``hermes`` (Hermes 2 Pro, Qwen 2.5/3): ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``
- ``llama3`` (Llama 3.1+): ``{"name": ..., "parameters": ...}``, maybe after ``<|python_tag|>``
- ``mistral``: ``[TOOL_CALLS][{"name": ..., "arguments": ...}]`` or ``[TOOL_CALLS]name[ARGS]{...}``
- ``generic`` and the fallback for all: bare JSON, a call object, ``{"tool_call": ...}``,
  ``{"tool_calls": [...]}`` or a list of calls (in a ```json fence or not).

Only calls of offered functions count; anything else stays text.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

_DECODER = json.JSONDecoder()
MARKERS = ("<tool_call>", "[TOOL_CALLS]", "<|python_tag|>")
_ARG_CHUNK = 16  # characters of arguments per streamed delta


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    id: str = ""

    def openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def family_of(template: str | None) -> str:
    t = template or ""
    if "<tool_call>" in t:
        return "hermes"
    if "[TOOL_CALLS]" in t:
        return "mistral"
    if "<|python_tag|>" in t or ("<|start_header_id|>" in t and "tools" in t):
        return "llama3"
    return "generic"


def _call(obj: Any, names: set[str]) -> ToolCall | None:
    if not isinstance(obj, dict):
        return None
    if "function" in obj and isinstance(obj["function"], dict):  # OpenAI's own shape
        obj = obj["function"]
    name = obj.get("name")
    args = obj.get("arguments", obj.get("parameters", {}))
    if not isinstance(name, str) or name not in names:
        return None
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return ToolCall(name, json.dumps(args, ensure_ascii=False),
                    f"call_{uuid.uuid4().hex[:24]}")


def _calls_in(value: Any, names: set[str]) -> list[ToolCall]:
    if isinstance(value, dict):
        for key in ("tool_calls", "tool_call"):
            if key in value:
                return _calls_in(value[key], names)
        call = _call(value, names)
        return [call] if call else []
    if isinstance(value, list) and value:
        calls = [_call(v, names) for v in value]
        return [c for c in calls if c] if all(calls) else []
    return []


def _json_at(text: str, pos: int) -> tuple[Any, int] | None:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    try:
        return _DECODER.raw_decode(text, pos)
    except ValueError:
        return None


def _bare_json(text: str, names: set[str]) -> list[ToolCall]:
    body = text.strip()
    fence = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    if fence:
        body = fence.group(1)
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>"):]
    calls: list[ToolCall] = []
    pos = 0
    while pos < len(body):
        found = _json_at(body, pos)
        if found is None:
            return []
        value, pos = found
        more = _calls_in(value, names)
        if not more:
            return []
        calls += more
        while pos < len(body) and body[pos] in " \t\r\n;,":
            pos += 1
    return calls


def parse_tool_calls(text: str, family: str, names: set[str]) -> tuple[str | None, list[ToolCall]]:
    """``(content, calls)``: the text around the calls (None if nothing) and the calls."""
    if "<tool_call>" in text:
        calls: list[ToolCall] = []
        outside = []
        pos = 0
        for m in re.finditer(r"<tool_call>(.*?)(?:</tool_call>|$)", text, re.S):
            outside.append(text[pos:m.start()])
            pos = m.end()
            value = _json_at(m.group(1), 0)
            found = _calls_in(value[0], names) if value else []
            if not found:
                return text, []
            calls += found
        outside.append(text[pos:])
        content = "".join(outside).strip()
        return content or None, calls
    if "[TOOL_CALLS]" in text:
        head, _, rest = text.partition("[TOOL_CALLS]")
        calls = []
        for part in rest.split("[TOOL_CALLS]"):
            if "[ARGS]" in part:  # [TOOL_CALLS]name[ARGS]{...}
                name, _, args = part.partition("[ARGS]")
                found = _json_at(args, 0)
                call = _call({"name": name.strip(), "arguments": found[0]}, names) \
                    if found else None
                more = [call] if call else []
            else:
                more = _bare_json(part, names)
            if not more:
                return text, []
            calls += more
        return head.strip() or None, calls
    calls = _bare_json(text, names)
    return (None, calls) if calls else (text, [])


class ToolCallStream:
    """Wraps the chat chunk writer: text that may be a tool call is held back, and calls
    go out as ``tool_calls`` deltas (id, name, then the arguments in pieces) that the
    openai client reassembles; the last chunk says ``finish_reason: "tool_calls"``."""

    def __init__(self, writer: Any, plan: Any) -> None:
        self.writer, self.plan = writer, plan
        self.held = ""
        self.mode = "tool" if plan.forced else "undecided"  # then "content" or "tool"

    def __getattr__(self, name: str) -> Any:  # start, usage, error, DONE: the writer's
        return getattr(self.writer, name)

    def text(self, text: str, finish: str | None = None, **kw: Any) -> bytes:
        out = b""
        if text:
            out += self._feed(text, **kw)
        if finish is None:
            return out
        return out + self._flush(finish, **kw)

    def _feed(self, text: str, **kw: Any) -> bytes:
        if self.mode == "tool":
            self.held += text
            return b""
        self.held += text
        if self.mode == "undecided":
            head = self.held.lstrip()
            starts = MARKERS + ("{", "[", "```")
            if not head or any(m.startswith(head) for m in starts):
                return b""
            if head.startswith(starts):
                self.mode = "tool"
                return b""
            self.mode = "content"
        # content: pass text on, holding back what may begin a marker
        cut = min((i for i in (self.held.find(m) for m in MARKERS) if i != -1), default=-1)
        if cut != -1:
            before, self.held = self.held[:cut], self.held[cut:]
            self.mode = "tool"
            return self.writer.text(before, **kw) if before else b""
        keep = 0
        for k in range(min(len(self.held), max(map(len, MARKERS)) - 1), 0, -1):
            if any(m.startswith(self.held[-k:]) for m in MARKERS):
                keep = k
                break
        send, self.held = self.held[:len(self.held) - keep], self.held[len(self.held) - keep:]
        return self.writer.text(send, **kw) if send else b""

    def _flush(self, finish: str, **kw: Any) -> bytes:
        held, self.held = self.held, ""
        content, calls = self.plan.read(held) if self.mode == "tool" else (held, [])
        out = b""
        if content:
            out += self.writer.text(content, **kw)
        if not calls:
            return out + self.writer.text("", finish, **kw)
        if hasattr(self.writer, "tool_calls"):  # a writer with its own events (Anthropic's)
            return out + self.writer.tool_calls(calls)
        for index, call in enumerate(calls):
            out += self._event({"tool_calls": [{"index": index, "id": call.id,
                                                "type": "function",
                                                "function": {"name": call.name,
                                                             "arguments": ""}}]})
            args = call.arguments
            for i in range(0, len(args), _ARG_CHUNK):
                out += self._event({"tool_calls": [{"index": index, "function": {
                    "arguments": args[i:i + _ARG_CHUNK]}}]})
        return out + self._event({}, "tool_calls")

    def _event(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        w = self.writer
        body = {"id": w.rid, "object": "chat.completion.chunk",
                "created": getattr(w, "created", int(time.time())), "model": w.model,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}
        return b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n"
