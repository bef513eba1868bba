"""An ensemble teacher (finetune.distill_from as a list): the KL from the mean of the teachers' distributions."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from finsent.build.trainer import Distill, ensemble_kl


def logits(seed: int, scale: float = 3.0) -> torch.Tensor:
    """[N=5 answer positions, V=11 tokens] float32 logits drawn from ``seed``."""
    return scale * torch.randn(5, 11, generator=torch.Generator().manual_seed(seed))


def test_the_target_is_the_mean_of_the_teachers_distributions_at_the_temperature():
    student, first, second, t = logits(0), logits(1), logits(2), 2.0
    # by hand, in float64: p = (softmax(z1 / T) + softmax(z2 / T)) / 2, KL(p || q) = sum p (log p - log q)
    p = (F.softmax(first.double() / t, -1) + F.softmax(second.double() / t, -1)) / 2
    by_hand = float((p * (p.log() - F.log_softmax(student.double() / t, -1))).sum())
    assert float(ensemble_kl(student, [first, second], t)) == pytest.approx(by_hand, rel=1e-6)
    # not the distribution of the mean logits (a different target)
    assert float(ensemble_kl(student, [(first + second) / 2], t)) != pytest.approx(by_hand, rel=1e-3)
    # the student equal to the mixture's log-probabilities (any constant shift) learns nothing more: KL 0
    assert float(ensemble_kl(p.log().float() * t + 4.0, [first, second], t)) == pytest.approx(0.0, abs=1e-5)


def test_one_teacher_in_a_list_is_exactly_the_single_teacher_loss():
    student, teacher, t = logits(3), logits(4), 1.5
    single = F.kl_div(F.log_softmax(student / t, -1), F.log_softmax(teacher / t, -1), log_target=True,
                      reduction="sum")  # the loss before ensembles
    assert torch.equal(ensemble_kl(student, [teacher], t), single)
    module = torch.nn.Linear(1, 1)
    assert Distill(module, 0.5, 1.0).teachers == [module] == Distill([module], 0.5, 1.0).teachers
