"""Read and check a GGUF file's header: metadata, tensor table, and that the data fits.

Only the header is read (a few MB at most, however large the model), so a
multi-GB GGUF is checked in milliseconds. Block sizes of the quantized types
come from the ``gguf`` module that ships with llama.cpp's converter.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from llmops_desktop.errors import CorruptFileError

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_STRING = 64 * 1024 * 1024
MAX_TENSORS = 1_000_000


@dataclass(frozen=True)
class GGUFInfo:
    version: int
    metadata: dict[str, Any]  # scalar values; arrays as {"array": type, "length": n}
    tensor_types: dict[str, int]  # type name -> tensor count
    parameters: int
    tensors: int
    data_end: int

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def file_type(self) -> str:
        """The quantization: from general.file_type, else the commonest tensor type."""
        ft = self.metadata.get("general.file_type")
        if isinstance(ft, int):
            name = _file_type_name(ft)
            if name:
                return name
        return max(self.tensor_types, key=self.tensor_types.get) if self.tensor_types else ""

    @property
    def context_length(self) -> int | None:
        value = self.metadata.get(f"{self.architecture}.context_length")
        return int(value) if isinstance(value, int) else None


class _Reader:
    def __init__(self, fh: BinaryIO, size: int, name: str) -> None:
        self.fh, self.size, self.name = fh, size, name

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise CorruptFileError(
                f"{self.name} is truncated: its header ends early (at byte {self.fh.tell()} of "
                f"{self.size}). Copy or download the file again.")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > MAX_STRING:
            raise CorruptFileError(f"{self.name} is corrupt: a header string claims {n} bytes.")
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype, count = self.scalar("<I"), self.scalar("<Q")
            if count > 100_000_000:
                raise CorruptFileError(f"{self.name} is corrupt: an array claims {count} items.")
            if itype in _SCALARS:  # skip the items, keep the length
                width = struct.calcsize(_SCALARS[itype])
                self.skip(width * count)
            else:
                for _ in range(count):
                    self.value(itype)
            return {"array": itype, "length": count}
        raise CorruptFileError(f"{self.name} is corrupt: unknown metadata type {vtype}.")

    def skip(self, n: int) -> None:
        if self.fh.tell() + n > self.size:
            self.read(self.size - self.fh.tell() + 1)  # raises the truncation error
        self.fh.seek(n, 1)


def _quant_sizes() -> dict[int, tuple[int, int, str]]:
    """ggml type id -> (block size, bytes per block, name)."""
    try:
        from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType
    except Exception:  # noqa: BLE001 - fall back to the common unquantized types
        return {0: (1, 4, "F32"), 1: (1, 2, "F16"), 30: (1, 2, "BF16"), 8: (32, 34, "Q8_0")}
    return {int(t): (*GGML_QUANT_SIZES[t], t.name) for t in GGMLQuantizationType
            if t in GGML_QUANT_SIZES}


def _file_type_name(ft: int) -> str:
    try:
        from gguf.constants import LlamaFileType

        return LlamaFileType(ft).name.replace("MOSTLY_", "").replace("ALL_", "")
    except Exception:  # noqa: BLE001
        return ""


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header and check that every tensor's data lies inside the file."""
    size = path.stat().st_size
    name = path.name
    with open(path, "rb") as fh:
        r = _Reader(fh, size, name)
        if size < 24 or fh.read(4) != GGUF_MAGIC:
            raise CorruptFileError(f"{name} is not a GGUF file (it does not start with 'GGUF').")
        version = r.scalar("<I")
        if version not in (2, 3):
            raise CorruptFileError(f"{name} has GGUF version {version}; versions 2 and 3 are "
                                   "supported. Re-convert it with a current llama.cpp.")
        n_tensors, n_kv = r.scalar("<Q"), r.scalar("<Q")
        if n_tensors > MAX_TENSORS or n_kv > MAX_TENSORS:
            raise CorruptFileError(f"{name} is corrupt: it claims {n_tensors} tensors.")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = r.string()
            metadata[key] = r.value(r.scalar("<I"))
        sizes = _quant_sizes()
        infos = []
        for _ in range(n_tensors):
            tname = r.string()
            n_dims = r.scalar("<I")
            if n_dims > 8:
                raise CorruptFileError(f"{name} is corrupt: tensor {tname!r} has {n_dims} dims.")
            dims = [r.scalar("<Q") for _ in range(n_dims)]
            infos.append((tname, dims, r.scalar("<I"), r.scalar("<Q")))
        alignment = metadata.get("general.alignment", 32)
        if not isinstance(alignment, int) or alignment <= 0:
            alignment = 32
        start = fh.tell()
    data_start = (start + alignment - 1) // alignment * alignment
    params = 0
    types: Counter[str] = Counter()
    data_end = data_start
    for tname, dims, ttype, offset in infos:
        numel = 1
        for d in dims:
            numel *= d
        params += numel
        if ttype not in sizes:
            raise CorruptFileError(f"{name}: tensor {tname!r} has unknown type {ttype}; the file "
                                   "is corrupt or needs a newer llama.cpp.")
        block, type_size, type_name = sizes[ttype]
        types[type_name] += 1
        data_end = max(data_end, data_start + offset + numel // block * type_size)
    if data_end > size:
        raise CorruptFileError(
            f"{name} is truncated: its tensors need {data_end} bytes but the file has {size}. "
            "Copy or download the file again.")
    return GGUFInfo(version=version, metadata=metadata, tensor_types=dict(types),
                    parameters=params, tensors=n_tensors, data_end=data_end)


def gguf_summary(info: GGUFInfo) -> dict[str, Any]:
    """What the catalog shows: architecture, quantization, size, context, license, name."""
    md = info.metadata
    out: dict[str, Any] = {
        "format": "gguf", "gguf_version": info.version, "architecture": info.architecture,
        "quantization": info.file_type, "parameters": info.parameters, "tensors": info.tensors,
        "has_chat_template": "tokenizer.chat_template" in md,
    }
    if info.context_length:
        out["context_length"] = info.context_length
    arch = info.architecture
    for key, label in ((f"{arch}.block_count", "num_hidden_layers"),
                       (f"{arch}.embedding_length", "hidden_size"),
                       (f"{arch}.attention.head_count", "num_attention_heads"),
                       (f"{arch}.attention.head_count_kv", "num_key_value_heads")):
        if isinstance(md.get(key), int):
            out[label] = md[key]
    tokens = md.get("tokenizer.ggml.tokens")
    if isinstance(tokens, dict):
        out["vocab_size"] = tokens.get("length")
    for key, label in (("general.name", "name"), ("general.license", "license"),
                       ("general.description", "description"),
                       ("general.quantization_version", "quantization_version"),
                       ("tokenizer.ggml.model", "tokenizer")):
        if key in md and not isinstance(md[key], dict):
            out[label] = md[key]
    return out
