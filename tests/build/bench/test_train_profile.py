"""build/bench/train_profile.py: how it sorts the tensors autograd saves into kinds, and the arguments it refuses
before loading anything."""

from __future__ import annotations

import sys

import pytest
import torch

DIMS = {"hidden": 8, "intermediate": 24, "vocab": 50, "head_dim": 4}


@pytest.fixture(scope="module")
def tp(bench_script):
    return bench_script("train_profile")


def test_saved_tensors_are_sorted_into_kinds_by_shape(tp):
    weight = torch.zeros(24, 8)
    kinds = {name: tp.activation_kind(t, DIMS, {(24, 8)}, {weight.untyped_storage().data_ptr()})
             for name, t in {"weight": weight, "mask": torch.ones(2, 5, dtype=torch.bool),
                             "bf16 copy": torch.zeros(8, 24, dtype=torch.bfloat16),
                             "scores": torch.zeros(2, 2, 5, 5), "q": torch.zeros(2, 2, 5, 4),
                             "mlp": torch.zeros(2, 5, 24), "logits": torch.zeros(3, 50),
                             "hidden": torch.zeros(2, 5, 8), "other": torch.zeros(7)}.items()}
    assert kinds == {"weight": "weights themselves (no new memory)", "mask": "masks and indices",
                     "bf16 copy": "autocast bf16 copies of weights",
                     "scores": "attention scores and probabilities", "q": "attention q, k, v, rotary",
                     "mlp": "MLP (gate, up, SiLU, product)", "logits": "LM head logits (answer positions)",
                     "hidden": "hidden states (residual, norms, projections)", "other": "other"}


@pytest.mark.parametrize("argv, message", [
    (["--recipe", "r.yaml", "--base", "b", "--tag", "t", "--steps", "3"], "--steps must be at least 4"),
    (["--recipe", "r.yaml", "--base", "b", "--tag", "t", "--compile", "mlp,attn"],
     "--compile: unknown kinds ['attn']; choose from mlp, norm, layer"),
    (["--recipe", "r.yaml", "--tag", "t"], "--recipe, --base and --tag are required"),
])
def test_bad_arguments_are_refused_by_name_before_any_work(tp, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(sys, "argv", ["train_profile.py", *argv])
    with pytest.raises(SystemExit) as exit_:
        tp.main()
    assert exit_.value.code == 2 and message in capsys.readouterr().err
