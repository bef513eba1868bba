"""The fast scoring variants of ``finsent bench``: packing, w8a8, bf16 copies, dtype auto (no timing assertions).

Run: ``.venv/bin/pytest tests/speed/test_speed_variants.py``.
"""

from __future__ import annotations

import pytest
import torch

from finsent.core.classify import FinSentClassifier
from finsent.core.quant import RowwiseInt8Linear
from finsent.speed.packing import PackedClassifier, _pack
from finsent.speed.quality import _admissible
from finsent.speed.variants import build, converted_copy, unavailable

TEXTS = ["$AAPL beats estimates", "Oil slides as inventories build up more than expected this week",
         "Board meets Thursday", "Acme cuts guidance, shares fall 12% in early trading on weak demand", "Hold"]


@pytest.mark.parametrize("scheme", ["3", "7"])
def test_packed_rows_score_like_one_text_per_row(clf, scheme):
    """Block-diagonal mask + restarted positions: the same log-probabilities as the one-row-per-text scorer."""
    reference = clf.label_logprobs(TEXTS, scheme, kind="tweet", batch_size=5)
    for capacity in (1, 40, 4096):  # every text alone, a few per row, all in one row
        packed = PackedClassifier.wrap(clf, capacity).label_logprobs(TEXTS, scheme, kind="tweet", batch_size=5)
        torch.testing.assert_close(packed, reference, atol=2e-5, rtol=0)


def test_first_fit_decreasing_packing():
    assert _pack([5, 3, 9, 4], 10) == [[2], [0, 3], [1]]
    assert _pack([12, 2], 10) == [[0], [1]]  # a text longer than a row gets a row of its own
    assert sorted(i for row in _pack([3] * 7, 9) for i in row) == list(range(7))


def test_bf16_copy_is_a_copy_with_tied_weights(clf):
    copy = converted_copy(clf.model, torch.bfloat16)
    assert {p.dtype for p in copy.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in clf.model.parameters()} == {torch.float32}
    assert copy.lm_head.weight is copy.model.embed_tokens.weight  # still tied
    assert torch.equal(copy.lm_head.weight.float(), clf.model.lm_head.weight.to(torch.bfloat16).float())


def test_dtype_auto_needs_the_instructions_and_a_faster_measurement(monkeypatch):
    from transformers import LlamaConfig

    from finsent.core import precision

    config = LlamaConfig(hidden_size=64, intermediate_size=128)
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: None)
    assert precision.auto_dtype("cpu", config)[0] == torch.float32
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: "AVX-512 BF16")
    monkeypatch.setattr(precision, "measure_cpu_dtypes", lambda h, i: {"float32": 100.0, "bfloat16": 400.0})
    dtype, why = precision.auto_dtype("cpu", config)
    assert dtype == torch.bfloat16 and "400 GFLOP/s in bfloat16, 100 in float32" in why
    monkeypatch.setattr(precision, "measure_cpu_dtypes", lambda h, i: {"float32": 100.0, "bfloat16": 110.0})
    assert precision.auto_dtype("cpu", config)[0] == torch.float32  # flags alone are not enough
    assert unavailable("bf16-packed", torch.device("cpu"), torch.float32)
    assert unavailable("w8a8", torch.device("cpu"), torch.float32) is None


def test_only_exact_or_measured_rows_within_half_a_point_can_be_best():
    assert _admissible({"exact": True})
    assert not _admissible({"exact": False})  # fast but unmeasured
    assert _admissible({"exact": False, "accuracy_delta": -0.005})
    assert not _admissible({"exact": False, "accuracy_delta": -0.0051})
    assert _admissible({"exact": False, "accuracy_delta": 0.01})


def test_fused_norm_is_llama_rms_norm():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    from finsent.core.quant import _fused_norm

    norm = LlamaRMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2, 16))
    x = torch.randn(3, 7, 16, dtype=torch.bfloat16)
    with torch.inference_mode():
        torch.testing.assert_close(_fused_norm(norm, x), norm(x), atol=1e-2, rtol=1e-2)  # bf16: rounding only
        x32 = x.float()
        torch.testing.assert_close(_fused_norm(norm, x32), norm(x32))


def test_card_speed_table_shows_each_rows_accuracy_cost():
    from finsent.hub.card import speed_cost

    assert speed_cost({"mode": "generate", "exact": True}) == "–"
    assert speed_cost({"mode": "score", "exact": True}) == "exact"
    assert speed_cost({"mode": "score", "exact": False}) == "not measured"
    assert speed_cost({"mode": "score", "dtype": "float32"}) == "exact"  # a speed.json from before `exact`
    row = {"mode": "score", "exact": False, "accuracy_delta": -0.0042, "label_agreement": 0.9812}
    assert speed_cost(row) == "-0.42 pt, 98.1 % same label"


def test_fused_qkv_parts_equal_three_separate_int8_projections():
    """One int8 GEMM for q, k and v gives exactly what three do (same per-token scales), in any call order."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaAttention

    from finsent.core.quant import RowwiseInt8QKV, _QKVPart

    torch.manual_seed(0)
    attention = LlamaAttention(LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2), 0)
    separate = [RowwiseInt8Linear(getattr(attention, n)) for n in ("q_proj", "k_proj", "v_proj")]
    qkv = RowwiseInt8QKV(attention)
    parts = [_QKVPart(qkv, i) for i in range(3)]
    x = torch.randn(2, 5, 32)
    with torch.inference_mode():
        for order in ([0, 1, 2], [2, 0, 1]):
            for i in order:
                assert torch.equal(parts[i](x), separate[i](x))
            assert qkv._input is None  # nothing kept once all three were served
    assert [p.out_features for p in parts] == [32, 16, 16]


def test_grouped_attention_scores_like_sdpa(clf):
    """Exact in float32 (up to GEMM rounding), plain and packed, with the prefix cache's causal pass too."""
    from transformers import AttentionInterface

    from finsent.core.precision import GROUPED, grouped_attention, use_cpu_bf16_attention

    AttentionInterface.register(GROUPED, grouped_attention)
    grouped = FinSentClassifier(converted_copy(clf.model, torch.float32), clf.tokenizer)
    grouped.model.set_attn_implementation(GROUPED)
    assert clf.model.config._attn_implementation == "sdpa"  # the reference's copy is its own
    for scheme in ("3", "7"):
        reference = clf.label_logprobs(TEXTS, scheme, kind="tweet")
        torch.testing.assert_close(grouped.label_logprobs(TEXTS, scheme, kind="tweet"), reference, atol=2e-5, rtol=0)
        packed = PackedClassifier.wrap(grouped, 40).label_logprobs(TEXTS, scheme, kind="tweet")
        torch.testing.assert_close(packed, reference, atol=2e-5, rtol=0)
    assert not use_cpu_bf16_attention(clf.model)  # float32: left as it is
    bf16 = build("bf16", clf, torch.bfloat16, {})
    assert bf16.model.config._attn_implementation == GROUPED


def test_the_bench_refuses_variants_that_would_not_fit_in_memory():
    from finsent.speed.variants import BenchMemoryError, check_memory

    check_memory(1000, ["float32", "bf16", "w8a8-packed"])
    with pytest.raises(BenchMemoryError, match=r"need about .* GiB, and .* GiB is available"):
        check_memory(10**13, ["float32", "int8"])
