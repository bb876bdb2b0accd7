"""A chat template for a model without one (#15 item 9): llama.cpp's built-in templates by
name or a Jinja file through ``--chat-template``, the suggestion from the GGUF's
architecture, and chat working on a demo GGUF whose template metadata is stripped."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import openai
import pytest
import requests
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.formats.gguf_meta import read_gguf_info
from llmops_desktop.paths import Home
from llmops_desktop.serving.config import (
    DeploymentConfig,
    ServeOptions,
    add_serve_arguments,
    options_from_args,
)
from llmops_desktop.serving.engines.base import EngineSettings, get_engine
from llmops_desktop.serving.templates import (
    BUILTIN_TEMPLATES,
    resolve_chat_template,
    suggest_chat_template,
    suggest_for_architecture,
)
from tests.mirror_fixtures import import_artifact
from tests.serving_fixtures import make_deployment, server_process, server_thread

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Why?"}]
# What llama.cpp's llm_chat_apply_template (src/llama-chat.cpp) writes for CHAT, with
# "<s>"/"</s>" standing for the model's BOS/EOS text where the template names them.
EXPECTED = {
    "chatml": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
              "<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>user\nWhy?<|im_end|>\n"
              "<|im_start|>assistant\n",
    "gemma": "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
             "Hello<end_of_turn>\n<start_of_turn>user\nWhy?<end_of_turn>\n"
             "<start_of_turn>model\n",
    "llama3": "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\nHello<|eot_id|>"
              "<|start_header_id|>user<|end_header_id|>\n\nWhy?<|eot_id|>"
              "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "llama2": "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]Hello</s>[INST] Why? [/INST]",
    "mistral": "<s>[INST] Be brief.\n\nHi[/INST] Hello</s>[INST] Why?[/INST]",
    "phi3": "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello<|end|>\n"
            "<|user|>\nWhy?<|end|>\n<|assistant|>\n",
    "zephyr": "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello</s>\n"
              "<|user|>\nWhy?</s>\n<|assistant|>\n",
    "vicuna": "Be brief.\n\nUSER: Hi\nASSISTANT: Hello</s>\nUSER: Why?\nASSISTANT:",
    "deepseek2": "<s>Be brief.\n\nUser: Hi\n\nAssistant: Hello</s>User: Why?\n\nAssistant:",
}


def _render(template: str, messages: list[dict], bos: str = "<s>", eos: str = "</s>") -> str:
    return Jinja2ChatFormatter(template, eos, bos)(messages=messages).prompt


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_templates_write_what_llama_cpp_writes(name: str) -> None:
    assert _render(resolve_chat_template(name), CHAT) == EXPECTED[name]
    assert resolve_chat_template(name.upper()) == BUILTIN_TEMPLATES[name]


def test_every_builtin_is_tested() -> None:
    assert set(BUILTIN_TEMPLATES) == set(EXPECTED)


@pytest.mark.parametrize(("arch", "name"), [
    ("gemma3", "gemma"), ("gemma", "gemma"), ("llama", "llama3"), ("qwen2", "chatml"),
    ("phi3", "phi3"), ("mistral", "mistral"), ("LLAMA", "llama3")])
def test_suggestion_from_the_architecture(arch: str, name: str) -> None:
    suggestion = suggest_for_architecture(arch)
    assert suggestion.name == name and arch.lower() in suggestion.reason


def test_no_suggestion_for_an_unknown_architecture() -> None:
    suggestion = suggest_for_architecture("rwkv9")
    assert suggestion.name is None and "rwkv9" in suggestion.reason


def test_a_template_file_and_bad_values(tmp_path: Path) -> None:
    good = tmp_path / "t.jinja"
    good.write_text("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                    "{% if add_generation_prompt %}[assistant] {% endif %}", encoding="utf-8")
    assert _render(resolve_chat_template(str(good)), CHAT[1:2]) == "[user] Hi\n[assistant] "
    with pytest.raises(InvalidInputError, match="chatml"):
        resolve_chat_template("no-such-template")
    broken = tmp_path / "broken.jinja"
    broken.write_text("{% for m in messages %}", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid Jinja"):
        resolve_chat_template(str(broken))
    empty = tmp_path / "empty.jinja"
    empty.write_text("hello", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="content"):
        resolve_chat_template(str(empty))


def test_the_option_is_a_flag_and_a_form_field() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    options = options_from_args(parser.parse_args(["--chat-template", "gemma"]))
    assert options.chat_template == "gemma"
    info = {i["name"]: i for i in ServeOptions.field_info()}["chat_template"]
    assert info["label"] == "Chat template" and "gemma" in info["description"]


# ---- chat on a GGUF whose template is stripped ----------------------------------------------

def _strip_template(src: Path, dest: Path) -> Path:
    """A copy whose tokenizer.chat_template key is renamed (same length: the file's layout
    is unchanged), so llama.cpp and our reader see no template."""
    data = src.read_bytes()
    key = b"tokenizer.chat_template"
    assert data.count(key) == 1
    dest.write_bytes(data.replace(key, b"tokenizer.chat_templatX"))
    return dest


@pytest.fixture(scope="module")
def stripped(tmp_path_factory: pytest.TempPathFactory, demo_gguf_session: Path):
    root = tmp_path_factory.mktemp("templates")
    path = _strip_template(demo_gguf_session, root / "demo-notemplate.gguf")
    home = Home.resolve(root / "home")
    with Catalog.open(home) as cat:
        import_artifact(cat, path, "demo-notemplate")
        yield home, cat, path


def test_the_stripped_gguf_has_no_template_and_gets_a_suggestion(stripped,
                                                                  demo_gguf_session) -> None:
    _, _, path = stripped
    assert "tokenizer.chat_template" not in read_gguf_info(path).metadata
    suggestion = suggest_chat_template(path)
    assert suggestion.name == "llama3" and "'llama'" in suggestion.reason
    assert suggest_chat_template(demo_gguf_session).name is None  # it has its own


def test_without_a_template_chat_is_a_400(stripped) -> None:
    _, cat, path = stripped
    engine = get_engine("llama.cpp").load(path, EngineSettings(threads=1))
    try:
        config = make_deployment(cat, cat.resolve("demo-notemplate"), name="plain")
        with server_thread(config, engine) as live:
            r = requests.post(live.base_url + "/chat/completions", timeout=60, json={
                "model": "plain", "messages": CHAT, "max_tokens": 2})
    finally:
        engine.close()
    assert r.status_code == 400 and r.json()["error"]["code"] == "chat_template_missing"


def test_chat_template_gemma_makes_chat_work(stripped) -> None:
    home, _, _ = stripped
    with server_process(home.root, "--artifact", "demo-notemplate", "--threads", "1",
                        "--name", "gemma-chat", "--chat-template", "gemma") as server:
        client = openai.OpenAI(base_url=server.info["url"] + "/v1", api_key="unused",
                               max_retries=0, timeout=120)
        chat = client.chat.completions.create(model="gemma-chat", messages=CHAT,
                                              max_tokens=8, temperature=0)
        # the same prompt written out by hand through /v1/completions (BOS added there)
        prompt = _render(BUILTIN_TEMPLATES["gemma"], CHAT, bos="")
        plain = client.completions.create(model="gemma-chat", prompt=prompt, max_tokens=8,
                                          temperature=0)
    assert chat.usage.prompt_tokens == plain.usage.prompt_tokens
    assert chat.choices[0].message.content == plain.choices[0].text
    assert chat.usage.completion_tokens > 0


def test_a_template_file_is_served(stripped, tmp_path: Path) -> None:
    _, cat, path = stripped
    template = tmp_path / "mine.jinja"
    template.write_text("{{ bos_token }}{% for m in messages %}{{ m['role'] }}: "
                        "{{ m['content'] }}\n{% endfor %}assistant:", encoding="utf-8")
    config = DeploymentConfig.for_artifact(cat.resolve("demo-notemplate"),
                                           ServeOptions(chat_template=str(template)))
    assert config.engine_settings().chat_template == template.read_text(encoding="utf-8")
    engine = get_engine("llama.cpp").load(path, config.engine_settings())
    try:
        assert engine.has_chat_template
        ids = engine.tokenize_chat(CHAT[1:2]).ids
        assert ids == engine.tokenize("user: Hi\nassistant:").ids
    finally:
        engine.close()
    with pytest.raises(InvalidInputError):
        DeploymentConfig.for_artifact(cat.resolve("demo-notemplate"),
                                      ServeOptions(chat_template=str(tmp_path / "none.jinja")))
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_torch_engine_takes_the_template_too(demo_model_session: Path) -> None:
    gemma = BUILTIN_TEMPLATES["gemma"]
    engine = get_engine("torch").load(demo_model_session,
                                      EngineSettings(threads=1, device="cpu",
                                                     chat_template=gemma))
    try:
        ids = engine.tokenize_chat(CHAT).ids
        bos = engine._tok.bos_token or ""
        text = _render(gemma, CHAT, bos=bos, eos=engine._tok.eos_token or "")
        assert ids == engine._tok(text, add_special_tokens=False)["input_ids"]
        assert "<start_of_turn>" in text
    finally:
        engine.close()
