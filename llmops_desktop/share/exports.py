"""Exports that other tools read: an Ollama folder and a plain Hugging Face folder.

Ollama: the GGUF and a ``Modelfile`` (FROM, TEMPLATE converted from the model's chat
template where possible — see :mod:`.chat_template` —, PARAMETER lines for context and
stop strings and, when the HF lineage has a generation config, sampling; SYSTEM and
LICENSE), for ``ollama create NAME -f Modelfile``.

Hugging Face: the artifact's files and a README.md model card whose YAML front matter
carries license, base_model, datasets, tags and quantization, for an HF artifact, a
merged fine-tune or a LoRA adapter.

Every file is copied in one pass, hashed on the way (on a second thread) and checked
against the catalog; the disk writes while the copy goes on
(:class:`~llmops_desktop.hashing.WriteBehind`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmops_desktop import __version__
from llmops_desktop.catalog import Artifact, ArtifactFile, Catalog
from llmops_desktop.catalog.catalog import utcnow
from llmops_desktop.errors import CorruptFileError, DiskFullError, InvalidInputError
from llmops_desktop.hashing import HashPipe, WriteBehind, write_all
from llmops_desktop.jobs.events import Event, Log, Progress
from llmops_desktop.share.package import artifact_root, check_space, model_card, slug, type_of

CHUNK = 8 * 1024 * 1024


def _prepare_dir(out_dir: Path) -> Path:
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists():
        if not out_dir.is_dir():
            raise InvalidInputError(f"{out_dir} is a file; give a folder for the export.")
        if any(not p.name.startswith(".") for p in out_dir.iterdir()):
            raise InvalidInputError(f"{out_dir} is not empty. Choose an empty or new folder, "
                                    "so nothing there is overwritten.")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


class _Count:
    def __init__(self, total: int) -> None:
        self.done, self.total = 0, total


def copy_verified(src: Path, dst: Path, f: ArtifactFile, count: _Count,
                  label: str) -> Iterator[Event]:
    """Copy one file (under a hidden temporary name, then renamed), checking its sha256."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.partial")
    h = hashlib.sha256()
    ok = False
    try:
        with open(src, "rb", buffering=0) as fin, open(tmp, "wb", buffering=0) as fout, \
                HashPipe(CHUNK) as pipe:
            behind = WriteBehind(fout.fileno())  # the disk writes while we copy and hash
            for chunk in pipe.chunks(fin.readinto, f.size + 1, h):
                n = write_all(fout, chunk)
                behind.wrote(n)
                count.done += n
                yield Progress(count.done, count.total, "bytes", f"copying {label}")
            behind.flush()
        if h.hexdigest() != f.sha256:
            raise CorruptFileError(f"{label} no longer matches the sha256 the catalog recorded; "
                                   "the stored copy changed. Import the model again.")
        os.replace(tmp, dst)
        ok = True
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise DiskFullError(f"The disk filled up while exporting ({exc.strerror}).") from None
        raise
    finally:
        if not ok:
            tmp.unlink(missing_ok=True)


def repo_id_of(artifact: Artifact) -> str | None:
    """The Hugging Face repo an artifact came from, when its source says so."""
    src = artifact.source
    if src.startswith("hub:"):
        url = src[4:].rsplit("@", 1)[0]
        parts = url.rstrip("/").split("/")
        return "/".join(parts[-2:]) if len(parts) >= 2 else None
    if src.startswith("hf-cache:"):
        return src[len("hf-cache:"):].rsplit("@", 1)[0] or None
    base = artifact.metadata.get("base_model")
    return str(base) if isinstance(base, str) and base else None


# ---- Ollama ------------------------------------------------------------------------------------

def _gguf_tokens(path: Path) -> tuple[str, str]:
    """(BOS, EOS) token strings of a GGUF, or empty strings."""
    try:
        from gguf import GGUFReader

        reader = GGUFReader(str(path))
        tokens = reader.fields.get("tokenizer.ggml.tokens")

        def token(key: str) -> str:
            fld = reader.fields.get(key)
            if fld is None or tokens is None:
                return ""
            idx = int(fld.parts[fld.data[0]][0])
            return bytes(tokens.parts[tokens.data[idx]]).decode("utf-8", "replace")

        return token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id")
    except Exception:  # noqa: BLE001 - no stop strings is acceptable
        return "", ""


def _generation_config(catalog: Catalog, artifact: Artifact) -> dict[str, Any]:
    for a in [artifact, *catalog.ancestors(artifact.id)]:
        if a.kind in ("hf", "lora") and (a.path / "generation_config.json").is_file():
            try:
                return json.loads((a.path / "generation_config.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
    return {}


def _triple(text: str, what: str) -> str:
    if '"""' in text:
        raise InvalidInputError(f"The {what} contains three double quotes in a row, which a "
                                "Modelfile cannot hold. Edit it and export again.")
    return f'"""{text}"""'


def modelfile_text(catalog: Catalog, artifact: Artifact, gguf_name: str, *,
                   system: str | None = None) -> tuple[str, str]:
    """The Modelfile's text, and a note on how the chat template fared."""
    from llmops_desktop.formats.gguf_meta import read_gguf_info
    from llmops_desktop.share.chat_template import convert_chat_template

    info = read_gguf_info(artifact.path)
    template = info.metadata.get("tokenizer.chat_template")
    bos, eos = _gguf_tokens(artifact.path)
    conv = convert_chat_template(template if isinstance(template, str) else "",
                                 bos_token=bos, eos_token=eos)
    lines = [f"# Modelfile for {artifact.ref} ({type_of(artifact)}), written by LLMOps Desktop "
             f"{__version__} on {utcnow()[:10]}.",
             f"# Create the model with: ollama create {slug(artifact.model_name).lower()} "
             "-f Modelfile",
             f"# Chat template: {conv.note}.",
             f"FROM ./{gguf_name}"]
    if conv.go_template is not None:
        lines.append(f"TEMPLATE {_triple(conv.go_template, 'chat template')}")
    ctx = info.context_length
    if ctx:
        lines.append(f"PARAMETER num_ctx {min(int(ctx), 131072)}")
    for stop in conv.stops:
        lines.append(f'PARAMETER stop "{stop}"')
    gen = _generation_config(catalog, artifact)
    if gen:
        if gen.get("do_sample") is False:
            lines.append("PARAMETER temperature 0")
        else:
            for key, name in (("temperature", "temperature"), ("top_p", "top_p"),
                              ("top_k", "top_k"), ("repetition_penalty", "repeat_penalty")):
                if isinstance(gen.get(key), (int, float)) and not isinstance(gen.get(key), bool):
                    lines.append(f"PARAMETER {name} {gen[key]}")
    if system:
        lines.append(f"SYSTEM {_triple(system, 'system prompt')}")
    license = artifact.license or next(
        (a.license for a in catalog.ancestors(artifact.id) if a.license), "")
    if license:
        lines.append(f"LICENSE {_triple(license, 'license')}")
    return "\n".join(lines) + "\n", conv.note


def export_ollama(catalog: Catalog, artifact: Artifact, out_dir: Path, *,
                  system: str | None = None) -> Iterator[Event]:
    if artifact.kind != "gguf":
        ggufs = [d for d in catalog.descendants(artifact.id) if d.kind == "gguf"]
        hint = (f" Export one of its GGUF variants instead: "
                f"{', '.join(d.ref + ' (' + type_of(d) + ')' for d in ggufs[:5])}."
                if ggufs else f" Quantize it first ('llmops quantize {artifact.ref} --to "
                              "Q4_K_M') and export the GGUF.")
        raise InvalidInputError(f"Ollama runs GGUF files; {artifact.ref} is a {artifact.kind} "
                                "artifact." + hint)
    files = catalog.files(artifact.id)
    out_dir = _prepare_dir(out_dir)
    total = sum(f.size for f in files)
    check_space(out_dir, total, "the Ollama export")
    text, note = modelfile_text(catalog, artifact, files[0].relpath, system=system)
    count = _Count(total)
    yield Progress(0, total, "bytes", f"copying {files[0].relpath}")
    for f in files:
        yield from copy_verified(artifact_root(artifact) / f.relpath, out_dir / f.relpath, f,
                                 count, f.relpath)
    (out_dir / "Modelfile").write_text(text, encoding="utf-8")
    yield Log(f"wrote {out_dir / 'Modelfile'} ({note})")


# ---- Hugging Face ------------------------------------------------------------------------------

def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    import yaml

    if text.startswith("---"):
        end = text.find("\n---", 3)
        if end != -1:
            try:
                data = yaml.safe_load(text[3:end]) or {}
            except yaml.YAMLError:
                data = {}
            body = text[end + 4:].lstrip("\n")
            return (data if isinstance(data, dict) else {}), body
    return {}, text


def model_card_text(catalog: Catalog, artifact: Artifact) -> str:
    """README.md with YAML front matter (license, base_model, datasets, tags, quantization)
    and a provenance section: lineage, evaluations and every file's sha256."""
    import yaml

    front, body = _split_front_matter(model_card(catalog, artifact) or "")
    ancestors = catalog.ancestors(artifact.id)
    if artifact.license:
        front["license"] = artifact.license
    base = next((r for r in (repo_id_of(a) for a in ancestors) if r), None)
    if base is None and ancestors:
        base = ancestors[-1].model_name
    if base and ancestors:
        front["base_model"] = base
        relation = ("adapter" if artifact.kind == "lora" else
                    "quantized" if artifact.metadata.get("quantization") else "finetune")
        front["base_model_relation"] = relation
    datasets: list[str] = list(front.get("datasets") or [])
    for a in [artifact, *ancestors]:
        job = catalog.job(a.job_id) if a.job_id else None
        for params in (a.params, job.params if job else {}):
            for k, v in params.items():
                if k in ("dataset", "dataset_name", "dataset_path") and isinstance(v, str) \
                        and v and Path(v).name not in datasets:
                    datasets.append(Path(v).name)
    if datasets:
        front["datasets"] = datasets
    tags = [str(t) for t in front.get("tags") or []]
    quant = artifact.metadata.get("quantization")
    for t in ["llmops-desktop", *artifact.tags, *([str(quant)] if quant else [])]:
        if t not in tags:
            tags.append(t)
    front["tags"] = tags
    if quant:
        front["quantization"] = str(quant)
    front.setdefault("library_name", "peft" if artifact.kind == "lora" else "transformers")
    lines = ["", "## Provenance (LLMOps Desktop)", "",
             f"Exported from {artifact.ref} ({artifact.kind}, created {artifact.created_at[:10]}) "
             f"by LLMOps Desktop {__version__} on {utcnow()[:10]}.", ""]
    if ancestors:
        lines.append("Lineage, nearest first:")
        lines += [f"- {a.ref} ({a.kind}, {type_of(a)}){' from ' + a.source if a.source else ''}"
                  for a in ancestors]
        lines.append("")
    evals = catalog.evaluations(artifact.id)
    if evals:
        lines += ["| metric | value | dataset |", "|---|---|---|"]
        lines += [f"| {e.metric} | {e.value:.4f} | {e.dataset} |" for e in evals]
        lines.append("")
    lines += ["| file | bytes | sha256 |", "|---|---|---|"]
    lines += [f"| {f.relpath} | {f.size} | `{f.sha256}` |" for f in catalog.files(artifact.id)
              if f.relpath != "README.md"]
    body = body.rstrip() or f"# {artifact.model_name}\n\n{artifact.description}".rstrip()
    return ("---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n\n"
            + body + "\n" + "\n".join(lines) + "\n")


def export_hf(catalog: Catalog, artifact: Artifact, out_dir: Path) -> Iterator[Event]:
    if artifact.kind not in ("hf", "lora"):
        hf = [a for a in catalog.ancestors(artifact.id) if a.kind == "hf"]
        hint = f" Export its Hugging Face parent {hf[0].ref} instead." if hf else ""
        raise InvalidInputError(f"{artifact.ref} is a {artifact.kind} artifact, not a Hugging "
                                f"Face folder.{hint} For Ollama use --format ollama.")
    files = [f for f in catalog.files(artifact.id) if f.relpath != "README.md"]
    out_dir = _prepare_dir(out_dir)
    total = sum(f.size for f in files)
    check_space(out_dir, total, "the Hugging Face export")
    card = model_card_text(catalog, artifact)
    count = _Count(total)
    yield Progress(0, total, "bytes", "copying files")
    for f in files:
        yield from copy_verified(artifact_root(artifact) / f.relpath, out_dir / f.relpath, f,
                                 count, f.relpath)
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    yield Log(f"wrote {len(files)} files and README.md to {out_dir}")
