"""build/bench/posthoc_scoring.py: the held-out gain of per-class offsets is real when a bias exists, zero when not."""

from __future__ import annotations

import numpy as np


def test_offsets_fitted_on_one_half_fix_a_bias_on_the_other(bench_script):
    """Scores that favour neutral by 2 nats: about half of the positive and negative rows fall to neutral; offsets
    fitted on half the rows give them back on the other half."""
    gains = bench_script("posthoc_scoring").offsets_gain
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 3, 600)
    scores = np.eye(3)[gold] * 2.0 + rng.normal(0, 0.8, (600, 3))
    scores[:, 1] += 2.0
    plain = float(np.mean(scores.argmax(1) == gold))
    assert plain < 0.65
    result = gains(scores, gold, seed=42)
    assert result["halvings"] == 20
    assert result["mean"] > 0.25 and result["mean"] > 3 * result["sd"]
    assert result == gains(scores, gold, seed=42)  # seeded halvings: the same figures every run


def test_no_offset_is_fitted_where_none_helps(bench_script):
    """Perfectly ranked scores: the best offsets are (0, 0), ties go to the smallest, so the gain is exactly 0."""
    gold = np.array([0, 1, 2] * 40)
    scores = np.eye(3)[gold] * 3.0
    assert bench_script("posthoc_scoring").offsets_gain(scores, gold, seed=1) == {"mean": 0.0, "sd": 0.0,
                                                                                   "halvings": 20}
