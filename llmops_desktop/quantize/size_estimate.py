"""What a GGUF variant will weigh, tensor by tensor, from the parent's headers.

Bits per weight alone miss what dominates a small model: 1-D tensors (norms, biases) stay
F32, rows whose length is not a multiple of a k-quant's 256 fall back to another type,
``output.weight`` (or a tied embedding) and some ``attn_v``/``ffn_down`` layers get more
bits, and the metadata (the vocabulary above all) is copied as it is. This follows
llama.cpp's ``llama_tensor_get_type`` for the common types; the figures come from the
parent's safetensors or GGUF headers (read in the dialog's probe thread, never the weights).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALIGNMENT = 32
QK_K = 256
# ggml type -> (elements per block, bytes per block)
TYPE_SIZES = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20),
              "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34), "Q2_K": (256, 84),
              "Q3_K": (256, 110), "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210),
              "IQ4_NL": (32, 18), "IQ4_XS": (256, 136), "IQ3_S": (256, 110),
              "IQ3_XXS": (256, 98)}
# file type -> the type most tensors get
BASE_TYPE = {"F16": "F16", "BF16": "BF16", "Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K",
             "Q5_K_S": "Q5_K", "Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q4_0": "Q4_0",
             "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS", "Q3_K_L": "Q3_K", "Q3_K_M": "Q3_K",
             "Q3_K_S": "Q3_K", "IQ3_M": "IQ3_S", "IQ3_S": "IQ3_S", "IQ3_XXS": "IQ3_XXS",
             "Q2_K": "Q2_K"}
# a k-quant's type for rows it cannot split into 256-element blocks (llama.cpp's fallback)
FALLBACK = {"Q2_K": "Q4_0", "Q3_K": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ3_XXS": "IQ4_NL",
            "IQ4_XS": "IQ4_NL", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}
_MORE_BITS = {"Q4_K_M": "Q6_K", "Q5_K_M": "Q6_K", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K"}
_HF_ROLES = (("embed_tokens", "token_embd"), ("lm_head", "output"), ("v_proj", "attn_v"),
             ("down_proj", "ffn_down"), ("wte", "token_embd"))


@dataclass(frozen=True)
class Tensor:
    name: str  # llama.cpp's role where known: token_embd, output, attn_v, ffn_down, or as is
    shape: tuple[int, ...]  # ggml order: the row length (ne0) first

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


@dataclass
class Layout:
    """The parent's tensors and the bytes its metadata takes in a GGUF."""

    tensors: list[Tensor]
    metadata_bytes: int
    source: str  # 'GGUF header' or 'safetensors headers'
    notes: list[str] = field(default_factory=list)


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def tensor_type(t: Tensor, target: str, index: int, count: int, has_output: bool) -> str:
    """The type llama.cpp gives tensor ``t`` when quantizing to ``target``."""
    if len([d for d in t.shape if d > 1]) < 2 or t.name.endswith("norm"):
        return "F32"
    base = BASE_TYPE.get(target, "Q8_0")
    kind = base
    if target not in ("F16", "BF16", "Q8_0"):
        if t.name == "output" or (not has_output and t.name == "token_embd"):
            kind = "Q6_K"
        elif t.name in ("attn_v", "ffn_down") and target in _MORE_BITS \
                and _use_more_bits(index, count):
            kind = _MORE_BITS[target]
    block = TYPE_SIZES[kind][0]
    if t.shape[0] % block:
        kind = FALLBACK.get(kind, "F16")
        if t.shape[0] % TYPE_SIZES[kind][0]:
            kind = "F16"
    return kind


def estimate_gguf_bytes(layout: Layout, target: str) -> tuple[int, dict[str, int]]:
    """The file size for ``target`` and how many tensors get each type."""
    has_output = any(t.name == "output" for t in layout.tensors)
    counts = {name: sum(1 for t in layout.tensors if t.name == name)
              for name in ("attn_v", "ffn_down")}
    seen = {name: 0 for name in counts}
    total = layout.metadata_bytes
    types: dict[str, int] = {}
    for t in layout.tensors:
        index = seen.get(t.name, 0)
        if t.name in seen:
            seen[t.name] += 1
        kind = tensor_type(t, target, index, counts.get(t.name, 1), has_output)
        block, size = TYPE_SIZES[kind]
        data = t.numel // block * size
        total += (data + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
        types[kind] = types.get(kind, 0) + 1
    return total, types


def _role(hf_name: str) -> str:
    for part, role in _HF_ROLES:
        if part in hf_name:
            return role
    return "norm" if "norm" in hf_name else hf_name


def read_layout(kind: str, path: Path) -> Layout:
    """The tensors and metadata size of a GGUF file or a Hugging Face folder."""
    if kind == "gguf":
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        tensors = [Tensor(_gguf_role(t.name), tuple(int(d) for d in t.shape))
                   for t in reader.tensors]
        return Layout(tensors, int(reader.data_offset), "GGUF header")
    return _hf_layout(path)


def _gguf_role(name: str) -> str:
    base = re.sub(r"^blk\.\d+\.", "", name).removesuffix(".weight")
    return "norm" if base.endswith("_norm") or base.endswith(".bias") else base


def _hf_layout(folder: Path) -> Layout:

    tensors: list[Tensor] = []
    for file in sorted(folder.glob("*.safetensors")):
        header = _safetensors_header(file)
        for name, info in header.items():
            if name == "__metadata__" or not isinstance(info, dict):
                continue
            shape = tuple(int(d) for d in reversed(info.get("shape") or [1]))
            tensors.append(Tensor(_role(name), shape))
    info_bytes = sum(8 + 40 + 4 + 8 * len(t.shape) + 4 + 8 for t in tensors)
    return Layout(tensors, _vocab_bytes(folder) + info_bytes + 4096, "safetensors headers")


def _safetensors_header(file: Path) -> dict[str, Any]:
    import struct

    with open(file, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        return json.loads(fh.read(n))


def _vocab_bytes(folder: Path) -> int:
    """What the tokenizer takes in GGUF metadata: tokens, scores, types and merges."""
    total = 0
    tok = folder / "tokenizer.json"
    if tok.is_file():
        data = json.loads(tok.read_text(encoding="utf-8"))
        model = data.get("model") or {}
        vocab = model.get("vocab") or {}
        tokens = list(vocab) if isinstance(vocab, dict) else [v[0] for v in vocab]
        tokens += [t.get("content", "") for t in data.get("added_tokens") or []]
        total += sum(8 + len(t.encode("utf-8")) + 4 + 4 for t in tokens)
        for merge in model.get("merges") or []:
            text = merge if isinstance(merge, str) else " ".join(merge)
            total += 8 + len(text.encode("utf-8"))
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        if isinstance(template, str):
            total += len(template.encode("utf-8"))
    return total
