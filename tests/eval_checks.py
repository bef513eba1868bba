"""What the eval tests check a run against: the results contract's keys, and the metrics recomputed with
scikit-learn from the predictions file."""

from __future__ import annotations

import json

import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from finsent.core.labels import SCHEMES

CONTRACT_KEYS = {"model", "model_hash", "benchmark", "dataset", "split", "data_sha256", "scheme", "mode", "n",
                 "metrics", "seconds", "items_per_second", "versions", "created"}
METRIC_KEYS = {"accuracy", "macro_f1", "weighted_f1", "per_class", "labels", "confusion_matrix", "unparseable"}


def sklearn_scores(pred_file):
    """Metrics recomputed with scikit-learn from a predictions file (unparseable = its own wrong class)."""
    lines = [json.loads(x) for x in pred_file.read_text().splitlines()]
    gold = [x["gold"] for x in lines]
    pred = [x["pred"] or "<unparseable>" for x in lines]
    present = [lab for lab in SCHEMES["3"] if lab in set(gold) | set(pred)]
    return lines, {
        "accuracy": accuracy_score(gold, pred),
        "macro_f1": f1_score(gold, pred, labels=present, average="macro", zero_division=0),
        "weighted_f1": f1_score(gold, pred, labels=present, average="weighted", zero_division=0),
        "confusion_matrix": confusion_matrix(gold, pred, labels=list(SCHEMES["3"])).tolist(),
    }


def check_run(out, result, data, mode):
    stem = f"{data.name}-{data.scheme}-{mode}"
    assert json.loads((out / f"{stem}.json").read_text()) == result
    assert CONTRACT_KEYS <= set(result) and METRIC_KEYS <= set(result["metrics"])
    assert (result["benchmark"], result["scheme"], result["mode"], result["n"]) == (data.name, "3", mode, data.n)
    assert result["data_sha256"] == data.data_sha256 and result["split"] == data.split
    assert {"torch", "transformers", "evaluate", "scikit-learn"} <= set(result["versions"])
    assert result["items_per_second"] == pytest.approx(data.n / result["seconds"], rel=0.01)
    lines, expected = sklearn_scores(out / f"{stem}.predictions.jsonl")
    assert len(lines) == data.n and [x["gold"] for x in lines] == data.labels
    m = result["metrics"]
    for key in ("accuracy", "macro_f1", "weighted_f1"):
        assert m[key] == pytest.approx(expected[key])
    assert m["confusion_matrix"] == expected["confusion_matrix"]
    assert m["unparseable"] == sum(x["pred"] is None for x in lines)
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return lines
