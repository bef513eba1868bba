"""One raw row of a dataset schema as (text, gold label, kind): the mapping training and evaluation share.

The schemas are the FinGPT benchmarks' (fpb, tfns, fiqa, nwgi), FinGPT's instruction rows (fingpt, read by
``finsent.build.data``) and the project's own headlines (finsent). ``schema_row`` is used by training
(``finsent.build.data``) and evaluation (``finsent.evaluation.benchmarks``), so a row means the same in both.
"""

from __future__ import annotations

from finsent.core.labels import (
    SCHEMES,
    LabelError,
    fiqa_kind,
    fiqa_label,
    fpb_label,
    labels_of,
    nwgi_label,
    tfns_label,
    to_coarse,
)
from finsent.core.prompts import KINDS, InputError, check_text
from finsent.core.tables import BadRow

SCHEMAS = ("fingpt", "fpb", "tfns", "fiqa", "nwgi", "finsent")
# The instruction word of a schema's rows when the row does not say (FiQA-SA's format, finsent's kind do).
SCHEMA_KIND = {"fingpt": "news", "fpb": "news", "tfns": "tweet", "fiqa": "news", "nwgi": "news", "finsent": "news"}


class DataError(InputError):
    """A data source or row that cannot be used; the message names the file, the row and the problem."""


def _field(row: dict, name: str):
    if isinstance(row, BadRow):
        raise DataError(row.problem)
    if not isinstance(row, dict):
        raise DataError(f"expected an object with fields, got {type(row).__name__}")
    if name not in row or row[name] is None:
        raise DataError(f"missing field {name!r} (fields: {', '.join(map(str, row)) or 'none'})")
    return row[name]


def _text(row: dict, name: str) -> str:
    """A text field through the one input-text rule (``prompts.check_text``), errors naming the field."""
    try:
        return check_text(_field(row, name))
    except DataError:
        raise
    except InputError as exc:
        raise DataError(f"field {name!r}: {exc}") from None


def schema_row(schema: str, row: dict, scheme: str) -> tuple[str, str, str]:
    """``(text, gold label in scheme, kind)`` of one raw row of a benchmark schema (fpb, tfns, fiqa, nwgi, finsent).

    The one mapping of every schema, used by training (``row_example``) and evaluation
    (``finsent.evaluation.benchmarks``), so a row means the same in both: the text goes through
    ``prompts.check_text``, the label through ``finsent.core.labels``, and the kind (the instruction's
    "news" or "tweet") is the row's own where the schema has one (FiQA-SA's ``format`` through
    ``labels.fiqa_kind``, finsent's ``kind``), else the schema's (``SCHEMA_KIND``). Raises
    ``InputError`` / ``LabelError`` naming the field and the problem (the caller adds file and row).
    """
    scheme = str(scheme)
    kind = None
    if schema == "fpb":
        text, label = _text(row, "sentence"), fpb_label(_field(row, "label"))
    elif schema == "tfns":
        text, label = _text(row, "text"), tfns_label(_field(row, "label"))
    elif schema == "fiqa":
        text, label = _text(row, "sentence"), fiqa_label(_field(row, "sentiment_score"))
        kind = fiqa_kind(row.get("format"))
    elif schema == "nwgi":
        text, fine = _text(row, "news"), nwgi_label(_field(row, "label"))
        label = fine if scheme == "7" else to_coarse(fine)
    elif schema == "finsent":
        # The project's own headlines carry both golds: "label" (7 classes) and "coarse" (3 classes).
        text = _text(row, "text")
        fine, coarse = _text(row, "label").lower(), _text(row, "coarse").lower()
        if fine not in SCHEMES["7"]:
            raise LabelError(f"unknown 7-class label {fine!r} in 'label'")
        if coarse != to_coarse(fine):
            raise LabelError(f"'coarse' is {coarse!r} but 'label' {fine!r} maps to {to_coarse(fine)!r}")
        label = fine if scheme == "7" else coarse
        kind = row.get("kind") or None
        if kind is not None and kind not in KINDS:
            raise DataError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    else:
        raise DataError(f"unknown schema {schema!r}; choose one of {', '.join(SCHEMAS)}")
    if label not in labels_of(scheme):
        raise LabelError(f"label {label!r} is not one of {', '.join(labels_of(scheme))}")
    return text, label, kind or SCHEMA_KIND[schema]
