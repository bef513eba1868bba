"""The label-scoring configurations ``finsent bench`` and ``finsent bench-quality`` compare, built the same way.

    float32        the exact scorer (the reference every other variant's accuracy is measured against)
    bf16           weights and activations in bfloat16 (CPUs with AVX-512 BF16 or AMX where it measures
                   faster, CUDA): not exact
    w8a8           int8 weights per output channel x int8 activations per token in the decoder's Linears
                   (``core.quant``), the rest in bfloat16 where native, else float32; CPU only
    w8a8-lm        w8a8 with the LM head (vocabulary projection) in int8 too
    int8           torch.ao dynamic int8 (one scale per weight matrix and per activation matrix); CPU only
    <v>-packed     the same weights, several texts per query row (``speed.packing``)

Speed rows and accuracy rows of one variant run the same code: ``build`` here is used by both.
"""

from __future__ import annotations

import copy
import logging

from finsent.core.classify import FinSentClassifier
from finsent.core.errors import UsageError
from finsent.core.precision import use_cpu_bf16_attention
from finsent.speed.packing import PACK_TOKENS, PackedClassifier

logger = logging.getLogger(__name__)

BASE = ("float32", "bf16", "w8a8", "w8a8-lm", "int8")
VARIANTS = BASE + tuple(f"{v}-packed" for v in BASE)
DEFAULT = ("float32", "bf16", "w8a8", "int8", "bf16-packed", "w8a8-packed", "w8a8-lm-packed")
# A variant is only "best" if its accuracy on the tuned release is within this of float32's (0.5 point).
MAX_ACCURACY_LOSS = 0.005


def base_of(variant: str) -> str:
    return variant.removesuffix("-packed")


def unavailable(variant: str, device, float_dtype) -> str | None:
    """Why ``variant`` cannot run here (None if it can); ``float_dtype``: what dtype="auto" picked."""
    import torch

    base = base_of(variant)
    if base not in BASE:
        raise ValueError(f"unknown variant {variant!r}: choose from {', '.join(VARIANTS)}")
    if base in ("w8a8", "w8a8-lm", "int8") and device.type != "cpu":
        return f"{base} runs on CPU only"
    if base == "bf16" and float_dtype != torch.bfloat16:
        return "bfloat16 is not native here (or not faster than float32): dtype auto keeps float32"
    return None


def converted_copy(model, dtype):
    """A copy of ``model`` with every parameter and buffer in ``dtype``; the original is left untouched
    (``module.to`` would change parameters shared with a shallow copy), tied weights stay tied."""
    import torch

    shared = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    clone = copy.deepcopy(model, memo=shared)  # shares every tensor: no second float32 copy at any time
    new: dict[int, torch.Tensor] = {}
    for module in clone.modules():
        for store, wrap in ((module._parameters, True), (module._buffers, False)):
            for name, tensor in store.items():
                if tensor is None or not tensor.is_floating_point():
                    continue
                if id(tensor) not in new:
                    data = tensor.detach().to(dtype)
                    new[id(tensor)] = torch.nn.Parameter(data, requires_grad=False) if wrap else data
                store[name] = new[id(tensor)]
    return clone


def build(variant: str, reference, float_dtype, cache: dict | None = None, pack_tokens: int | None = None):
    """The classifier of ``variant`` made from ``reference`` (a float32 FinSentClassifier, never modified).

    ``cache`` maps base variants to classifiers already built, so ``x-packed`` reuses ``x``'s weights.
    """
    import torch


    cache = {} if cache is None else cache
    base = base_of(variant)
    if base not in cache:
        if base == "float32":
            clf = reference
        else:
            dtype = torch.bfloat16 if base == "bf16" else (float_dtype if base.startswith("w8a8") else torch.float32)
            model = converted_copy(reference.model, dtype)
            use_cpu_bf16_attention(model)  # what from_pretrained does for a bfloat16 model on a CPU
            clf = FinSentClassifier(model, reference.tokenizer, source=reference.source,
                                    batch_size=reference.batch_size)
            if base != "bf16":
                clf.quantize(base)
        cache[base] = clf
    if variant.endswith("-packed"):
        return PackedClassifier.wrap(cache[base], pack_tokens or PACK_TOKENS)
    return cache[base]


def describe(variant: str, clf) -> str:
    """The row's ``dtype`` text: what the weights and the activations are."""
    act = str(clf.dtype).replace("torch.", "")
    base = base_of(variant)
    if base.startswith("w8a8"):
        return f"int8 w8a8{' + LM head' if base == 'w8a8-lm' else ''} ({act} elsewhere)"
    if base == "int8":
        return "int8 dynamic"
    return act


# Resident bytes per parameter of each variant's own weights, beside the float32 reference (4 bytes) that every
# run loads; check_memory multiplies the total by 1.3 for headroom.
BYTES_PER_PARAM = {"float32": 0.0, "bf16": 2.0, "w8a8": 1.3, "w8a8-lm": 1.3, "int8": 1.0}


class BenchMemoryError(UsageError, MemoryError):
    """The variants would not fit in the memory available now."""


def check_memory(params: int, variants) -> None:
    """Refuse to start when the variants' weights would not fit in MemAvailable: on a machine where another job
    holds memory (even paused), the kernel's OOM killer would otherwise end the largest process, maybe not ours."""
    need = params * (4.0 + sum(BYTES_PER_PARAM[base_of(v)] for v in dict.fromkeys(map(base_of, variants)))) * 1.3
    try:
        with open("/proc/meminfo") as fh:
            avail = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable"))
    except (OSError, StopIteration):
        return
    if need > avail:
        raise BenchMemoryError(f"the variants {', '.join(variants)} need about {need / 2**30:.1f} GiB, and "
                               f"{avail / 2**30:.1f} GiB is available: pass fewer --variants or free memory")
