"""Neuron importance for structured GLU pruning, and how many neurons a prune keeps.

A GLU MLP computes ``down(act(gate(x)) * up(x))``; neuron ``j`` owns row ``j`` of ``gate_proj`` and
``up_proj`` (shape [I, H]) and column ``j`` of ``down_proj`` ([H, I]). Each score below rates the
pair (gate row j, up row j) from the weights alone, in float32, with the same arithmetic as
optipfair 0.4.2 (``optipfair.pruning.mlp_glu``), so the kept indices match it exactly:

    ppm (a.k.a. MAW): (max(gate_j) + |min(gate_j)|) + (max(up_j) + |min(up_j)|)   peak-to-peak range
    vow:              var(gate_j) + var(up_j)        (unbiased variance, torch.var's default)
    l2:               ||gate_j||_2 + ||up_j||_2
    pon:              ||gate_j||_1 * ||up_j||_1      (product of norms)

One score reads activations instead, measured on calibration texts (``activation_norms``):

    act:              ||h_j||_2 * ||down[:, j]||_2,  h_j = act(gate_j x) * up_j x over every calibration token

i.e. how much neuron j actually adds to the layer's output on the text it will see: a neuron with a wide
weight range that stays near zero on financial prompts is cut first (the structured form of Wanda's
|W| x ||X||, Sun et al. 2023, arXiv:2306.11695).

Used by ``finsent.build.pruning`` (``finsent prune``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from finsent.core.recipe_values import ACTIVATION_METHODS, WEIGHT_METHODS, canonical_method

if TYPE_CHECKING:  # torch is imported by the callers; `finsent --help` stays fast without it
    import torch

# Scores are computed on float32 copies: bf16/fp16 ranges would round ties differently than the
# reference notebook, which casts with .float() first.


def _ppm(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    gate_range = gate.max(dim=1).values + gate.min(dim=1).values.abs()
    up_range = up.max(dim=1).values + up.min(dim=1).values.abs()
    return gate_range + up_range


def _vow(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return gate.var(dim=1) + up.var(dim=1)


def _l2(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return gate.norm(p=2, dim=1) + up.norm(p=2, dim=1)


def _pon(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return gate.norm(p=1, dim=1) * up.norm(p=1, dim=1)


SCORES = dict(zip(WEIGHT_METHODS, (_ppm, _vow, _l2, _pon), strict=True))


def neuron_scores(method: str, gate_weight: torch.Tensor, up_weight: torch.Tensor) -> torch.Tensor:
    """Importance of each GLU neuron, float32 [I], from gate/up weights [I, H]."""
    if gate_weight.shape != up_weight.shape:
        raise ValueError(f"gate_proj {tuple(gate_weight.shape)} and up_proj {tuple(up_weight.shape)} differ in shape")
    name = canonical_method(method)
    if name in ACTIVATION_METHODS:
        raise ValueError(f"importance method {name!r} reads activations: give calibration texts (activation_norms)")
    return SCORES[name](gate_weight.detach().float(), up_weight.detach().float())


def activation_scores(norms: torch.Tensor, down_weight: torch.Tensor) -> torch.Tensor:
    """The 'act' score, float32 [I]: activation norms [I] x the L2 norm of each down_proj column ([H, I])."""
    return norms.float() * down_weight.detach().float().norm(dim=0)


def activation_norms(model, tokenizer, texts: list[str], mlps: list, batch_size: int = 16,
                     progress: bool = True) -> list[torch.Tensor]:
    """||h_j||_2 over all calibration tokens for each GLU neuron of each MLP in ``mlps``: float32 [I] per layer.

    ``h`` is the input of ``down_proj`` (act(gate x) * up x, shape [B, T, I]); padding positions are masked
    out, so the result does not depend on the batch size beyond float rounding. Runs in the model's dtype
    under no_grad; squares are summed in float32.
    """
    import torch
    from tqdm.auto import tqdm

    if not texts:
        raise ValueError("activation scores need at least one calibration text")
    sums = [torch.zeros(m.down_proj.in_features, dtype=torch.float32) for m in mlps]
    mask: dict[str, torch.Tensor] = {}

    def hook(i):
        def record(module, args):
            h = args[0].float() * mask["m"]  # [B, T, I] x [B, T, 1]
            sums[i] += h.square().sum(dim=(0, 1)).cpu()
        return record

    handles = [m.down_proj.register_forward_pre_hook(hook(i)) for i, m in enumerate(mlps)]
    first = next(model.parameters())
    device, dtype = first.device, first.dtype
    if device.type == "cpu" and dtype in (torch.float16, torch.bfloat16):
        # Half-precision CPU matmuls run many times slower than float32 (fp16 has no fast CPU kernels):
        # calibrate in float32 and cast back, which is lossless.
        model.to(torch.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            starts = range(0, len(texts), batch_size)
            for s in tqdm(starts, desc="calibration activations", unit="batch", disable=not progress):
                ids = [tokenizer(t)["input_ids"] for t in texts[s:s + batch_size]]
                width = max(len(x) for x in ids)
                # Right padding with token 0: masked out of the sums and, causally, unseen by real tokens.
                input_ids = torch.tensor([x + [0] * (width - len(x)) for x in ids], device=device)
                attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids], device=device)
                mask["m"] = attention.unsqueeze(-1).float()
                model(input_ids=input_ids, attention_mask=attention)
    finally:
        for h in handles:
            h.remove()
        model.to(dtype)
        model.train(was_training)
    return [s.sqrt() for s in sums]


def ratio_for_expansion(expansion: float, intermediate: int, hidden: int) -> float:
    """The fraction to remove so intermediate/hidden x 100 becomes ``expansion`` (optipfair's convention).

    Llama-3.2-1B: 8192/2048 = 400 %; the 40 % prune is 240 %. (The model card's "300 % -> 140 %"
    counts only the expansion beyond the hidden size, i.e. this figure minus 100.)
    """
    current = intermediate / hidden * 100
    if not expansion > 0:
        raise ValueError(f"expansion must be a positive percentage, got {expansion}")
    if expansion > current:
        raise ValueError(
            f"target expansion {expansion:g} % would grow the MLP: it is {current:g} % now "
            f"(intermediate {intermediate} / hidden {hidden} x 100)"
        )
    return 1.0 - (expansion / 100 * hidden) / intermediate


def _floor_snapped(x: float) -> int:
    """floor(x), except that a product within 1e-6 of an integer counts as that integer.

    ``int(ratio * I)`` is the reference formula; the snap only undoes float error such as
    0.29 * 100 = 28.999999999999996 (and an expansion converted to a ratio), never a real fraction.
    """
    nearest = round(x)
    return int(nearest) if abs(x - nearest) < 1e-6 else math.floor(x)


def check_amount(ratio: float | None, expansion: float | None, round_to: int = 1) -> None:
    """ValueError unless exactly one of ratio in [0, 1) or expansion > 0 is given, and round_to >= 1."""
    if (ratio is None) == (expansion is None):
        raise ValueError("give exactly one of ratio (fraction removed) or expansion (target I/H x 100)")
    if ratio is not None and not 0 <= ratio < 1:
        raise ValueError(f"ratio is the fraction of neurons removed, in [0, 1); got {ratio}")
    if expansion is not None and not expansion > 0:
        raise ValueError(f"expansion must be a positive percentage, got {expansion}")
    if int(round_to) != round_to or round_to < 1:
        raise ValueError(f"round_to must be a positive integer, got {round_to}")


def kept_size(intermediate: int, hidden: int | None = None, ratio: float | None = None,
              expansion: float | None = None, round_to: int = 1) -> int:
    """How many GLU neurons a layer of ``intermediate`` keeps.

    ``n_prune = min(int(ratio * I), I - 1)``, ``k = I - n_prune`` (40 % of 8192 keeps 4916); then
    ``k`` is rounded down to a multiple of ``round_to`` (never below 1), so rounding never grows it.
    """
    check_amount(ratio, expansion, round_to)
    if expansion is not None:
        if hidden is None:
            raise ValueError("expansion needs the hidden size")
        ratio = ratio_for_expansion(expansion, intermediate, hidden)
    n_prune = min(_floor_snapped(ratio * intermediate), intermediate - 1)
    k = intermediate - n_prune
    return max(k // int(round_to) * int(round_to), 1)
