"""`evaluate` metric modules shipped with finsent (Hub metric scripts cannot load offline).

    >>> from finsent.metrics import load_metric
    >>> load_metric().compute(predictions=["positive"], references=["positive"])["accuracy"]
    1.0
"""

from __future__ import annotations

from pathlib import Path

METRIC_DIR = Path(__file__).resolve().parent / "finsent_sentiment"


def load_metric():
    """The ``finsent_sentiment`` metric, loaded by ``evaluate`` from its folder inside this package."""
    import evaluate

    return evaluate.load(str(METRIC_DIR))
