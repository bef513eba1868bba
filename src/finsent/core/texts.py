"""A file of texts to classify (speed benchmarks, export agreement checks), read like every other input."""

from __future__ import annotations

import logging
from pathlib import Path

from finsent.core.errors import UsageError
from finsent.core.prompts import InputError, check_text
from finsent.core.tables import BadRow, TableError, read_table

logger = logging.getLogger(__name__)


class SpeedTextsError(UsageError, ValueError):
    """A speed-texts file that cannot be used; the message names the file, the row and the problem."""


class SpeedTextsNotFoundError(UsageError, FileNotFoundError):
    """The speed-texts file does not exist."""


def load_texts(path: Path, n: int) -> list[str]:
    """The first ``n`` texts (field ``text``) of a csv / jsonl / json / parquet file, e.g. TFNS validation.

    Read by ``finsent.core.tables.read_table`` and checked by ``prompts.check_text``, like every other input;
    an unusable row is an error naming the file and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise SpeedTextsNotFoundError(
            f"benchmark texts not found: {path} (TFNS validation CSV, see shared/data/README.md)")
    texts: list[str] = []
    try:
        for where, row in read_table(path, columns=["text"]):
            if len(texts) == n:
                break
            if isinstance(row, BadRow):
                raise SpeedTextsError(f"{where}: {row.problem}")
            if row.get("text") is None:
                raise SpeedTextsError(f"{where}: no 'text' field (fields: {', '.join(map(str, row)) or 'none'})")
            try:
                texts.append(check_text(row["text"]))
            except InputError as exc:
                raise SpeedTextsError(f"{where}: field 'text': {exc}") from None
    except TableError as exc:
        raise SpeedTextsError(str(exc)) from None
    if not texts:
        raise SpeedTextsError(f"{path}: no texts")
    if len(texts) < n:
        logger.warning("%s has only %d texts (asked for %d)", path, len(texts), n)
    return texts
