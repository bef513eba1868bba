"""Label schemes, FinGPT's 7->3 map, raw benchmark label maps and the strict answer parser."""

import pytest

from finsent.core.labels import (
    ALL_LABELS,
    SCHEMES,
    LabelError,
    check_scheme,
    fiqa_label,
    fpb_label,
    nwgi_label,
    parse_answer,
    scheme_of,
    tfns_label,
    to_coarse,
)


def test_schemes_are_fingpt_order_and_nine_distinct_outputs():
    assert SCHEMES["3"] == ("negative", "neutral", "positive")
    assert SCHEMES["7"][0] == "strong negative" and SCHEMES["7"][-1] == "strong positive"
    assert len(ALL_LABELS) == 9


@pytest.mark.parametrize(
    ("fine", "coarse"),
    [("strong negative", "negative"), ("moderately negative", "negative"), ("mildly negative", "neutral"),
     ("neutral", "neutral"), ("mildly positive", "neutral"), ("moderately positive", "positive"),
     ("strong positive", "positive"), ("positive", "positive")],
)
def test_fingpt_seven_to_three_mapping(fine, coarse):
    assert to_coarse(fine) == coarse


def test_unknown_labels_and_schemes_fail_with_names():
    with pytest.raises(LabelError, match="'very positive'"):
        to_coarse("very positive")
    with pytest.raises(LabelError, match="choose '3' or '7'"):
        check_scheme("5")
    assert check_scheme(7) == "7" and scheme_of("neutral") == "3" and scheme_of("mildly negative") == "7"


def test_benchmark_label_maps():
    assert [fpb_label(i) for i in (0, 1, 2)] == ["negative", "neutral", "positive"]
    assert [tfns_label(i) for i in (0, 1, 2)] == ["negative", "positive", "neutral"]
    assert tfns_label("2") == "neutral" and fpb_label("Positive") == "positive"
    with pytest.raises(LabelError, match="TFNS: unknown label 3"):
        tfns_label(3)
    with pytest.raises(LabelError, match="FPB"):
        fpb_label(True)


def test_fiqa_thresholds_at_the_boundaries():
    assert fiqa_label(-0.1001) == "negative"
    assert fiqa_label(-0.1) == "neutral"
    assert fiqa_label(0.0999) == "neutral"
    assert fiqa_label(0.1) == "positive"
    assert fiqa_label("0.5") == "positive"
    with pytest.raises(LabelError, match="not a number"):
        fiqa_label("n/a")


def test_nwgi_labels_are_seven_class_text():
    assert nwgi_label(" Mildly Positive ") == "mildly positive"
    with pytest.raises(LabelError, match="NWGI"):
        nwgi_label("positive")


@pytest.mark.parametrize(
    ("answer", "scheme", "expected"),
    [("positive", "3", "positive"), (" Negative.\nInput: more", "3", "negative"),
     ("moderately positive\n", "7", "moderately positive"), ("positive news for investors", "3", None),
     ("I think negative", "3", None), ("", "3", None), ("mildly positive", "3", None),
     ("strong  negative", "7", "strong negative")],
)
def test_strict_parser_never_guesses(answer, scheme, expected):
    assert parse_answer(answer, scheme) == expected
