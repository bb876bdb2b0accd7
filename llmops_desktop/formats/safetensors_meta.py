"""Validate a safetensors file from its header alone, without loading tensors.

A safetensors file is an 8-byte little-endian header length, a JSON header
naming each tensor's dtype, shape and byte range, then the data. A file whose
ranges do not exactly cover the rest of the file is truncated or corrupt.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from llmops_desktop.errors import CorruptFileError

DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "F4": 0.5,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8,
    "U64": 8, "F64": 8,
}
MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class SafetensorsInfo:
    parameters: int
    dtypes: dict[str, int]  # dtype -> parameter count
    tensors: int
    metadata: dict[str, str]


def read_safetensors_info(path: Path) -> SafetensorsInfo:
    """Parse and check the header; raise CorruptFileError with what is wrong."""
    size = path.stat().st_size
    name = path.name
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CorruptFileError(f"{name} is not a safetensors file: it is only {size} bytes.")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > MAX_HEADER or header_len > size - 8:
            raise CorruptFileError(
                f"{name} is truncated or not a safetensors file: its header claims "
                f"{header_len} bytes but the file has {size}.")
        raw = fh.read(header_len)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorruptFileError(f"{name} has a corrupt header ({exc}).") from None
    if not isinstance(header, dict):
        raise CorruptFileError(f"{name} has a corrupt header (not a JSON object).")
    metadata = header.pop("__metadata__", {}) or {}
    data_len = size - 8 - header_len
    params = 0
    dtypes: Counter[str] = Counter()
    end_max = 0
    for tname, info in header.items():
        try:
            dtype, shape = info["dtype"], info["shape"]
            begin, end = info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CorruptFileError(f"{name}: tensor {tname!r} has a malformed entry.") from None
        numel = math.prod(shape)
        width = DTYPE_BYTES.get(dtype)
        if width is not None and end - begin != int(numel * width):
            raise CorruptFileError(
                f"{name}: tensor {tname!r} declares {end - begin} bytes for shape {shape} "
                f"of {dtype}; the file is corrupt.")
        params += numel
        dtypes[dtype] += numel
        end_max = max(end_max, end)
    if end_max > data_len:
        raise CorruptFileError(
            f"{name} is truncated: its tensors need {end_max} bytes of data but only "
            f"{data_len} are present. Copy or download the file again.")
    if end_max < data_len:
        raise CorruptFileError(
            f"{name} has {data_len - end_max} bytes after its last tensor; the file is corrupt.")
    return SafetensorsInfo(parameters=params, dtypes=dict(dtypes), tensors=len(header),
                           metadata={str(k): str(v) for k, v in metadata.items()})
