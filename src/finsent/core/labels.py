"""Label schemes of Llama-FinSent-S and the label maps of the FinGPT benchmarks.

Everything that knows what a label *is* lives here, once: the 3- and 7-class schemes, the
FinGPT 7 -> 3 mapping, the raw label encodings of FPB / TFNS / FiQA-SA / NWGI, and the strict
parser for generated answers.
"""

from __future__ import annotations

import math
import re

from finsent.core.errors import UsageError

NEGATIVE, NEUTRAL, POSITIVE = "negative", "neutral", "positive"

# Order matters: it is the order of probabilities, tables and confusion matrices.
SCHEMES: dict[str, tuple[str, ...]] = {
    "3": (NEGATIVE, NEUTRAL, POSITIVE),
    "7": (
        "strong negative",
        "moderately negative",
        "mildly negative",
        NEUTRAL,
        "mildly positive",
        "moderately positive",
        "strong positive",
    ),
}

# Every answer the fine-tuning set contains (FinGPT's 9 distinct outputs).
ALL_LABELS: tuple[str, ...] = tuple(dict.fromkeys(SCHEMES["3"] + SCHEMES["7"]))


class LabelError(UsageError, ValueError):
    """A label that belongs to no scheme, or a raw value a benchmark map does not know."""


def check_scheme(scheme: str | int) -> str:
    """Normalise a scheme given as 3, "3", 7 or "7"; anything else is an error naming the choices."""
    key = str(scheme).strip()
    if key not in SCHEMES:
        raise LabelError(f"unknown label scheme {scheme!r}: choose '3' or '7'")
    return key


def labels_of(scheme: str | int) -> tuple[str, ...]:
    return SCHEMES[check_scheme(scheme)]


def scheme_of(label: str) -> str:
    """The smallest scheme a label belongs to ('neutral' is in both and reports '3')."""
    for key, labels in SCHEMES.items():
        if label in labels:
            return key
    raise LabelError(f"unknown label {label!r}: expected one of {', '.join(ALL_LABELS)}")


def to_coarse(label: str) -> str:
    """FinGPT's 7 -> 3 mapping (used for NWGI): strong/moderately keep their polarity, mildly is neutral."""
    if label in SCHEMES["3"]:
        return label
    if label not in SCHEMES["7"]:
        raise LabelError(f"unknown label {label!r}: expected one of {', '.join(ALL_LABELS)}")
    degree, polarity = label.split(" ", 1)
    return NEUTRAL if degree == "mildly" else polarity


# --- raw encodings of the benchmark datasets, as their Hugging Face dataset cards define them ----------

FPB_LABELS = {0: NEGATIVE, 1: NEUTRAL, 2: POSITIVE}
TFNS_LABELS = {0: NEGATIVE, 1: POSITIVE, 2: NEUTRAL}  # Bearish, Bullish, Neutral


def _lookup(name: str, table: dict[int, str], raw: object) -> str:
    """Accept either the integer code or the label name itself (local files carry both kinds)."""
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in table.values():
            return text
        if re.fullmatch(r"-?\d+", text):
            raw = int(text)
    if isinstance(raw, (int,)) and not isinstance(raw, bool) and raw in table:
        return table[raw]
    raise LabelError(f"{name}: unknown label {raw!r}; expected one of {sorted(table)} or {list(table.values())}")


def fpb_label(raw: object) -> str:
    return _lookup("FPB", FPB_LABELS, raw)


def tfns_label(raw: object) -> str:
    return _lookup("TFNS", TFNS_LABELS, raw)


def fiqa_label(score: object) -> str:
    """FiQA-SA sentiment scores in [-1, 1]: < -0.1 negative, < 0.1 neutral, else positive."""
    try:
        value = float(score)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise LabelError(f"FiQA-SA: sentiment score {score!r} is not a number") from None
    if math.isnan(value):
        raise LabelError("FiQA-SA: sentiment score is NaN")
    if value < -0.1:
        return NEGATIVE
    return NEUTRAL if value < 0.1 else POSITIVE


def fiqa_kind(fmt: object) -> str:
    """The instruction word of a FiQA-SA row from its ``format``, for training and evaluation alike.

    FinGPT's FiQA-SA benchmark says "tweet" for ``format == "post"`` (microblog posts) and "news" for
    everything else (headlines), so a row without a format is "news". A format that is neither is an
    error rather than a guess.
    """
    text = "" if fmt is None else str(fmt).strip().lower()
    if text == "post":
        return "tweet"
    if text in ("", "headline"):
        return "news"
    raise LabelError(f"FiQA-SA: unknown format {fmt!r}: expected 'post' or 'headline' (or none: news)")


def nwgi_label(raw: object) -> str:
    """NWGI stores the 7-class label as text (e.g. 'moderately positive')."""
    text = str(raw).strip().lower()
    if text not in SCHEMES["7"]:
        raise LabelError(f"NWGI: unknown label {raw!r}; expected one of {', '.join(SCHEMES['7'])}")
    return text


# --- parsing generated answers -----------------------------------------------------------------


def parse_answer(answer: str, scheme: str | int) -> str | None:
    """Strictly parse a generated answer: the first line must *be* a label of the scheme.

    Unlike FinGPT's substring parser (which maps anything unrecognised to neutral), an answer such
    as "positive news for investors" or "I think negative" returns None, so it can be counted as
    unparseable instead of silently scoring as a class.
    """
    lines = answer.strip().splitlines()
    first = lines[0] if lines else ""
    first = re.sub(r"\s+", " ", first).strip().strip(".!;,:'\"").strip().lower()
    return first if first in labels_of(scheme) else None
