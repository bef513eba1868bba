"""Row-wise int8 label scoring ("w8a8"): int8 weights per output channel, int8 activations per token.

``torch.ao``'s dynamic int8 (``quantize="int8"``) gives each weight matrix one scale and each
activation matrix one scale, so one outlier channel or one outlier token coarsens every other value
of the matrix (``finsent bench-quality`` measures the labels it changes). Here every output channel of a
weight has its own scale, and every token (row) of an activation gets its own scale, computed per
call; the product runs as an int8 x int8 -> int32 GEMM (``torch._int_mm``: VNNI on x86 CPUs) and is
rescaled by (token scale x channel scale). Everything that is not a decoder Linear (embeddings,
norms, attention, the LM head) stays in the model's float dtype (bfloat16 where the CPU runs it
natively), so the vocabulary log-softmax that scores the labels is not quantized.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import nn

logger = logging.getLogger(__name__)


class RowwiseInt8Linear(nn.Module):
    """``y = x @ W.T + b`` with W as int8 [in, out] plus a float scale per output channel."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # [out]
        q = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        # [in, out] contiguous: the layout torch._int_mm's second operand is fastest in on CPU.
        self.register_buffer("weight_t", q.t().contiguous())
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _kernel("linear")(x.reshape(-1, self.in_features), self.weight_t, self.scale)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per channel x per token"


class RowwiseInt8GLU(nn.Module):
    """A Llama MLP, ``down(silu(gate(x)) * up(x))``, with gate and up as one int8 GEMM (x quantized once)
    and the dequantization, SiLU, product and requantization fused around the two GEMMs."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        gate, up = mlp.gate_proj, mlp.up_proj
        fused = nn.Linear(gate.in_features, 2 * gate.out_features, bias=False)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([gate.weight, up.weight]).float())
        self.gate_up = RowwiseInt8Linear(fused)
        self.down = RowwiseInt8Linear(mlp.down_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _kernel("glu")(x.reshape(-1, self.gate_up.in_features), self.gate_up.weight_t, self.gate_up.scale,
                           self.down.weight_t, self.down.scale)
        return y.reshape(*x.shape[:-1], self.down.out_features)


class RowwiseInt8QKV(nn.Module):
    """An attention's q, k and v projections as one int8 GEMM: the input is quantized once (its per-token
    scales are the same for the three), the product has 3 x more columns. Installed as the attention's
    ``qkv_proj``; its ``q_proj`` / ``k_proj`` / ``v_proj`` become ``_QKVPart`` views that attention calls as
    before, in any order: the first part called with a new input runs the GEMM, the other two reuse it."""

    def __init__(self, attention: nn.Module):
        super().__init__()
        parts = [attention.q_proj, attention.k_proj, attention.v_proj]
        fused = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts), bias=False)
        with torch.no_grad():
            fused.weight.copy_(torch.cat([p.weight for p in parts]).float())
        self.linear = RowwiseInt8Linear(fused)
        self.sizes = [p.out_features for p in parts]
        self._input, self._outputs, self._served = None, None, 0

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        if x is not self._input:
            self._input, self._outputs, self._served = x, self.linear(x).split(self.sizes, dim=-1), 0
        out = self._outputs[index]
        self._served += 1
        if self._served == len(self.sizes):  # all three served: keep no activations between calls
            self._input, self._outputs = None, None
        return out


class _QKVPart(nn.Module):
    def __init__(self, qkv: RowwiseInt8QKV, index: int):
        super().__init__()
        object.__setattr__(self, "qkv", qkv)  # not a submodule: the weights belong to the attention's qkv_proj
        self.index = index
        self.in_features, self.out_features = qkv.linear.in_features, qkv.sizes[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.qkv.part(x, self.index)


def _quantize_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 values and the float scale of every row (symmetric, absmax / 127)."""
    scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
    return torch.round(rows / scale).clamp(-127, 127).to(torch.int8), scale


def _linear(x, weight_t, scale):
    q, x_scale = _quantize_rows(x.float())
    return (torch._int_mm(q, weight_t).float() * x_scale * scale).to(x.dtype)


def _glu(x, gate_up_t, gate_up_scale, down_t, down_scale):
    q, x_scale = _quantize_rows(x.float())
    gate, up = (torch._int_mm(q, gate_up_t).float() * x_scale * gate_up_scale).chunk(2, dim=1)
    h = torch.nn.functional.silu(gate) * up
    q, h_scale = _quantize_rows(h)
    return (torch._int_mm(q, down_t).float() * h_scale * down_scale).to(x.dtype)


def _rms_norm(x, weight, eps: float):
    """LlamaRMSNorm's own math (float32 statistics, back to the input dtype, then the weight), fused."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def _logsumexp(logits):
    """Float32 log-sum-exp over the vocabulary of bfloat16 logits, without a float32 copy of them (fused)."""
    return torch.logsumexp(logits.float(), dim=-1)


_KERNELS = {"linear": _linear, "glu": _glu, "rms_norm": _rms_norm, "logsumexp": _logsumexp}
_COMPILED: dict[str, object] = {}


def _kernel(name: str):
    """The kernel compiled by torch.compile (one graph for every shape: the element-wise work around the int8
    GEMMs fused into single passes), or the eager one where compiling fails."""
    if name not in _COMPILED:
        eager = _KERNELS[name]
        try:
            compiled = torch.compile(eager, dynamic=True)
            probe = torch.randn(3, 8)
            w8, ones = torch.ones(8, 8, dtype=torch.int8), torch.ones(8)
            args = {"linear": (probe, w8, ones), "rms_norm": (probe, ones, 1e-5), "logsumexp": (probe,),
                    "glu": (probe, torch.ones(8, 16, dtype=torch.int8), torch.ones(16), w8, ones)}[name]
            with torch.inference_mode():
                compiled(*args)
            _COMPILED[name] = compiled
        except Exception as exc:  # no C++ compiler, unsupported platform...: same math, unfused
            logger.warning("w8a8: torch.compile failed (%s: %s); running the eager kernel", type(exc).__name__, exc)
            _COMPILED[name] = eager
    return _COMPILED[name]


def quantize_rowwise_int8(model: nn.Module, lm_head: bool = False) -> nn.Module:
    """Replace the decoder's Linears (not the LM head) by int8 ones, in place: each Llama MLP by a
    ``RowwiseInt8GLU``, each attention's q/k/v by one ``RowwiseInt8QKV``, every other Linear (o) by a
    ``RowwiseInt8Linear``; with ``lm_head``, the vocabulary projection too (``quantize="w8a8-lm"``)."""
    decoder = getattr(model, model.base_model_prefix)
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("quantize='w8a8' runs on CPU only (torch._int_mm through oneDNN)")
    for parent in list(decoder.modules()):
        for name, child in list(parent.named_children()):
            if _is_silu_glu(child):
                setattr(parent, name, RowwiseInt8GLU(child))
        if _is_qkv_attention(parent):
            parent.qkv_proj = RowwiseInt8QKV(parent)
            for index, name in enumerate(("q_proj", "k_proj", "v_proj")):
                setattr(parent, name, _QKVPart(parent.qkv_proj, index))
    for parent in list(decoder.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, RowwiseInt8Linear(child))
    if lm_head:  # the vocabulary projection too (its input embeddings stay as they are): faster, less exact
        head = model.get_output_embeddings()
        model.set_output_embeddings(RowwiseInt8Linear(head))
        model.config.tie_word_embeddings = False
    for module in decoder.modules():  # the norms' five element-wise passes as one (same math)
        if type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon"):
            module.forward = functools.partial(_fused_norm, module)
    return model


def _fused_norm(module, hidden_states):
    return _kernel("rms_norm")(hidden_states, module.weight, module.variance_epsilon)


def _is_qkv_attention(module: nn.Module) -> bool:
    names = ("q_proj", "k_proj", "v_proj")
    return all(type(getattr(module, n, None)) is nn.Linear and getattr(module, n).bias is None for n in names)


def _is_silu_glu(module: nn.Module) -> bool:
    """A Llama-style MLP (``down(silu(gate(x)) * up(x))``, no biases), the only form the fused kernel computes."""
    names = ("gate_proj", "up_proj", "down_proj")
    return (type(module).__name__.endswith("MLP") and type(getattr(module, "act_fn", None)).__name__ in (
        "SiLU", "SiLUActivation") and all(type(getattr(module, n, None)) is nn.Linear
                                          and getattr(module, n).bias is None for n in names))
