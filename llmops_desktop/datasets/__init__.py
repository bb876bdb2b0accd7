"""Datasets for fine-tuning: import, versions with sha256, shapes, statistics, splits.

Plain Python (no Qt, no torch at import time). A dataset has a name and versions; each
version is an immutable, hashed copy of the rows in a canonical JSON-lines file under the
home's ``datasets/`` folder, with its detected shape, column mapping and split.
"""

from __future__ import annotations

from llmops_desktop.datasets.shapes import SHAPES, BadRow
from llmops_desktop.datasets.store import (
    Dataset,
    DatasetVersion,
    import_dataset,
    list_datasets,
    read_rows,
    resolve_version,
    set_split,
    split_indices,
)

__all__ = ["SHAPES", "BadRow", "Dataset", "DatasetVersion", "import_dataset", "list_datasets",
           "read_rows", "resolve_version", "set_split", "split_indices"]
