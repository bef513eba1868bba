"""Row-wise int8 label scoring ("w8a8"): int8 weights per output channel, int8 activations per token.

``torch.ao``'s dynamic int8 (``quantize="int8"``) gives each weight matrix one scale and each
activation matrix one scale, so one outlier channel or one outlier token coarsens every other value
of the matrix: on the tuned 135M release it changed 8 % of labels. Here every output channel of a
weight has its own scale, and every token (row) of an activation gets its own scale, computed per
call; the product runs as an int8 x int8 -> int32 GEMM (``torch._int_mm``: VNNI on x86 CPUs) and is
rescaled by (token scale x channel scale). Everything that is not a decoder Linear (embeddings,
norms, attention, the LM head) stays in the model's float dtype (bfloat16 where the CPU runs it
natively), so the vocabulary log-softmax that scores the labels is not quantized.
"""

from __future__ import annotations

import torch
from torch import nn


class RowwiseInt8Linear(nn.Module):
    """``y = x @ W.T + b`` with W as int8 [in, out] plus a float scale per output channel."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [out]
        q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        # [in, out] contiguous: the layout torch._int_mm's second operand is fastest in on CPU (measured).
        self.register_buffer("weight_t", q.t().contiguous())
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).float()
        x_scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0  # [M, 1]: one scale per token
        q = torch.round(rows / x_scale).clamp_(-127, 127).to(torch.int8)
        y = torch._int_mm(q, self.weight_t).float() * x_scale * self.scale  # int32 [M, out] -> float
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel x per token"


def quantize_rowwise_int8(model: nn.Module) -> nn.Module:
    """Replace every Linear of the decoder (not the LM head) by a ``RowwiseInt8Linear``, in place."""
    decoder = getattr(model, model.base_model_prefix)
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("quantize='w8a8' runs on CPU only (torch._int_mm through oneDNN)")
    for parent in list(decoder.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, RowwiseInt8Linear(child))
    return model
