"""The compute floor of label scoring: FLOPs per item over the GEMM throughput measured on this machine.

Used by ``finsent bench`` (``speed.py``). Per scored item, every query token (news + cue + the N
answer-prefix nodes of ``classify.answer_nodes``) goes through each decoder layer's matmuls, the LM
head runs only at the cue and the nodes, and attention costs 4 x heads x head_dim x keys per query
token per layer (QK^T and AV), counting only the keys the mask lets it see:

    flops = 2 * decoder_matmul_params * (body + N) + 2 * vocab * hidden * (1 + N) + attention

The shared instruction prefix is computed once per run, so it is left out of the per-item count. The
throughput is a torch GEMM with the model's own MLP shape ([32 x tokens, hidden] @ [hidden, intermediate]),
in the model's dtype, or through a dynamic-int8 Linear for the quantized rows.
"""

from __future__ import annotations

import statistics
import time

from .labels import labels_of
from .prompts import instruction


def matmul_params_per_token(config) -> int:
    """Weights every token multiplies through the decoder: attention q/k/v/o and the GLU's gate/up/down."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_dim, kv_dim = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    attention = config.hidden_size * (2 * q_dim + 2 * kv_dim)
    mlp = 3 * config.hidden_size * config.intermediate_size
    return config.num_hidden_layers * (attention + mlp)


def scoring_flops(config, prefix_len: int, body_lens: list[int], answers) -> tuple[float, float]:
    """(mean FLOPs, mean query tokens) per item for label scoring; ``answers``: each label's token ids."""
    from .classify import answer_nodes

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_key = 4 * config.num_attention_heads * head_dim * config.num_hidden_layers  # QK^T + AV, all layers
    linear = matmul_params_per_token(config)
    head = config.vocab_size * config.hidden_size
    depths = [len(node) for node in answer_nodes(answers)]
    flops, tokens = [], []
    for body in body_lens:
        keys = sum(prefix_len + p + 1 for p in range(body))  # news + cue rows: causal over prefix + news
        keys += sum(prefix_len + body + d for d in depths)  # a node sees prefix, news, itself and its ancestors
        flops.append(2 * linear * (body + len(depths)) + 2 * head * (1 + len(depths)) + per_key * keys)
        tokens.append(body + len(depths))
    return statistics.mean(flops), statistics.mean(tokens)


def gemm_gflops(m: int, k: int, n: int, dtype, device, quantized: bool = False, seconds: float = 1.5,
                windows: int = 3) -> float:
    """GFLOP/s of an [m, k] @ [k, n] product (float GEMM, or a dynamic-int8 Linear): the best of ``windows``
    timing windows (``seconds`` in all), since a floor is what the machine can do, and a shared machine's
    other work only ever slows a window down."""
    import torch

    x = torch.randn(m, k, device=device, dtype=torch.float32 if quantized else dtype)
    if quantized:
        from torch.ao.quantization import quantize_dynamic

        layer = quantize_dynamic(torch.nn.Sequential(torch.nn.Linear(k, n, bias=False)), {torch.nn.Linear},
                                 dtype=torch.qint8)
        fn = lambda: layer(x)  # noqa: E731
    else:
        w = torch.randn(k, n, device=device, dtype=dtype)
        fn = lambda: x @ w  # noqa: E731
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    best = 0.0
    with torch.inference_mode():
        fn()
        sync()
        for _ in range(windows):
            reps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / windows or reps < 3:
                fn()
                reps += 1
            sync()
            best = max(best, 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9)
    return best


def compute_floor(clf, texts, schemes, quantized: bool = False) -> dict:
    """The floor's parts for a classifier and the benchmark texts (FLOPs per item; GEMM GFLOP/s)."""
    import torch

    config = clf.model.config
    per_item = {"flops_per_item": {}, "tokens_per_item": {}}
    body_tokens = 0.0
    for scheme in schemes:
        labels = labels_of(scheme)
        instr = instruction(scheme, "tweet")
        encoded = [clf.encoder.encode(instr, t, reserve=clf.encoder.max_answer_len(labels)) for t in texts]
        answers = [clf.encoder.answer_ids(label) for label in labels]
        flops, tokens = scoring_flops(config, len(encoded[0].prefix), [len(e.body) for e in encoded], answers)
        per_item["flops_per_item"][scheme] = flops
        per_item["tokens_per_item"][scheme] = tokens
        body_tokens = max(body_tokens, tokens)
    m = 32 * round(body_tokens)  # rows of a batch-32 forward
    if quantized:
        return {"gemm_gflops_int8": gemm_gflops(m, config.hidden_size, config.intermediate_size, None,
                                                clf.device, quantized=True)}
    return {
        **per_item,
        "gemm_shape": [m, config.hidden_size, config.intermediate_size],
        "gemm_dtype": str(clf.dtype).replace("torch.", ""),
        "gemm_gflops_float": gemm_gflops(m, config.hidden_size, config.intermediate_size, clf.dtype, clf.device),
        # Why float32 on CPU: the same small GEMM (batch-1 rows) in each dtype; bfloat16 without AVX-512 BF16
        # (or AMX) falls back to slow kernels.
        "dtype_probe_gflops": {
            str(dtype).replace("torch.", ""): gemm_gflops(32, config.hidden_size, config.intermediate_size, dtype,
                                                          clf.device, seconds=0.5)
            for dtype in (torch.float32, torch.bfloat16)
        },
    }


def floor_items_per_second(floor: dict, scheme: str, key: str = "float") -> float:
    """Items/s if every FLOP ran at the measured GEMM speed: the ceiling a scorer can approach."""
    return floor[f"gemm_gflops_{key}"] * 1e9 / floor["flops_per_item"][scheme]
