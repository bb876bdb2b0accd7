"""An artifact's variants side by side: type, size, bits per weight, perplexity, change,
and each quantized variant's KL divergence and top-1 agreement against its parent."""

from __future__ import annotations

from typing import Any

from llmops_desktop.catalog import Artifact, Catalog
from llmops_desktop.quantize.kl import KL_METRIC, TOP1_METRIC


def _type_of(a: Artifact) -> str:
    md = a.metadata
    return str(md.get("quantization") or a.params.get("target") or md.get("dtype") or a.kind)


def _latest(catalog: Catalog, artifact_id: int) -> dict[str, Any]:
    """The latest evaluation of each metric of the artifact."""
    return {ev.metric: ev for ev in catalog.evaluations(artifact_id)}


def _kl_figures(evals: dict[str, Any]) -> dict[str, Any]:
    kl, top1 = evals.get(KL_METRIC), evals.get(TOP1_METRIC)
    params = kl.params if kl is not None else {}
    return {"kl_divergence": kl.value if kl is not None else None,
            "kl_ci95": params.get("kl_ci95"), "kl_median": params.get("kl_median"),
            "kl_p99": params.get("kl_p99"), "kl_tokens": params.get("tokens"),
            "kl_reference": params.get("reference"),
            "top1_agreement": top1.value if top1 is not None else None,
            "top1_ci95": top1.params.get("top1_ci95") if top1 is not None else None}


def variant_table(catalog: Catalog, artifact_id: int) -> list[dict[str, Any]]:
    """This artifact and everything derived from it, with figures comparable to its own
    (perplexity change only where both were measured on the same text); KL divergence
    and top-1 agreement as measured against the parent of the quantize job that made
    the variant (``kl_reference``)."""
    root = catalog.artifact(artifact_id)
    rows = []
    base = _latest(catalog, root.id).get("perplexity")
    base_ppl, base_text = (base.value, base.dataset_sha256) if base else (None, "")
    for a in [root, *catalog.descendants(root.id)]:
        evals = _latest(catalog, a.id)
        ppl = evals["perplexity"].value if "perplexity" in evals else None
        text = evals["perplexity"].dataset_sha256 if "perplexity" in evals else ""
        params = a.metadata.get("parameters") or 0
        weights = sum(f.size for f in catalog.files(a.id)
                      if f.relpath.endswith((".safetensors", ".gguf"))) or a.size_bytes
        bpw = weights * 8 / params if params else None
        change = (ppl / base_ppl - 1) if (ppl is not None and base_ppl and text == base_text) else None
        rows.append({"artifact_id": a.id, "ref": a.ref, "type": _type_of(a), "kind": a.kind,
                     "parent_id": a.parent_id, "size_bytes": a.size_bytes,
                     "bits_per_weight": round(bpw, 3) if bpw else None, "perplexity": ppl,
                     "perplexity_change": change, **_kl_figures(evals)})
    return rows
