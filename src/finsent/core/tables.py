"""One reader for every table the toolkit reads: training sources, benchmarks, the Space's CSV, speed texts.

The rules are the same for every caller:

- ``.csv``: UTF-8 with or without a byte-order mark (spreadsheets save one); quoted fields may span
  lines; the header must name every column once; a row with more fields than the header is malformed.
- ``.jsonl``: one JSON object per line, blank lines skipped. ``.json``: a JSON array of objects, or
  JSON lines (detected from the first character).
- ``.parquet``: read with pyarrow, batch by batch; column names must be unique.
- A JSON object that gives one field twice is malformed (Python's json would keep the last silently).

A file that cannot be read at all (not UTF-8, a broken parquet, a duplicated header) raises
``TableError`` naming the file and the problem; with ``bad_bytes="row"`` (``finsent classify --input``) a
CSV or JSON-lines row holding bytes that are not UTF-8 is a ``BadRow`` instead, so one bad row of a big
corpus does not refuse the whole file. ``table_files`` names the files of a table given as one file or a
folder of shards, which ``read_tables`` reads one after the other. A single row that cannot be parsed is yielded as a
``BadRow`` (an empty dict with ``.problem``), so each caller decides whether to skip it and count, or
to stop naming ``where`` (``"file: row N (line L)"``). A CSV field longer than ``MAX_FIELD_CHARS`` makes its
row a ``BadRow`` (the rest of the file is read), not a refusal of the file.

Every CSV the toolkit writes for people (``finsent classify --output x.csv``, the Space's result file) passes
its cells through ``spreadsheet_safe``, so that a spreadsheet shows a cell such as ``=HYPERLINK(...)`` as
text instead of evaluating it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from finsent.core.errors import UsageError

SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
# A CSV cell starting with one of these is a formula to a spreadsheet: OWASP's "CSV Injection" page
# (https://owasp.org/www-community/attacks/CSV_Injection) says to prefix such a cell with a single quote.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Python's csv default limit; a longer field is one bad row, never a refusal of the whole file. The parser's
# own limit is far higher so that it reads past such a field (its quoted lines included) and stays in step.
MAX_FIELD_CHARS = 131_072
_PARSER_FIELD_LIMIT = 1 << 28


class TableError(UsageError, ValueError):
    """A file that cannot be read as a table; the message names the file and the problem."""


class BadRow(dict):
    """A row that could not be parsed; ``problem`` says why. Empty, so field lookups find nothing."""

    def __init__(self, problem: str):
        super().__init__()
        self.problem = problem


def spreadsheet_safe(value) -> str:
    """A CSV cell a spreadsheet shows as text, never evaluates: a leading ' before = + - @ tab or CR (OWASP)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def read_table(path, *, columns: list[str] | None = None, bad_bytes: str = "file") -> Iterator[tuple[str, dict]]:
    """Yield ``(where, row)`` for every row of a local table file; see the module's rules.

    ``columns``, when given, must all be present (CSV header, else checked per row by the caller).
    ``bad_bytes``: ``"file"`` refuses a file holding bytes that are not UTF-8 (``TableError``); ``"row"``
    yields the CSV or JSON-lines rows holding them as ``BadRow`` naming the byte and the column.
    """
    if bad_bytes not in ("file", "row"):
        raise ValueError(f"bad_bytes must be 'file' or 'row', got {bad_bytes!r}")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TableError(f"{path}: unsupported file type {suffix or '(none)'!r}: use {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise TableError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    errors = "surrogateescape" if bad_bytes == "row" else "strict"
    try:
        if suffix == ".csv":
            rows = _csv_rows(path, columns, errors)
        elif suffix == ".parquet":
            rows = _parquet_rows(path)
        elif suffix == ".json" and _first_char(path) == "[":
            rows = _json_array_rows(path)
        else:
            rows = _jsonl_rows(path, errors)
        for where, row in rows:
            if errors != "strict" and not isinstance(row, BadRow):
                problem = _undecodable(row)
                if problem:
                    row = BadRow(problem)
            yield where, row
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): "
                         "save it as UTF-8") from None


def csv_header(path, *, bad_bytes: str = "file") -> list[str]:
    """The checked header of a CSV file (UTF-8, BOM allowed, no duplicated or empty names).

    ``bad_bytes="row"``: bytes that are not UTF-8 further in the file are left to ``read_table``'s rows.
    """
    path = Path(path)
    _raise_parser_limit()
    try:
        with open(path, encoding="utf-8-sig", newline="",
                  errors="surrogateescape" if bad_bytes == "row" else "strict") as handle:
            return _check_header(path, next(csv.reader(handle), None))
    except UnicodeDecodeError as exc:
        raise TableError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}): "
                         "save it as UTF-8") from None
    except csv.Error as exc:
        raise TableError(f"{path}: not a valid CSV ({exc})") from None


def _check_header(path: Path, header: list[str] | None) -> list[str]:
    if not header:
        raise TableError(f"{path}: empty file (no CSV header)")
    names = [h.strip() for h in header]
    if "" in names:
        raise TableError(f"{path}: header column {names.index('') + 1} has no name")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TableError(f"{path}: the header names column(s) {', '.join(map(repr, dupes))} more than once: "
                         "rename them so each column has one name")
    return names


def table_files(path) -> list[Path]:
    """The files of a table: ``path`` itself, or a folder's table files (shards) sorted by name.

    In a folder, hidden entries (``.name``) are skipped; anything else that is not a table file, and a
    folder holding none, is a ``TableError``. Sub-folders are not read.
    """
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: no such file or folder")
    if not path.is_dir():
        if path.suffix.lower() not in SUFFIXES:
            raise TableError(f"{path}: unsupported file type {path.suffix or '(none)'!r}: use {', '.join(SUFFIXES)}")
        return [path]
    files, other = [], []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        (files if entry.is_file() and entry.suffix.lower() in SUFFIXES else other).append(entry)
    if other:
        raise TableError(f"{path}: a folder of table shards holds {other[0].name!r}, which is not a "
                         f"{', '.join(SUFFIXES)} file: move it out of the folder")
    if not files:
        raise TableError(f"{path}: the folder holds no table file ({', '.join(SUFFIXES)})")
    return files


def read_tables(files, *, columns: list[str] | None = None, bad_bytes: str = "file") -> Iterator[tuple[str, dict]]:
    """``read_table`` over several files (``table_files``), one after the other."""
    for file in files:
        yield from read_table(file, columns=columns, bad_bytes=bad_bytes)


def _undecodable(row: dict) -> str | None:
    """The problem of a row decoded with surrogateescape that holds a byte that is not UTF-8, else None."""
    for key, value in row.items():
        for what, text in (("column name", key), (f"column {key!r}", value)):
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as exc:
                    char = text[exc.start]
                    if "\udc80" <= char <= "\udcff":  # surrogateescape's stand-in for an undecodable byte
                        return f"not UTF-8 text (byte 0x{ord(char) - 0xDC00:02x} in the {what})"
                    return f"not valid Unicode (lone surrogate {char!r} in the {what})"
    return None


def _csv_rows(path: Path, columns: list[str] | None, errors: str = "strict") -> Iterator[tuple[str, dict]]:
    # utf-8-sig drops a leading BOM; newline="" lets csv handle CRLF and quoted multi-line fields.
    _raise_parser_limit()
    with open(path, encoding="utf-8-sig", newline="", errors=errors) as handle:
        reader = csv.reader(handle)
        try:
            header = _check_header(path, next(reader, None))
            missing = [c for c in columns or () if c not in header]
            if missing:
                raise TableError(f"{path}: no column {', '.join(map(repr, missing))} "
                                 f"(its columns: {', '.join(map(repr, header))})")
            n = 0  # data rows as a spreadsheet numbers them under the header: blank lines are not rows
            for fields in reader:
                if not fields:
                    continue
                n += 1
                where = f"{path}: row {n} (line {reader.line_num})"
                if len(fields) != len(header):
                    yield where, BadRow(f"{len(fields)} fields, the header has {len(header)}")
                    continue
                if max(map(len, fields)) > MAX_FIELD_CHARS:
                    yield where, BadRow(_too_long(header, fields))
                    continue
                yield where, dict(zip(header, fields))
        except csv.Error as exc:
            raise TableError(f"{path}: not a valid CSV at line {reader.line_num} ({exc})") from None


def _raise_parser_limit() -> None:
    if csv.field_size_limit() < _PARSER_FIELD_LIMIT:
        csv.field_size_limit(_PARSER_FIELD_LIMIT)


def _too_long(header: list[str], fields: list[str]) -> str:
    column, value = max(zip(header, fields), key=lambda pair: len(pair[1]))
    return f"column {column!r} holds {len(value):,} characters, more than the {MAX_FIELD_CHARS:,} a CSV field may hold"


def _first_char(path: Path) -> str:
    with open(path, encoding="utf-8-sig") as handle:
        for line in handle:
            if line.strip():
                return line.strip()[0]
    return ""


class _DuplicateKey(ValueError):
    pass


def _object(pairs: list[tuple[str, object]]) -> dict:
    """json's object hook: a key given twice in one object is an error (json keeps the last one silently)."""
    row = dict(pairs)
    if len(row) != len(pairs):
        names = [k for k, _ in pairs]
        raise _DuplicateKey(f"field(s) {', '.join(sorted({repr(k) for k in names if names.count(k) > 1}))} "
                            "given more than once")
    return row


def _json_array_rows(path: Path) -> Iterator[tuple[str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"), object_pairs_hook=_object)
    except json.JSONDecodeError as exc:
        raise TableError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except _DuplicateKey as exc:
        raise TableError(f"{path}: an object has {exc}") from None
    for n, row in enumerate(data, 1):
        yield f"{path}: row {n}", row if isinstance(row, dict) else BadRow("not a JSON object")


def _jsonl_rows(path: Path, errors: str = "strict") -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8-sig", errors=errors) as handle:
        for n, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=_object)
            except json.JSONDecodeError as exc:
                yield f"{path}: line {n}", BadRow(f"invalid JSON ({exc.msg})")
                continue
            except _DuplicateKey as exc:
                yield f"{path}: line {n}", BadRow(str(exc))
                continue
            yield f"{path}: line {n}", row if isinstance(row, dict) else BadRow("not a JSON object")


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    def broken(exc: Exception) -> TableError:
        return TableError(f"{path}: not a readable parquet file ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})")

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for a broken file
        raise broken(exc) from None
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TableError(f"{path}: the file names column(s) {', '.join(map(repr, dupes))} more than once: "
                         "rename them so each column has one name")
    n = 0
    batches = parquet.iter_batches(batch_size=4096)  # bounded memory for big files
    while True:
        try:
            batch = next(batches, None)
        except Exception as exc:  # a corrupt page further in
            raise broken(exc) from None
        if batch is None:
            return
        for row in batch.to_pylist():
            n += 1
            yield f"{path}: row {n}", row
