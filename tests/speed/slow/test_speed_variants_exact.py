"""The int8 variants against float32: row-wise int8 is exact on representable values, w8a8 stays close without
touching the reference model, the fused GLU equals the unfused Llama MLP, and from_pretrained's dtype auto and w8a8."""

from __future__ import annotations

import torch

from finsent.core.classify import FinSentClassifier
from finsent.core.quant import RowwiseInt8GLU, RowwiseInt8Linear, _glu, _kernel
from finsent.speed.variants import build

TEXTS = ["$AAPL beats estimates", "Oil slides as inventories build up more than expected this week",
         "Board meets Thursday", "Acme cuts guidance, shares fall 12% in early trading on weak demand", "Hold"]


def test_rowwise_int8_linear_is_exact_on_representable_values():
    """Weights and inputs that are exact multiples of their scales come out exactly; the bias is added."""
    linear = torch.nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[127.0, -1, 0, 2], [0, 0, 0, 0.5], [-63.5, 1, 2, 3]]))
        linear.bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    q = RowwiseInt8Linear(linear)
    assert q.weight_t.dtype == torch.int8 and q.weight_t.shape == (4, 3)
    torch.testing.assert_close(q.scale, torch.tensor([1.0, 0.5 / 127, 63.5 / 127]))
    x = torch.tensor([[127.0, 0, -127, 1], [2.0, 2, 2, 2]])
    torch.testing.assert_close(q(x), linear(x).detach(), atol=1e-4, rtol=1e-5)
    assert q(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_w8a8_close_to_float32_and_reference_untouched(clf):
    before = {k: v.clone() for k, v in clf.model.state_dict().items()}
    cache = {}
    w8a8 = build("w8a8", clf, torch.float32, cache)
    packed = build("w8a8-packed", clf, torch.float32, cache)
    assert packed.model is w8a8.model  # a packed variant reuses its base variant's weights
    layers = clf.model.config.num_hidden_layers
    # per layer: q+k+v as one GEMM, o, then the MLP as one fused gate+up GEMM and down
    assert sum(isinstance(m, RowwiseInt8Linear) for m in w8a8.model.model.modules()) == 4 * layers
    assert sum(isinstance(m, RowwiseInt8GLU) for m in w8a8.model.model.modules()) == layers
    assert type(w8a8.model.lm_head) is torch.nn.Linear  # the vocabulary projection stays float
    ref = clf.label_logprobs(TEXTS, "3", kind="tweet")
    assert (w8a8.label_logprobs(TEXTS, "3", kind="tweet") - ref).abs().max() < 0.05
    lm = build("w8a8-lm", clf, torch.float32, cache)
    assert isinstance(lm.model.lm_head, RowwiseInt8Linear) and type(lm.model.model.embed_tokens) is torch.nn.Embedding
    assert (lm.label_logprobs(TEXTS, "3", kind="tweet") - ref).abs().max() < 0.1
    after = clf.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert type(clf.model.lm_head) is torch.nn.Linear


def test_fused_glu_equals_the_unfused_llama_mlp_math():
    """The compiled kernel computes what the eager one does; both equal the MLP up to int8 rounding."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    torch.manual_seed(0)
    mlp = LlamaMLP(LlamaConfig(hidden_size=32, intermediate_size=48))
    fused = RowwiseInt8GLU(mlp)
    x = torch.randn(5, 32)
    with torch.inference_mode():
        eager = _glu(x, fused.gate_up.weight_t, fused.gate_up.scale, fused.down.weight_t, fused.down.scale)
        torch.testing.assert_close(fused(x[None])[0], eager)
        assert _kernel("glu") is not _glu  # compiled here (a C++ compiler is part of the dev set-up)
        reference = mlp(x)
    assert (eager - reference).abs().max() < 0.02 * reference.abs().max()


def test_from_pretrained_dtype_auto_and_w8a8(tiny_llama_dir, monkeypatch):
    from finsent.core import precision

    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: "AMX")
    monkeypatch.setattr(precision, "measure_cpu_dtypes", lambda h, i: {"float32": 1.0, "bfloat16": 9.0})
    auto = FinSentClassifier.from_pretrained(str(tiny_llama_dir), dtype="auto", device="cpu")
    assert auto.dtype == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_bf16_feature", lambda: None)
    assert FinSentClassifier.from_pretrained(str(tiny_llama_dir), dtype="auto").dtype == torch.float32
    w8a8 = FinSentClassifier.from_pretrained(str(tiny_llama_dir), quantize="w8a8")
    assert isinstance(w8a8.model.model.layers[0].mlp, RowwiseInt8GLU)
