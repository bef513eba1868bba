"""The label scorer equals the naive reference for single-token and shared answers, in both schemes (tiny random
Llama, one plain forward per text and label)."""

from __future__ import annotations

import pytest
import torch
from naive_scores import naive_logprobs

# --- exactness of the scorer (tiny random Llama) ------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["3", "7"])
def test_scores_equal_naive_for_single_token_and_shared_answers(tiny, mixed_texts, scheme, monkeypatch):
    # Without the "\n", 3-class answers are single tokens (no node: the cue predicts all of them) and
    # 7-class answers are 2-token paths through shared first tokens.
    full = tiny.encoder.answer_ids
    monkeypatch.setattr(tiny.encoder, "answer_ids", lambda label: full(label)[:-1])
    got = tiny.label_logprobs(mixed_texts, scheme, batch_size=4)
    torch.testing.assert_close(got.double(), naive_logprobs(tiny, mixed_texts, scheme), atol=2e-4, rtol=1e-5)


# --- bad input --------------------------------------------------------------------------------------------


# --- configurations ---------------------------------------------------------------------------------------


# --- model resolution ---------------------------------------------------------------------------------------
