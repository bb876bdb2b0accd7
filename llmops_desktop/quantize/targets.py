"""The quantization targets the app offers, with what a user needs to choose between them.

Bits per weight are llama.cpp's typical figures for a 7B Llama (its quantize tool's
table); small or unusual models deviate, which is why sizes are called estimates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GGUFTarget:
    name: str  # as users write it: Q4_K_M
    bits_per_weight: float
    ftype: str  # llama_cpp.LLAMA_FTYPE_* name, or "" for converter-only types
    convert_outtype: str  # the converter's --outtype when made straight from HF, else ""
    description: str

    @property
    def is_float(self) -> bool:
        return self.name in ("F16", "BF16", "F32")


GGUF_TARGETS: dict[str, GGUFTarget] = {t.name: t for t in [
    GGUFTarget("F16", 16.0, "LLAMA_FTYPE_MOSTLY_F16", "f16", "half precision; the usual starting point"),
    GGUFTarget("BF16", 16.0, "LLAMA_FTYPE_MOSTLY_BF16", "bf16", "bfloat16; keeps the range of f32 weights"),
    GGUFTarget("Q8_0", 8.5, "LLAMA_FTYPE_MOSTLY_Q8_0", "q8_0", "8-bit; nearly lossless"),
    GGUFTarget("Q6_K", 6.56, "LLAMA_FTYPE_MOSTLY_Q6_K", "", "6-bit k-quant; very small loss"),
    GGUFTarget("Q5_K_M", 5.69, "LLAMA_FTYPE_MOSTLY_Q5_K_M", "", "5-bit k-quant; small loss"),
    GGUFTarget("Q5_K_S", 5.54, "LLAMA_FTYPE_MOSTLY_Q5_K_S", "", "5-bit k-quant, smaller"),
    GGUFTarget("Q4_K_M", 4.89, "LLAMA_FTYPE_MOSTLY_Q4_K_M", "", "4-bit k-quant; the usual balance"),
    GGUFTarget("Q4_K_S", 4.58, "LLAMA_FTYPE_MOSTLY_Q4_K_S", "", "4-bit k-quant, smaller"),
    GGUFTarget("Q4_0", 4.55, "LLAMA_FTYPE_MOSTLY_Q4_0", "", "legacy 4-bit; fast on some CPUs"),
    GGUFTarget("IQ4_NL", 4.50, "LLAMA_FTYPE_MOSTLY_IQ4_NL", "", "4-bit non-linear"),
    GGUFTarget("IQ4_XS", 4.25, "LLAMA_FTYPE_MOSTLY_IQ4_XS", "", "4.25-bit i-quant"),
    GGUFTarget("Q3_K_L", 4.27, "LLAMA_FTYPE_MOSTLY_Q3_K_L", "", "3-bit k-quant, largest"),
    GGUFTarget("Q3_K_M", 3.91, "LLAMA_FTYPE_MOSTLY_Q3_K_M", "", "3-bit k-quant; noticeable loss"),
    GGUFTarget("IQ3_M", 3.66, "LLAMA_FTYPE_MOSTLY_IQ3_M", "", "3.66-bit i-quant"),
    GGUFTarget("IQ3_S", 3.44, "LLAMA_FTYPE_MOSTLY_IQ3_S", "", "3.44-bit i-quant"),
    GGUFTarget("Q3_K_S", 3.50, "LLAMA_FTYPE_MOSTLY_Q3_K_S", "", "3-bit k-quant, smallest"),
    GGUFTarget("IQ3_XXS", 3.06, "LLAMA_FTYPE_MOSTLY_IQ3_XXS", "", "3.06-bit i-quant; large loss"),
    GGUFTarget("Q2_K", 3.35, "LLAMA_FTYPE_MOSTLY_Q2_K", "", "2-bit k-quant; large loss"),
]}
BNB_MODES = ("bnb-nf4", "bnb-fp4", "bnb-int8")
# IQ2_*, IQ1_* and Q2_K_S need an importance matrix, which this app does not compute yet.
NEEDS_IMATRIX = ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "Q2_K_S")
FLOAT_BITS = {"F32": 32.0, "F16": 16.0, "BF16": 16.0}


def normalize_target(name: str) -> str:
    """'q4_k_m' -> 'Q4_K_M'; bitsandbytes modes stay lower-case ('bnb-nf4')."""
    text = name.strip()
    return text.lower() if text.lower().startswith("bnb-") else text.upper()


def bits_of(quantization: str) -> float | None:
    """Bits per weight of a GGUF's file type as the catalog records it (F16, Q4_K_M…)."""
    q = quantization.upper()
    if q in FLOAT_BITS:
        return FLOAT_BITS[q]
    target = GGUF_TARGETS.get(q)
    return target.bits_per_weight if target else None


def estimate(metadata: dict[str, Any], target: str, context: int = 4096) -> dict[str, float]:
    """Estimated file size and memory to run a variant, from the parent's metadata.

    Memory = weights + the f16 KV cache at ``context`` tokens + a compute buffer.
    """
    params = int(metadata.get("parameters") or 0)
    bits = bits_of(target) or (4.5 if "nf4" in target or "fp4" in target else 8.5)
    size = params * bits / 8
    layers = int(metadata.get("num_hidden_layers") or metadata.get("block_count") or 0)
    hidden = int(metadata.get("hidden_size") or metadata.get("embedding_length") or 0)
    heads = int(metadata.get("num_attention_heads") or 0) or 1
    kv_heads = int(metadata.get("num_key_value_heads") or heads)
    ctx = min(context, int(metadata.get("context_length") or context))
    kv = 2 * layers * ctx * (hidden // heads) * kv_heads * 2 if hidden else 0
    vocab = int(metadata.get("vocab_size") or 32000)
    compute = 64 * 1024 * 1024 + ctx * vocab * 4 // 8
    return {"size_bytes": size, "memory_bytes": size + kv + compute, "bits_per_weight": bits,
            "context": ctx}
