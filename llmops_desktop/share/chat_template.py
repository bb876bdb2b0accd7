"""Convert a Hugging Face (Jinja) chat template to an Ollama (Go) TEMPLATE, where possible.

Jinja and Go templates are different languages, so the template is not translated
statement by statement. Instead it is *rendered* with marker messages, and the text
each role puts before and after a message's content is read off the result:

    system:    PREFIX_S {content} SUFFIX_S
    user:      PREFIX_U {content} SUFFIX_U
    assistant: PREFIX_A {content} SUFFIX_A
    then, to ask for a reply:  GENERATION_PROMPT

That shape covers most chat formats (ChatML, Llama 3, Zephyr, Gemma without a system
role, Phi-3, Mistral-style [INST] pairs …). The Go template built from it is then
checked by rendering a longer conversation both ways; if the two differ, nothing is
converted and the Modelfile says why, and Ollama falls back to what it infers from the
GGUF. What is *not* converted: templates that change a message by its position
(``loop.first``, a system prompt folded into the first user turn as Llama 2 does),
templates that insert a default system prompt, tool calls and tool results,
multimodal content, and anything the marker rendering raises on. A leading BOS token
is dropped, since llama.cpp adds it when the model asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

_S, _U, _A, _U2, _A2 = ("LLMOPSmarkSYSTEM1", "LLMOPSmarkUSER1", "LLMOPSmarkASSISTANT1",
                        "LLMOPSmarkUSER2", "LLMOPSmarkASSISTANT2")


class _NotConvertible(Exception):
    pass


@dataclass(frozen=True)
class TemplateConversion:
    go_template: str | None
    note: str
    stops: list[str] = field(default_factory=list)
    parts: dict[str, str] = field(default_factory=dict)


def _environment() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise _NotConvertible(f"the template raised: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def _msg(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def convert_chat_template(template: str, *, bos_token: str = "",
                          eos_token: str = "") -> TemplateConversion:
    """The Go template for ``template`` and suggested stop strings, or a note on why not."""
    if not template or not template.strip():
        return TemplateConversion(None, "the model has no chat template")
    try:
        compiled = _environment().from_string(template)
    except Exception as exc:  # noqa: BLE001 - jinja2.TemplateSyntaxError and friends
        return TemplateConversion(None, f"the chat template does not parse ({exc})")

    def render(messages: list[dict[str, str]], gen: bool) -> str:
        try:
            out = compiled.render(messages=messages, add_generation_prompt=gen,
                                  bos_token=bos_token, eos_token=eos_token, tools=None)
        except _NotConvertible:
            raise
        except Exception as exc:  # noqa: BLE001 - any template error: not convertible
            raise _NotConvertible(f"rendering failed ({type(exc).__name__}: {exc})") from None
        if bos_token and out.startswith(bos_token):
            out = out[len(bos_token):]
        return out

    def around(text: str, marker: str) -> tuple[str, str]:
        if text.count(marker) != 1:
            raise _NotConvertible(f"the {marker[10:-1].lower()} message does not appear exactly "
                                  "once as written")
        before, after = text.split(marker)
        return before, after

    try:
        u_pre, u_suf = around(render([_msg("user", _U)], False), _U)
        user_turn = u_pre + _U + u_suf
        with_gen = render([_msg("user", _U)], True)
        if not with_gen.startswith(user_turn):
            raise _NotConvertible("the generation prompt changes the user's turn")
        gen = with_gen[len(user_turn):]
        two = render([_msg("user", _U), _msg("assistant", _A)], False)
        if not two.startswith(user_turn):
            raise _NotConvertible("the user's turn depends on what follows it")
        a_pre, a_suf = around(two[len(user_turn):], _A)
        try:
            sys_text = render([_msg("system", _S), _msg("user", _U)], False)
            if not sys_text.endswith(user_turn):
                raise _NotConvertible("the system prompt is folded into the user's turn")
            s_pre, s_suf = around(sys_text[: len(sys_text) - len(user_turn)], _S)
            has_system = True
        except _NotConvertible:
            s_pre = s_suf = ""
            has_system = False
        parts = {"system_prefix": s_pre, "system_suffix": s_suf, "user_prefix": u_pre,
                 "user_suffix": u_suf, "assistant_prefix": a_pre, "assistant_suffix": a_suf,
                 "generation_prompt": gen}
        go = build_go_template(parts, has_system=has_system)
        checks = [[_msg("user", _U), _msg("assistant", _A), _msg("user", _U2)],
                  [_msg("user", _U), _msg("assistant", _A), _msg("user", _U2),
                   _msg("assistant", _A2), _msg("user", _U)]]
        if has_system:
            checks.append([_msg("system", _S), *checks[0]])
        for conv in checks:
            if render(conv, True) != render_go_like(parts, conv):
                raise _NotConvertible("a longer conversation renders differently (the template "
                                      "treats messages by position)")
    except _NotConvertible as exc:
        return TemplateConversion(None, f"the chat template was not converted: {exc}")
    stops = []
    for s in (eos_token, a_suf.strip(), u_pre.strip()):
        if s and s not in stops and '"' not in s and "\n" not in s and "\\" not in s:
            stops.append(s)
    note = "converted from the model's chat template" + (
        "" if has_system else " (the template has no system role: a system prompt is dropped)")
    return TemplateConversion(go, note, stops, parts)


def _go_text(text: str) -> str:
    """Literal text inside a Go template: only ``{{`` needs escaping."""
    return text.replace("{{", '{{ "{{" }}')


def build_go_template(parts: dict[str, str], *, has_system: bool = True) -> str:
    """Ollama's ``.Messages`` form of the role-wise template (no whitespace trimming, so
    every newline of the original is kept)."""
    branches = []
    if has_system:
        branches.append(('if eq .Role "system"', parts["system_prefix"], parts["system_suffix"]))
    branches.append(('eq .Role "user"', parts["user_prefix"], parts["user_suffix"]))
    branches.append(('eq .Role "assistant"', parts["assistant_prefix"],
                     parts["assistant_suffix"]))
    out = "{{ range .Messages }}"
    for i, (cond, pre, suf) in enumerate(branches):
        head = cond if cond.startswith("if ") else ("if " if i == 0 else "else if ") + cond
        out += "{{ " + head + " }}" + _go_text(pre) + "{{ .Content }}" + _go_text(suf)
    out += "{{ end }}{{ end }}" + _go_text(parts["generation_prompt"])
    return out


def render_go_like(parts: dict[str, str], messages: list[dict[str, str]]) -> str:
    """What :func:`build_go_template`'s template renders for ``messages`` (the same rules,
    in Python), to check the conversion against the original."""
    out = ""
    for m in messages:
        role = m["role"]
        if role in ("system", "user", "assistant"):
            out += parts[f"{role}_prefix"] + m["content"] + parts[f"{role}_suffix"]
    return out + parts["generation_prompt"]
