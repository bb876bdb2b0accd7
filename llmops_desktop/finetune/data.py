"""Training examples from a dataset version, and a data order that a resume can replay.

Every row is rendered with the tokenizer's chat template and tokenized once; labels are
-100 outside the completion. The order of micro-batches is a pure function of (seed,
epoch, number of examples, batch size, processes), so step ``k`` of a resumed run sees
exactly the rows step ``k`` of an uninterrupted run saw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from llmops_desktop.datasets.render import encode_row
from llmops_desktop.datasets.store import DatasetVersion, iter_rows, split_indices

IGNORE = -100


@dataclass
class Encoded:
    train: list[tuple[list[int], list[int]]]  # (input_ids, labels)
    validation: list[tuple[list[int], list[int]]]
    truncated: int
    nothing_to_learn: int
    validation_indices: list[int]
    split: dict[str, Any]


def encode_dataset(version: DatasetVersion, tokenizer: Any, *, max_len: int,
                   validation: float | None, seed: int, packing: bool) -> Encoded:
    if validation is None:
        val_idx = list(version.split.get("validation_indices", []))
        split = {k: v for k, v in version.split.items() if k != "validation_indices"}
    else:
        val_idx = split_indices(version.rows, validation, seed)
        split = {"validation_fraction": validation, "seed": seed,
                 "validation_rows": len(val_idx), "train_rows": version.rows - len(val_idx)}
    val_set = set(val_idx)
    train: list[tuple[list[int], list[int]]] = []
    val: list[tuple[list[int], list[int]]] = []
    truncated = empty = 0
    for i, row in enumerate(iter_rows(version)):
        ids, mask = encode_row(tokenizer, row, version.shape)
        if len(ids) > max_len:
            truncated += 1
            ids, mask = ids[:max_len], mask[:max_len]
        labels = [t if m else IGNORE for t, m in zip(ids, mask)]
        # The first token is never predicted; a row needs a trained token after it.
        if not any(lab != IGNORE for lab in labels[1:]):
            empty += 1
            continue
        (val if i in val_set else train).append((ids, labels))
    if packing:
        train = pack(train, max_len)
    return Encoded(train, val, truncated, empty, val_idx, split)


def pack(examples: list[tuple[list[int], list[int]]], max_len: int) -> list[tuple[list[int], list[int]]]:
    """Concatenate examples, in order, into sequences of up to ``max_len`` tokens."""
    out: list[tuple[list[int], list[int]]] = []
    ids: list[int] = []
    labels: list[int] = []
    for e_ids, e_labels in examples:
        if ids and len(ids) + len(e_ids) > max_len:
            out.append((ids, labels))
            ids, labels = [], []
        ids = ids + e_ids
        labels = labels + e_labels
    if ids:
        out.append((ids, labels))
    return out


@dataclass(frozen=True)
class Schedule:
    """Which examples each micro-batch of each optimizer step uses."""

    n_examples: int
    batch_size: int
    grad_accum: int
    world: int
    epochs: float
    max_steps: int | None
    seed: int

    @property
    def micro_per_epoch(self) -> int:
        return max(1, math.ceil(self.n_examples / (self.batch_size * self.world)))

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.micro_per_epoch / self.grad_accum))

    @property
    def total_steps(self) -> int:
        if self.max_steps:
            return self.max_steps
        return max(1, math.ceil(self.steps_per_epoch * self.epochs))

    def epoch_order(self, epoch: int) -> list[int]:
        import torch

        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n_examples, generator=g).tolist()

    def step(self, step: int, rank: int) -> list[list[int]]:
        """The micro-batches (lists of example indices) of optimizer step ``step`` (0-based)
        for process ``rank``."""
        epoch, k = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(epoch)
        per = self.batch_size * self.world
        out: list[list[int]] = []
        for m in range(k * self.grad_accum, min((k + 1) * self.grad_accum, self.micro_per_epoch)):
            chunk = order[m * per:(m + 1) * per]
            if not chunk:
                continue
            mine = chunk[rank::self.world]
            if not mine:  # a short last chunk: this rank repeats the chunk's first example
                mine = chunk[:1]
            out.append(mine)
        return out

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch


def collate(examples: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(examples):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        labels[i, :len(lab)] = torch.tensor(lab)
        attention[i, :len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
