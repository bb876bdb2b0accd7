"""Preference training (DPO) inside our own loop, with TRL's loss.

Why not ``DPOTrainer.train()``: our loop (:mod:`llmops_desktop.finetune.train`) saves and
restores every piece of state a byte-identical resume needs (adapter, optimizer, scheduler,
RNG states, data position), stops on Cancel after the current step with a checkpoint, and
reports progress as events; ``transformers.Trainer`` owns its own loop, checkpoints and
data order. Why not a hand-written loss: TRL keeps DPO's loss, reference log-probabilities
(the base with the adapter disabled) and its fused LM head in ``DPOTrainer``. So a
``DPOTrainer`` is built once, for its tokenization (``_prepare_dataset``), its collator
(``DataCollatorForPreference``), the model patching (``add_fused_lm_head``) and its
``compute_loss``; our loop calls ``compute_loss`` on each micro-batch and owns everything
else. TRL's own per-batch metrics (reward margins, chosen/rejected log-probabilities) are
read from the trainer after each step and written to the run's ``metrics.jsonl``.

Memory: the tokenized pairs stay in TRL's Arrow table (4-8 bytes a token) and our split is
a view of it (:class:`PairRows`), never a copy as Python lists (about 36 bytes a token);
the table keeps only the three token columns once split (TRL's own loop keeps the texts
too). The reference is the base with the adapter disabled, under ``no_grad`` (TRL's).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops_desktop.errors import InvalidInputError

# TRL's metric name -> ours in metrics.jsonl (and the Fine-tune page's charts)
METRICS = {"rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
           "rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
           "logps/chosen": "logps_chosen", "logps/rejected": "logps_rejected"}
PREFERENCE_METHODS = ("dpo",)
TOKEN_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def trl_examples(rows: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
    """Canonical preference rows in TRL's form: a conversation when the prompt is one (and
    the tokenizer has a chat template), else plain text (TRL adds the EOS)."""
    chat = bool(getattr(tokenizer, "chat_template", None))
    out = []
    for i, row in enumerate(rows):
        prompt = row["prompt"]
        if isinstance(prompt, list):
            if not chat:
                prompt = "".join(f"{m['role']}: {m['content']}\n" for m in prompt) + "assistant: "
            else:
                out.append({"row": i, "prompt": prompt,
                            "chosen": [{"role": "assistant", "content": row["chosen"]}],
                            "rejected": [{"role": "assistant", "content": row["rejected"]}]})
                continue
        out.append({"row": i, "prompt": prompt, "chosen": row["chosen"],
                    "rejected": row["rejected"]})
    return out


def dpo_config(opts: Any, output_dir: Path, device: Any, **overrides: Any) -> Any:
    """The DPOConfig of a run (the benchmark gives TRL's own loop the same one)."""
    from trl import DPOConfig

    kwargs: dict[str, Any] = dict(
        output_dir=str(output_dir), per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size,
        gradient_accumulation_steps=opts.grad_accum, learning_rate=opts.lr,
        beta=opts.beta, max_length=opts.max_len, seed=opts.seed, report_to="none",
        use_cpu=getattr(device, "type", str(device)) == "cpu", save_strategy="no",
        logging_strategy="no", weight_decay=opts.weight_decay,
        max_grad_norm=opts.max_grad_norm,
        lr_scheduler_type={"cosine": "cosine", "linear": "linear",
                           "constant": "constant_with_warmup"}[opts.scheduler],
        gradient_checkpointing=opts.gradient_checkpointing, bf16=False,
        dataloader_num_workers=0, disable_tqdm=True)
    kwargs.update(overrides)
    return DPOConfig(**kwargs)


class PairRows:
    """Some rows of an Arrow dataset of tokenized pairs, as a sequence of dicts: ``rows[i]``
    is one pair, ``rows[i:j]`` a list of them (what the collator takes)."""

    def __init__(self, dataset: Any, positions: list[int]) -> None:
        self.dataset = dataset
        self.positions = positions

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self.dataset[p] for p in self.positions[index]]
        return self.dataset[self.positions[index]]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.dataset[p] for p in self.positions)


@dataclass
class PreferenceData:
    """Tokenized pairs, split as the dataset version says (the shape of ``Encoded``)."""

    train: PairRows
    validation: PairRows
    truncated: int
    nothing_to_learn: int
    validation_indices: list[int]
    split: dict[str, Any] = field(default_factory=dict)


class DPOObjective:
    """TRL's DPO loss on our batches; built by :meth:`load`."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.collator = trainer.data_collator

    @classmethod
    def load(cls, model: Any, lora_config: Any, tokenizer: Any, rows: list[dict[str, Any]],
             opts: Any, run_dir: Path, device: Any) -> DPOObjective:
        """``model`` is the base (not yet a PeftModel): TRL wraps it with ``lora_config``,
        so the reference is the base with the adapter disabled (no second copy)."""
        from datasets import Dataset
        from trl import DPOTrainer

        examples = trl_examples(rows, tokenizer)
        if not examples:
            raise InvalidInputError("The dataset has no preference pairs.")
        trainer = DPOTrainer(model=model, args=dpo_config(opts, run_dir / "trl", device),
                             train_dataset=Dataset.from_list(examples),
                             processing_class=tokenizer, peft_config=lora_config)
        return cls(trainer)

    @property
    def model(self) -> Any:
        return self.trainer.model

    def split(self, validation_indices: list[int], max_len: int) -> PreferenceData:
        """Views of TRL's tokenized table (only its token columns are kept from here on)."""
        table = self.trainer.train_dataset
        val = set(validation_indices)
        train, validation = [], []
        truncated = 0
        position = 0
        for batch in table.select_columns(["row", *TOKEN_COLUMNS]).iter(batch_size=1024):
            for row, p, c, r in zip(batch["row"], *(batch[k] for k in TOKEN_COLUMNS)):
                truncated += len(p) + max(len(c), len(r)) > max_len
                (validation if row in val else train).append(position)
                position += 1
        tokens = table.select_columns(list(TOKEN_COLUMNS))
        self.trainer.train_dataset = tokens  # the texts can go
        del table
        gc.collect()  # what loading and tokenizing left in cycles, before the first step
        return PreferenceData(PairRows(tokens, train), PairRows(tokens, validation), truncated,
                              0, sorted(val))

    def loss(self, model: Any, examples: list[dict[str, Any]], device: Any) -> tuple[Any, int]:
        """Mean DPO loss over these pairs, and the tokens they hold."""
        batch = {k: v.to(device) for k, v in self.collator(examples).items()}
        loss = self.trainer.compute_loss(model, batch)
        return loss, int(batch["attention_mask"].sum())

    def pop_metrics(self, mode: str = "train") -> dict[str, float]:
        """TRL's metrics since the last call, averaged, under our names."""
        got = self.trainer._metrics[mode]
        out = {ours: sum(got[theirs]) / len(got[theirs])
               for theirs, ours in METRICS.items() if got.get(theirs)}
        got.clear()
        return out
