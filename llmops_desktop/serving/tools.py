"""Tool calls and structured output for one chat or completion request: the output plan.

:func:`plan_output` reads ``tools``, ``tool_choice``, ``parallel_tool_calls`` and
``response_format`` (a 400 naming the field for anything wrong) and decides:

- what the template gets: templates that know tools (their Jinja uses ``tools``) get the
  tools and the conversation's tool calls and results as Hugging Face passes them; other
  templates get the tools described in the system prompt, calls as JSON text;
- the grammar: ``required`` and a named function constrain the output to
  ``{"name": ..., "arguments": <the function's parameters schema>}``, so the arguments
  always validate; ``response_format`` constrains it to its schema;
- how the output is read back (:mod:`.tool_parsing`): Hermes/Qwen ``<tool_call>``,
  Llama 3.x JSON, Mistral ``[TOOL_CALLS]``, or bare JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from llmops_desktop.serving.protocol import APIError
from llmops_desktop.serving.structured import check_schema, response_format_grammar, schema_grammar
from llmops_desktop.serving.tool_parsing import ToolCall, family_of, parse_tool_calls

MAX_TOOLS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
NO_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {},
                                 "additionalProperties": False}
GENERIC_INSTRUCTIONS = (
    'To call tools, answer only {{"tool_calls": [{{"name": NAME, "arguments": {{...}}}}]}}.'
    "{one} Tools: {tools}")


def _bad(param: str, message: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


@dataclass
class OutputPlan:
    """What one request asks of the output beyond free text."""

    grammar: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)  # OpenAI tool objects
    choice: str = "auto"  # auto, none, required, or a function name
    parallel: bool = True
    family: str = "generic"
    native: bool = False  # the template renders ``tools`` itself

    @property
    def calls_expected(self) -> bool:
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        return self.calls_expected and self.choice != "auto"

    @property
    def names(self) -> set[str]:
        return {t["function"]["name"] for t in self.tools}

    @property
    def template_tools(self) -> list[dict[str, Any]] | None:
        """The tools for the template's ``tools`` variable (None: not passed)."""
        return self.tools if self.native and self.calls_expected else None

    def messages(self, checked: list[dict[str, Any]], raw: list[Any]) -> list[dict[str, Any]]:
        """The template's messages with tool calls and results carried over."""
        out: list[dict[str, Any]] = []
        names: dict[str, str] = {}
        for i, (msg, original) in enumerate(zip(checked, raw)):
            extra = getattr(original, "model_extra", None) or {}
            msg = dict(msg)
            if msg["role"] == "assistant" and extra.get("tool_calls"):
                calls = _message_calls(extra["tool_calls"], i)
                for call in calls:
                    names[call["id"]] = call["function"]["name"]
                if self.native:
                    msg["tool_calls"] = calls
                else:
                    text = json.dumps({"tool_calls": [
                        {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                        for c in calls]}, ensure_ascii=False)
                    msg["content"] = (msg["content"] + "\n" if msg["content"] else "") + text
            elif msg["role"] == "tool":
                call_id = extra.get("tool_call_id")
                if not isinstance(call_id, str):
                    raise _bad(f"messages.{i}.tool_call_id", f"'messages.{i}': a tool message "
                                                            "needs its 'tool_call_id'.")
                name = names.get(call_id, msg.get("name", ""))
                if self.native:
                    msg["tool_call_id"] = call_id
                    if name:
                        msg["name"] = name
                else:
                    msg["content"] = f"Result of the tool call {name or call_id}: " \
                                     f"{msg['content']}"
            out.append(msg)
        if self.calls_expected and not self.native:
            out = _with_system(out, self._instructions())
        return out

    def _instructions(self) -> str:
        tools = [t for t in self.tools if self.choice in ("auto", "required")
                 or t["function"]["name"] == self.choice]
        one = "" if self.parallel else " Call at most one tool."
        return GENERIC_INSTRUCTIONS.format(one=one, tools=json.dumps(
            [t["function"] for t in tools], ensure_ascii=False, separators=(",", ":")))

    def read(self, text: str) -> tuple[str | None, list[ToolCall]]:
        """The reply's text and the tool calls in it (none unless tools were offered)."""
        if not self.calls_expected:
            return text, []
        content, calls = parse_tool_calls(text, self.family, self.names)
        if not self.parallel:
            calls = calls[:1]
        return (content, calls) if calls else (text, [])

    def chat_body(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        """A chat.completion body with its tool calls (finish_reason ``tool_calls``)."""
        content, calls = self.read(text)
        if calls:
            choice = body["choices"][0]
            choice["message"] = {"role": "assistant", "content": content or None,
                                 "tool_calls": [c.openai() for c in calls]}
            choice["finish_reason"] = "tool_calls"
        return body


def _with_system(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    if messages and messages[0]["role"] in ("system", "developer"):
        first = dict(messages[0], content=f"{messages[0]['content']}\n\n{text}")
        return [first, *messages[1:]]
    return [{"role": "system", "content": text}, *messages]


def _message_calls(value: Any, index: int) -> list[dict[str, Any]]:
    """An assistant message's ``tool_calls`` as templates take them (arguments a dict)."""
    param = f"messages.{index}.tool_calls"
    if not isinstance(value, list):
        raise _bad(param, f"'{param}' must be a list.")
    calls = []
    for j, call in enumerate(value):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise _bad(param, f"'{param}.{j}' needs a function with a name.")
        args: Any = fn.get("arguments", "{}")
        if isinstance(args, str):
            try:
                args = json.loads(args or "{}")
            except ValueError:
                raise _bad(param, f"'{param}.{j}.function.arguments' is not JSON.") from None
        calls.append({"id": str(call.get("id") or f"call_{index}_{j}"), "type": "function",
                      "function": {"name": fn["name"], "arguments": args}})
    return calls


def _check_tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or len(value) > MAX_TOOLS:
        raise _bad("tools", f"'tools' must be a list of at most {MAX_TOOLS} function tools.")
    seen: set[str] = set()
    tools = []
    for i, tool in enumerate(value):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" \
                or not isinstance(fn, dict):
            raise _bad("tools", f"'tools' item {i} must be {{\"type\": \"function\", "
                                "\"function\": {\"name\": ..., \"parameters\": {...}}}.")
        name = fn.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _bad("tools", f"'tools' item {i}: function.name must be 1-64 letters, "
                                "digits, _ or -.")
        if name in seen:
            raise _bad("tools", f"'tools': the function name {name!r} is given twice.")
        seen.add(name)
        params = fn.get("parameters", NO_PARAMETERS)
        check_schema(params, "tools")
        if not (isinstance(params, dict) and params.get("type", "object") == "object"):
            raise _bad("tools", f"'tools' item {i}: function.parameters must be an object "
                                "schema.")
        clean = {"name": name, "parameters": params}
        if isinstance(fn.get("description"), str):
            clean["description"] = fn["description"]
        tools.append({"type": "function", "function": clean})
    return tools


def _choice(value: Any, names: set[str]) -> str:
    if value is None:
        return "auto"
    if value in ("auto", "none", "required"):
        if value == "required" and not names:
            raise _bad("tool_choice", "'tool_choice' is \"required\" but no 'tools' are given.")
        return value
    fn = value.get("function") if isinstance(value, dict) else None
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        if fn["name"] not in names:
            raise _bad("tool_choice", f"'tool_choice' names {fn['name']!r}, which is not among "
                                      "the 'tools'.")
        return fn["name"]
    raise _bad("tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or "
                              "{\"type\": \"function\", \"function\": {\"name\": ...}}.")


def call_grammar(tools: list[dict[str, Any]], only: str | None) -> str:
    """GBNF for one ``{"name": ..., "arguments": ...}`` object whose arguments match the
    chosen function's (or any offered function's) parameters schema."""
    defs: dict[str, Any] = {}
    alternatives = []
    for t in tools:
        name = t["function"]["name"]
        if only is not None and name != only:
            continue
        params = t["function"].get("parameters", NO_PARAMETERS)
        if "$ref" in json.dumps(params):  # its references are relative to its own root
            defs[name] = _rebased(params, f"#/$defs/{name}")
            params = {"$ref": f"#/$defs/{name}"}
        alternatives.append({"type": "object", "properties": {
            "name": {"const": name}, "arguments": params}, "required": ["name", "arguments"]})
    schema: dict[str, Any] = alternatives[0] if len(alternatives) == 1 \
        else {"anyOf": alternatives}
    if defs:
        schema = {**schema, "$defs": defs}
    return schema_grammar(schema, "tools", ["name", "arguments"])


def _rebased(node: Any, root: str) -> Any:
    """``node`` with every local ``$ref`` ('#/...') moved under ``root``."""
    if isinstance(node, dict):
        return {k: (root + v[1:] if k == "$ref" and isinstance(v, str) and v.startswith("#/")
                    else _rebased(v, root)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rebased(v, root) for v in node]
    return node


def plan_output(req: Any, kind: str, engine: Any) -> OutputPlan | None:
    """The request's output plan (None: plain text, nothing to do), or a 400."""
    template = getattr(engine, "chat_template", None)
    extra = getattr(req, "model_extra", None) or {}
    tools_value = extra.get("tools")
    choice_value = extra.get("tool_choice")
    parallel = extra.get("parallel_tool_calls", True)
    grammar = response_format_grammar(extra.get("response_format"))
    if kind != "chat" and (tools_value or choice_value not in (None, "none")):
        raise APIError(400, "'tools' are for /v1/chat/completions, not /v1/completions.",
                       param="tools", code="unsupported_parameter")
    if not isinstance(parallel, bool):
        raise _bad("parallel_tool_calls", "'parallel_tool_calls' must be true or false.")
    tools = _check_tools(tools_value) if tools_value is not None else []
    plan = OutputPlan(tools=tools, choice=_choice(choice_value, {t["function"]["name"]
                                                                 for t in tools}),
                      parallel=parallel, family=family_of(template),
                      native=bool(template and re.search(r"\btools\b", template)))
    if plan.forced:
        plan.grammar = call_grammar(tools, None if plan.choice == "required" else plan.choice)
    else:
        plan.grammar = grammar
    if plan.grammar is not None and not getattr(engine, "supports_grammar", False):
        param = "tool_choice" if plan.forced else "response_format"
        raise APIError(400, f"The {getattr(engine, 'name', '')} engine cannot constrain its "
                            f"output to a grammar, which '{param}' needs here; serve a GGUF "
                            "with the llama.cpp engine.", param=param,
                       code="unsupported_parameter")
    if plan.grammar is None and not plan.calls_expected and not any(
            getattr(m, "model_extra", None) for m in getattr(req, "messages", [])):
        return None
    return plan


def stream_writer(plan: OutputPlan | None, writer: Any) -> Any:
    """The chunk writer for a streamed reply: tool calls become deltas when offered."""
    from llmops_desktop.serving.tool_parsing import ToolCallStream

    return ToolCallStream(writer, plan) if plan is not None and plan.calls_expected \
        else writer
