"""The compute floor of label scoring: FLOPs per item over the GEMM throughput measured on this machine.

Used by ``finsent bench`` (``speed.bench``). Per scored item, every query token (news + cue + the N
answer-prefix nodes of ``core.classify.answer_nodes``) goes through each decoder layer's matmuls, the LM
head runs only at the cue and the nodes, and attention costs 4 x heads x head_dim x keys per query
token per layer (QK^T and AV), counting only the keys the mask lets it see:

    flops = 2 * decoder_matmul_params * (body + N) + 2 * vocab * hidden * (1 + N) + attention

The shared instruction prefix is computed once per run, so it is left out of the per-item count. The
throughput is the scorer's own [hidden -> intermediate] projection module (nn.Linear in the row's dtype, the
dynamic-int8 Linear, or the w8a8 Linear with its per-token quantization), timed on as many rows as one
request of that configuration feeds it (batch size x query tokens per item).
"""

from __future__ import annotations

import statistics
import time

from finsent.core.classify import answer_nodes
from finsent.core.labels import labels_of
from finsent.core.prompts import instruction


def matmul_params_per_token(config) -> int:
    """Weights every token multiplies through the decoder: attention q/k/v/o and the GLU's gate/up/down."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    q_dim, kv_dim = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    attention = config.hidden_size * (2 * q_dim + 2 * kv_dim)
    mlp = 3 * config.hidden_size * config.intermediate_size
    return config.num_hidden_layers * (attention + mlp)


def scoring_flops(config, prefix_len: int, body_lens: list[int], answers) -> tuple[float, float]:
    """(mean FLOPs, mean query tokens) per item for label scoring; ``answers``: each label's token ids."""

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


def compute_floor(clf, texts, schemes) -> dict:
    """FLOPs and query tokens per item of every scheme, for a classifier and the benchmark texts."""
    config = clf.model.config
    per_item = {"flops_per_item": {}, "tokens_per_item": {}}
    for scheme in schemes:
        labels = labels_of(scheme)
        instr = instruction(scheme, "tweet")
        encoded = [clf.encoder.encode(instr, t, reserve=clf.encoder.max_answer_len(labels)) for t in texts]
        answers = [clf.encoder.answer_ids(label) for label in labels]
        flops, tokens = scoring_flops(config, len(encoded[0].prefix), [len(e.body) for e in encoded], answers)
        per_item["flops_per_item"][scheme] = flops
        per_item["tokens_per_item"][scheme] = tokens
    return per_item


def mlp_linear(clf):
    """The classifier's first [hidden -> intermediate] projection, as it runs: nn.Linear in the model's dtype,
    a dynamic-int8 Linear, or w8a8's fused gate-and-up ``quant.RowwiseInt8Linear``."""
    config = clf.model.config
    for module in clf.model.modules():
        if getattr(module, "in_features", None) == config.hidden_size and getattr(
                module, "out_features", None) in (config.intermediate_size, 2 * config.intermediate_size):
            return module  # w8a8 runs gate and up as one [hidden -> 2 x intermediate] GEMM
    raise ValueError("no [hidden -> intermediate] projection found in the model")


def module_gflops(module, m: int, dtype, device, seconds: float = 1.0, windows: int = 3) -> float:
    """GFLOP/s of ``module`` (a Linear of any kind) on an [m, in_features] input: the best of ``windows``
    timing windows, since a floor is what the machine can do and other work only ever slows a window down."""
    import torch

    x = torch.randn(m, module.in_features, device=device, dtype=dtype)
    flops = 2 * m * module.in_features * module.out_features
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    best = 0.0
    with torch.inference_mode():
        module(x)
        sync()
        for _ in range(windows):
            reps, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / windows or reps < 3:
                module(x)
                reps += 1
            sync()
            best = max(best, flops * reps / (time.perf_counter() - start) / 1e9)
    return best


def floor_items_per_second(floor: dict, scheme: str, gflops: float) -> float:
    """Items/s if every FLOP ran at ``gflops``: the ceiling a scorer can approach."""
    return gflops * 1e9 / floor["flops_per_item"][scheme]
