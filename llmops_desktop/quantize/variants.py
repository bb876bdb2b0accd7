"""An artifact's variants side by side: type, size, bits per weight, perplexity, change."""

from __future__ import annotations

from typing import Any

from llmops_desktop.catalog import Artifact, Catalog


def _type_of(a: Artifact) -> str:
    md = a.metadata
    return str(md.get("quantization") or a.params.get("target") or md.get("dtype") or a.kind)


def _perplexity(catalog: Catalog, artifact_id: int) -> tuple[float | None, str]:
    for ev in reversed(catalog.evaluations(artifact_id)):
        if ev.metric == "perplexity":
            return ev.value, ev.dataset_sha256
    return None, ""


def variant_table(catalog: Catalog, artifact_id: int) -> list[dict[str, Any]]:
    """This artifact and everything derived from it, with figures comparable to its own
    (perplexity change only where both were measured on the same text)."""
    root = catalog.artifact(artifact_id)
    rows = []
    base_ppl, base_text = _perplexity(catalog, root.id)
    for a in [root, *catalog.descendants(root.id)]:
        ppl, text = _perplexity(catalog, a.id)
        params = a.metadata.get("parameters") or 0
        weights = sum(f.size for f in catalog.files(a.id)
                      if f.relpath.endswith((".safetensors", ".gguf"))) or a.size_bytes
        bpw = weights * 8 / params if params else None
        change = (ppl / base_ppl - 1) if (ppl is not None and base_ppl and text == base_text) else None
        rows.append({"artifact_id": a.id, "ref": a.ref, "type": _type_of(a), "kind": a.kind,
                     "parent_id": a.parent_id, "size_bytes": a.size_bytes,
                     "bits_per_weight": round(bpw, 3) if bpw else None, "perplexity": ppl,
                     "perplexity_change": change})
    return rows
