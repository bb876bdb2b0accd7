"""A tiny random-weight Llama made on the spot, so every step can be tried offline.

The same code makes the test suite's model. Its tokenizer is a SentencePiece
model trained here (byte fallback, identity normalization, whitespace kept),
saved as ``tokenizer.model`` beside ``tokenizer.json``: with that file llama.cpp's
converter carries real token scores and llama.cpp tokenizes as the model does.
Every linear layer's output size is a multiple of 32, so bitsandbytes 4-bit works.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from llmops_desktop.jobs.events import Event, Log, Progress, Result
from llmops_desktop.fields import spec
from llmops_desktop.jobs.tasks import JobContext, JobRequest, register_task

DEMO_NAME = "demo-tiny-llama"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

_WORDS = ("model data weights local machine team share quantize serve train evaluate token "
          "layer attention context memory disk file package sign verify catalog import export "
          "request reply latency speed graph chart window button page engine server client "
          "colleague network offline mirror cache version lineage adapter dataset loss step "
          "batch epoch learning rate gradient checkpoint resume cancel progress job").split()
_SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "LLMOps Desktop keeps every model on your own machine.",
    "Import a model, quantize it, fine-tune it and serve it without the cloud.",
    "Every file has its sha256, and a package refuses to import if one byte differs.",
    "Numbers like 1234, 3.14159 and 2026-11-22 appear in text too.",
    "Punctuation: commas, semicolons; colons: quotes \"like this\" and (parentheses)!",
    "    Indented code: def add(a, b):\n        return a + b",
    "Ünïcödé wörds, naïve café, 東京, Привет, and emoji 🙂 use byte fallback.",
]


def _corpus(seed: int, lines: int = 2000) -> str:
    rng = random.Random(seed)
    out = list(_SENTENCES) * 8
    for _ in range(lines):
        n = rng.randint(4, 14)
        words = [rng.choice(_WORDS) for _ in range(n)]
        words[0] = words[0].capitalize()
        out.append(" ".join(words) + rng.choice([".", ".", "?", "!", ","]))
    return "\n".join(out) + "\n"


def train_tokenizer(workdir: Path, *, seed: int = 0, vocab_size: int = 512) -> Path:
    """Train a SentencePiece BPE model with byte fallback; returns tokenizer.model."""
    import sentencepiece as spm

    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus.txt"
    corpus.write_text(_corpus(seed), encoding="utf-8")
    prefix = workdir / "sp"
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(prefix), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_digits=True, character_coverage=1.0, hard_vocab_limit=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1,
        minloglevel=2)
    model_file = prefix.with_suffix(".model")
    # The model records the training paths; drop them so the same seed gives the same bytes.
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_file.read_bytes())
    proto.trainer_spec.ClearField("input")
    proto.trainer_spec.model_prefix = "demo"
    model_file.write_bytes(proto.SerializeToString())
    return model_file


def make_demo_model(dest: Path, *, seed: int = 0, hidden_size: int = 64,
                    num_layers: int = 2, intermediate_size: int = 128,
                    vocab_size: int = 512, context_length: int = 512) -> Path:
    """Write a complete Hugging Face model folder to ``dest`` (which must not exist)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    work = dest.parent / f".{dest.name}-tok"
    try:
        sp_model = train_tokenizer(work, seed=seed, vocab_size=vocab_size)
        tok_dir = work / "tok"
        tok_dir.mkdir()
        shutil.copy(sp_model, tok_dir / "tokenizer.model")
        tokenizer = LlamaTokenizer.from_pretrained(str(tok_dir))
        tokenizer.chat_template = CHAT_TEMPLATE
        tokenizer.model_max_length = context_length
        tokenizer.save_pretrained(str(dest))
        shutil.copy(sp_model, dest / "tokenizer.model")
        real_vocab = len(tokenizer)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    padded_vocab = (real_vocab + 31) // 32 * 32
    heads = max(1, hidden_size // 16)
    config = LlamaConfig(
        vocab_size=padded_vocab, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2), max_position_embeddings=context_length,
        rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
        torch_dtype="float32")
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.do_sample = False
    model.save_pretrained(str(dest), safe_serialization=True)
    (dest / "README.md").write_text(
        "---\nlicense: apache-2.0\nlibrary_name: transformers\ntags:\n- llmops-demo\n---\n\n"
        f"# {DEMO_NAME}\n\n"
        "A tiny Llama with random weights and a SentencePiece tokenizer, made on this machine "
        "by LLMOps Desktop so every step (quantize, fine-tune, serve, share) can be tried with "
        "no network. It produces gibberish by design.\n", encoding="utf-8")
    with open(dest / "config.json", encoding="utf-8") as fh:
        json.load(fh)  # it must be valid JSON: transformers wrote it
    return dest


@dataclass(frozen=True)
class DemoRequest(JobRequest):
    """Make the tiny demo model on the spot and import it."""

    kind: ClassVar[str] = "demo"

    seed: int = spec(0, "Seed of the random weights: the same seed gives the same model.",
                     label="Seed", minimum=0, maximum=2**31 - 1)
    name: str = spec(DEMO_NAME, "Model name in the catalog.", label="Name", exposed=False)


@register_task("demo", DemoRequest)
def demo_task(ctx: JobContext, request: DemoRequest) -> Iterator[Event]:
    """Make the demo model in the job's staging folder and import it by renaming."""
    seed, name = request.check().seed, request.name
    from llmops_desktop.errors import DuplicateArtifactError
    from llmops_desktop.importer import import_model, inspect_source

    yield Progress(0, 3, "steps", "training a tokenizer and making random weights")
    src = make_demo_model(ctx.staging_dir / "demo-src", seed=seed)
    yield Progress(1, 3, "steps", "checking the model folder")
    source = inspect_source(src, name=name)
    source = type(source)(**{**source.__dict__, "source": f"demo:seed={seed}"})
    yield Progress(2, 3, "steps", "registering")
    try:
        yield from import_model(ctx.catalog, source, staging=ctx.staging_dir / "import",
                                job_id=ctx.job_id, move=True, tags=("demo",),
                                params={"seed": seed})
    except DuplicateArtifactError as exc:
        existing = ctx.catalog.artifact(exc.existing_id) if exc.existing_id else None
        if existing is None:
            raise
        yield Log(f"the demo model with seed {seed} is already in the catalog as {existing.ref}")
        yield Result({"artifact_id": existing.id, "ref": existing.ref, "path": str(existing.path),
                      "size_bytes": existing.size_bytes, "existing": True})
