"""``dtype="auto"``: bfloat16 where the hardware runs it natively AND it measures faster here, else float32.

A CPU without bf16 matrix instructions emulates bfloat16, far slower than float32; one with AVX-512 BF16 or AMX
runs it several times faster than float32.
The flags alone are not trusted: a short GEMM with the model's own MLP shape is timed in both dtypes
(~0.3 s) and bfloat16 is kept only if it is clearly faster. On CUDA, bfloat16 where supported.
"""

from __future__ import annotations

import functools
import logging
import time

logger = logging.getLogger(__name__)

BF16_MIN_GAIN = 1.2  # bfloat16 must beat float32 by this factor to be picked: it is not exact


def cpu_bf16_feature() -> str | None:
    """The CPU's native bf16 matrix instructions as torch.cpu reports them ("AMX", "AVX-512 BF16"), or None.

    The same checks as ``trainer.cpu_has_native_bf16`` (not imported: trainer pulls in the whole training stack).
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    for name, check in (("AMX", "_is_amx_tile_supported"), ("AVX-512 BF16", "_is_avx512_bf16_supported")):
        if bool(getattr(cpu, check, lambda: False)()):
            return name
    return None


def gemm_gflops(m: int, k: int, n: int, dtype, seconds: float = 1.5, windows: int = 3) -> float:
    """GFLOP/s of an [m, k] @ [k, n] product on the CPU: the best of ``windows`` timing windows (``seconds`` in
    all), since a shared machine's other work only ever slows a window down."""
    import torch

    x, w = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    best = 0.0
    with torch.inference_mode():
        x @ w  # warm-up: the first call pays for kernel selection
        for _ in range(windows):
            reps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / windows or reps < 3:
                x @ w
                reps += 1
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


@functools.lru_cache(maxsize=8)
def measure_cpu_dtypes(hidden: int, intermediate: int) -> dict[str, float]:
    """GFLOP/s of a [32 x hidden] @ [hidden x intermediate] GEMM in float32 and bfloat16 on this CPU."""
    import torch

    return {str(dt).replace("torch.", ""): gemm_gflops(32, hidden, intermediate, dt, seconds=0.3)
            for dt in (torch.float32, torch.bfloat16)}


def auto_dtype(device, config) -> tuple[object, str]:
    """(torch dtype, why) for label scoring with a model of ``config`` on ``device``."""
    import torch

    if torch.device(device).type == "cuda":
        if torch.cuda.is_bf16_supported():
            return torch.bfloat16, "CUDA with bfloat16"
        return torch.float32, "CUDA without bfloat16"
    if torch.device(device).type != "cpu":
        return torch.float32, f"{device}: float32"
    feature = cpu_bf16_feature()
    if feature is None:
        return torch.float32, "CPU without AVX-512 BF16 or AMX: bfloat16 would be emulated"
    rates = measure_cpu_dtypes(config.hidden_size, config.intermediate_size)
    gain = rates["bfloat16"] / rates["float32"]
    why = (f"CPU with {feature}: a [32 x {config.hidden_size}] @ [{config.hidden_size} x "
           f"{config.intermediate_size}] GEMM ran {rates['bfloat16']:.0f} GFLOP/s in bfloat16, "
           f"{rates['float32']:.0f} in float32")
    return (torch.bfloat16 if gain >= BF16_MIN_GAIN else torch.float32), why


GROUPED = "finsent_grouped"


def grouped_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Attention for transformers' AttentionInterface that folds each key/value head's query heads into one
    matmul ([kv heads] x [group x queries, keys]) instead of copying keys and values per query head.

    Used for a bfloat16 model on a CPU (``use_cpu_bf16_attention``), where the scorer's packed rows carry a
    custom mask that keeps ``scaled_dot_product_attention`` off its fast paths. Same math as transformers' eager
    attention (scores in the model's dtype, softmax in float32); inference only (no dropout, no attention weights
    returned).
    """
    import torch

    b, heads, q, d = query.shape
    kv = key.shape[1]
    group = heads // kv
    k_len = key.shape[2]
    if attention_mask is None and q > 1:  # transformers leaves plain causal masking to the kernel (is_causal)
        causal = torch.ones(q, k_len, dtype=torch.bool, device=query.device).tril(k_len - q)
        attention_mask = torch.zeros(q, k_len, dtype=query.dtype, device=query.device).masked_fill_(
            ~causal, torch.finfo(query.dtype).min)[None, None]
    scores = torch.matmul(query.reshape(b, kv, group * q, d), key.transpose(2, 3)) * scaling
    if attention_mask is not None:  # [B, 1, Q, K]: the same for every head
        scores = (scores.view(b, kv, group, q, k_len) + attention_mask[:, :, None, :, :k_len]).view(b, kv, -1, k_len)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    return torch.matmul(probs, value).view(b, heads, q, d).transpose(1, 2).contiguous(), None


def use_cpu_bf16_attention(model) -> bool:
    """Switch a bfloat16 model on a CPU to ``grouped_attention``; True if it was switched."""
    import torch

    param = next(model.parameters())
    if param.device.type != "cpu" or model.get_input_embeddings().weight.dtype != torch.bfloat16:
        return False
    from transformers import AttentionInterface

    AttentionInterface.register(GROUPED, grouped_attention)
    model.set_attn_implementation(GROUPED)
    return True
