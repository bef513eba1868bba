"""What the corpus tests expect of an output: the prediction columns, the classifier's own predictions for the
same texts, and a classifier that stops a run as Ctrl-C would."""

from __future__ import annotations

import math

P3 = ["p_negative", "p_neutral", "p_positive"]
OURS = ["predicted_label", *P3]


def expected(tiny, texts: list[str]) -> list[dict]:
    return [{"predicted_label": p.label, **{f"p_{k}": v for k, v in p.probs.items()}} for p in tiny.classify(texts)]


def assert_predictions(rows: list[dict], want: list[dict], as_text: bool = False) -> None:
    assert [r["predicted_label"] for r in rows] == [w["predicted_label"] for w in want]
    for row, w in zip(rows, want):
        for col in P3:
            assert math.isclose(float(row[col]), w[col], abs_tol=1e-6)
        assert math.isclose(sum(float(row[c]) for c in P3), 1.0, abs_tol=1e-5)


class Interrupting:
    """A classifier that stops the run (as Ctrl-C would) at its ``after``-th call."""

    def __init__(self, clf, after: int):
        self.clf, self.after, self.calls = clf, after, 0

    def classify(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.after:
            raise KeyboardInterrupt
        return self.clf.classify(*args, **kwargs)
