"""The shipped `evaluate` metric (finsent_sentiment) on hand-made predictions with hand-computed answers."""

from __future__ import annotations

import pytest

from finsent.core.labels import SCHEMES

NEG, NEU, POS = SCHEMES["3"]
LABELS3 = list(SCHEMES["3"])
GOLD = [NEG, NEG, NEG, NEU, NEU, POS, POS, POS, POS, POS]
PRED = [NEG, NEU, NEG, NEU, POS, POS, POS, NEU, NEG, POS]


@pytest.fixture(scope="module")
def metric():
    from finsent.evaluation.metrics import load_metric

    return load_metric()


def test_hand_computed_scores(metric):
    m = metric.compute(predictions=PRED, references=GOLD, labels=LABELS3)
    # 6 of 10 right; F1: negative 2/3 (P 2/3, R 2/3), neutral 2/5 (P 1/3, R 1/2), positive 2/3 (P 3/4, R 3/5).
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["macro_f1"] == pytest.approx(26 / 45)
    assert m["weighted_f1"] == pytest.approx(46 / 75)  # (3 * 2/3 + 2 * 2/5 + 5 * 2/3) / 10
    assert m["per_class"][NEU] == pytest.approx({"precision": 1 / 3, "recall": 0.5, "f1": 0.4, "support": 2})
    assert m["per_class"][POS] == pytest.approx({"precision": 0.75, "recall": 0.6, "f1": 2 / 3, "support": 5})
    assert m["labels"] == LABELS3
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [1, 1, 3]]
    assert m["unparseable"] == 0


def test_unparseable_answers_count_wrong_and_never_as_neutral(metric):
    pred = list(PRED)
    pred[1] = None  # gold negative (was predicted neutral)
    pred[7] = ""  # gold positive (was predicted neutral): "" is unparseable too
    m = metric.compute(predictions=pred, references=GOLD, labels=LABELS3)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["unparseable"] == 2
    assert m["unparseable_by_label"] == {NEG: 1, NEU: 0, POS: 1}
    # neutral is now predicted once and right: P 1, R 1/2; the other two classes keep F1 2/3.
    assert m["per_class"][NEU]["precision"] == pytest.approx(1.0)
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["weighted_f1"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[2, 0, 0], [0, 1, 1], [1, 0, 3]]
    # Mapping those answers to neutral (FinGPT's parser) would have scored differently.
    as_neutral = metric.compute(predictions=PRED, references=GOLD, labels=LABELS3)
    assert as_neutral["macro_f1"] != pytest.approx(m["macro_f1"])


def test_all_answers_unparseable(metric):
    m = metric.compute(predictions=[""] * 3, references=[NEG, NEU, POS], labels=LABELS3)
    assert (m["accuracy"], m["macro_f1"], m["weighted_f1"], m["unparseable"]) == (0.0, 0.0, 0.0, 3)
    assert m["confusion_matrix"] == [[0, 0, 0]] * 3


def test_averages_cover_the_classes_present_like_sklearn(metric):
    m = metric.compute(predictions=[POS, NEG, NEG, NEG], references=[POS, POS, NEG, NEG], labels=LABELS3)
    # positive F1 2/3, negative F1 4/5; neutral (absent everywhere) is left out of the averages.
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["macro_f1"] == pytest.approx(11 / 15)
    assert m["weighted_f1"] == pytest.approx(11 / 15)
    assert m["per_class"][NEU] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_seven_classes_keep_the_scheme_order(metric):
    labels7 = list(SCHEMES["7"])
    m = metric.compute(predictions=["strong positive", NEU], references=["strong positive", "mildly negative"],
                       labels=labels7)
    assert m["labels"] == labels7
    assert len(m["confusion_matrix"]) == 7 and all(len(row) == 7 for row in m["confusion_matrix"])
    assert m["confusion_matrix"][6][6] == 1 and m["confusion_matrix"][2][3] == 1
    assert sum(map(sum, m["confusion_matrix"])) == 2


def test_label_outside_the_scheme_is_an_error(metric):
    with pytest.raises(ValueError, match="bullish"):
        metric.compute(predictions=["bullish"], references=[POS], labels=LABELS3)


# The metric module shipped in the wheel and loaded from an installed copy: tests/docs/slow/test_wheel.py.
