"""Statistics of a dataset version: rows, duplicates, empty rows, token lengths.

Token lengths are counted with a chosen model's tokenizer on the text training will see
(chat template applied, see :mod:`llmops_desktop.datasets.render`), with a histogram
for the window and the CLI.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmops_desktop.catalog import Catalog
from llmops_desktop.datasets.shapes import is_empty
from llmops_desktop.datasets.store import DatasetVersion, iter_rows
from llmops_desktop.errors import CancelledError, InvalidInputError

HIST_BINS = 20


def tokenizer_dir(catalog: Catalog, model_ref: str | int) -> Path:
    """The folder holding the tokenizer of a catalog model (a LoRA adapter uses its base's)."""
    artifact = catalog.resolve(model_ref)
    seen = 0
    while artifact.kind == "lora" and seen < 8:
        folder = artifact.path
        if (folder / "tokenizer_config.json").is_file():
            return folder
        if artifact.parent_id is None:
            raise InvalidInputError(f"{artifact.ref} is a LoRA adapter with no tokenizer and "
                                    "no base model in the catalog.")
        artifact = catalog.artifact(artifact.parent_id)
        seen += 1
    if artifact.kind != "hf":
        raise InvalidInputError(
            f"{artifact.ref} is a {artifact.kind} artifact; token lengths are counted with a "
            "Hugging Face model's tokenizer. Choose the HF model it was made from.")
    return artifact.path


def load_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except Exception as exc:  # noqa: BLE001 - transformers raises many kinds
        raise InvalidInputError(f"The tokenizer in {folder} cannot be loaded ({exc}).") from None


def histogram(values: list[int], bins: int = HIST_BINS) -> dict[str, list[float]]:
    """Equal-width bins over [min, max]: ``{"edges": [...bins+1], "counts": [...bins]}``."""
    if not values:
        return {"edges": [], "counts": []}
    lo, hi = min(values), max(values)
    if lo == hi:
        return {"edges": [lo - 0.5, hi + 0.5], "counts": [len(values)]}
    width = (hi - lo) / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return {"edges": [lo + i * width for i in range(bins + 1)], "counts": counts}


def _summary(values: list[int]) -> dict[str, Any]:
    if not values:
        return {}
    s = sorted(values)

    def pct(p: float) -> int:
        return s[min(len(s) - 1, max(0, math.ceil(p * len(s)) - 1))]

    return {"min": s[0], "max": s[-1], "mean": round(sum(s) / len(s), 2), "p50": pct(0.5),
            "p90": pct(0.9), "p99": pct(0.99), "total": sum(s)}


def dataset_stats(version: DatasetVersion, *, tokenizer: Any = None, max_len: int | None = None,
                  bins: int = HIST_BINS, progress: Callable[[int, int], None] | None = None,
                  cancelled: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Row counts, duplicates, empty rows, and (with a tokenizer) token-length statistics."""
    from llmops_desktop.datasets.render import encode_row

    rows = dups = empty = 0
    seen: set[bytes] = set()
    tokens: list[int] = []
    trained: list[int] = []
    dup_rows: list[int] = []
    empty_rows: list[int] = []
    for i, row in enumerate(iter_rows(version)):
        if i % 500 == 0:
            if cancelled is not None and cancelled():
                raise CancelledError("Statistics cancelled.")
            if progress is not None:
                progress(i, version.rows)
        rows += 1
        key = hashlib.blake2b(json.dumps(row, sort_keys=True).encode(), digest_size=16).digest()
        if key in seen:
            dups += 1
            if len(dup_rows) < 100:
                dup_rows.append(i)
        seen.add(key)
        if is_empty(row, version.shape):
            empty += 1
            if len(empty_rows) < 100:
                empty_rows.append(i)
        if tokenizer is not None:
            ids, mask = encode_row(tokenizer, row, version.shape)
            tokens.append(len(ids))
            trained.append(sum(mask))
    if progress is not None:
        progress(rows, rows)
    out: dict[str, Any] = {
        "dataset": version.ref, "sha256": version.sha256, "shape": version.shape, "rows": rows,
        "duplicates": dups, "duplicate_rows": dup_rows, "empty_rows": empty,
        "empty_row_indices": empty_rows, "bad_rows": len(version.metadata.get("bad_rows", [])),
        "split": {k: v for k, v in version.split.items() if k != "validation_indices"},
    }
    if tokenizer is not None:
        out["tokens"] = _summary(tokens)
        out["trained_tokens"] = _summary(trained)
        out["histogram"] = histogram(tokens, bins)
        out["tokenizer"] = getattr(tokenizer, "name_or_path", "")
        if max_len:
            out["max_len"] = max_len
            out["rows_over_max_len"] = sum(1 for t in tokens if t > max_len)
    return out
