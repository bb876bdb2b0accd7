"""Metadata of a Hugging Face model folder: config.json and the model card."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from llmops_desktop.errors import CorruptFileError

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length",
                "n_ctx", "model_max_length")


def read_config(folder: Path) -> dict[str, Any]:
    """config.json of an HF model, or adapter_config.json of a LoRA adapter; {} if absent."""
    for name in ("config.json", "adapter_config.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise CorruptFileError(f"{name} in {folder} is not valid JSON ({exc}).") from None
            if not isinstance(data, dict):
                raise CorruptFileError(f"{name} in {folder} is not a JSON object.")
            return data
    return {}


def config_summary(config: dict[str, Any]) -> dict[str, Any]:
    """Architecture, context length and declared dtype from a config.json."""
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    merged = {**text, **{k: v for k, v in config.items() if v is not None}}
    out: dict[str, Any] = {}
    archs = config.get("architectures") or []
    if archs:
        out["architecture"] = archs[0]
    if config.get("model_type"):
        out["model_type"] = config["model_type"]
    for key in CONTEXT_KEYS:
        if isinstance(merged.get(key), int):
            out["context_length"] = merged[key]
            break
    dtype = config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype")
    if dtype:
        out["dtype"] = str(dtype)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "intermediate_size", "vocab_size"):
        if isinstance(merged.get(key), int):
            out[key] = merged[key]
    if config.get("peft_type"):
        out["peft_type"] = config["peft_type"]
        out["base_model"] = config.get("base_model_name_or_path") or ""
        out["lora_r"] = config.get("r")
    return out


_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?", re.S)


def read_model_card(folder: Path) -> dict[str, str]:
    """License and a one-paragraph description from README.md (YAML front matter + body)."""
    path = folder / "README.md"
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    out: dict[str, str] = {}
    body = text
    m = _FRONT_MATTER.match(text)
    if m:
        body = text[m.end():]
        try:
            import yaml

            meta = yaml.safe_load(m.group(1)) or {}
        except Exception:  # noqa: BLE001 - a broken card must not block an import
            meta = {}
        if isinstance(meta, dict):
            lic = meta.get("license")
            if isinstance(lic, list):
                lic = ", ".join(map(str, lic))
            if lic:
                out["license"] = str(lic)
            if meta.get("license_name"):
                out["license"] = str(meta["license_name"])
            if meta.get("base_model"):
                bm = meta["base_model"]
                out["base_model"] = ", ".join(bm) if isinstance(bm, list) else str(bm)
    for para in re.split(r"\n\s*\n", body):
        line = para.strip()
        if line and not line.startswith(("#", "<", "!", "|", "```", "---")):
            out["description"] = " ".join(line.split())[:1000]
            break
    return out
