"""`evaluate` metric modules shipped with finsent (Hub metric scripts cannot load offline).

    >>> from finsent.evaluation.metrics import load_metric
    >>> load_metric().compute(predictions=["positive"], references=["positive"])["accuracy"]
    1.0
"""

from __future__ import annotations

import math
from pathlib import Path

METRIC_DIR = Path(__file__).resolve().parent / "finsent_sentiment"


def load_metric():
    """The ``finsent_sentiment`` metric, loaded by ``evaluate`` from its folder inside this package."""
    import evaluate

    return evaluate.load(str(METRIC_DIR))


# Metrics of finsent_sentiment that are fractions (accuracy, the F1s, per-class precision/recall/f1): in [0, 1].
SCORE_METRICS = frozenset({"accuracy", "macro_f1", "micro_f1", "weighted_f1", "precision", "recall", "f1"})


def metric_problems(node, key: str, name: str = ""):
    """(dotted key, value, problem) for every metric of an eval result that no gate or card should show: a score
    that is not a number in [0, 1], any other number (a count) that is not finite; labels (text) are left."""
    if isinstance(node, dict):
        for child, value in node.items():
            yield from metric_problems(value, f"{key}.{child}", str(child))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from metric_problems(value, f"{key}[{i}]", name)
    else:
        number = isinstance(node, (int, float)) and not isinstance(node, bool)
        if name in SCORE_METRICS and not (number and math.isfinite(node) and 0 <= node <= 1):
            yield key, node, "not a score between 0 and 1"
        elif number and not math.isfinite(node):
            yield key, node, "not a finite number"
