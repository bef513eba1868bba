"""What ``finsent classify --input X --output Y`` knows of its input before any work, for both engines.

- ``check_paths``: the output is never the input, never inside the input folder, never inside a run's work
  folder (``.<output name>.parts``) and never a run's errors list; the input is never inside a work folder
  nor the output's errors list. A later run or resume would otherwise read one file's rows into another.
- ``scan_input``: one pass over the input: the row count, the columns (a CSV's header even when it has no
  rows), every column's value types, the rows that cannot be classified (kept for the Ray engine, whose
  readers stop at a malformed row) and a SHA-256 of every file's bytes. The digests are the input's part of a
  run's fingerprint: a resume after an edit that kept the file's size and time is refused all the same.
- ``Scan.arrow_schema``: the parquet types of the input columns, decided from every row before the work, so
  that every part of a parquet output has the same schema; a column whose values no single parquet type
  holds (``1`` in one row, ``"a"`` in another) is refused before anything is classified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from finsent.core.errors import UsageError
from finsent.core.prompts import InputError, check_text
from finsent.core.provenance import file_sha256
from finsent.core.tables import BadRow, TableError, csv_header, read_table

WORK_FOLDER = re.compile(r"\..+\.parts")  # parts_dir's names
ERRORS_SUFFIX = ".errors.jsonl"
_KEPT_BAD_ROWS = 10_000  # bad rows remembered one by one (all of them are counted)
_HASH_BLOCK = 1 << 20


def parts_dir(output: Path) -> Path:
    """The work folder of the run writing ``output``: its parts, state and lock."""
    return output.with_name(f".{output.name}.parts")


def check_paths(input, output) -> None:
    """Refuse, before anything is read or written, an output that a later run would read back or mix up."""
    src, dst = Path(input).resolve(), Path(output).resolve()
    work = next((p for p in dst.parents if WORK_FOLDER.fullmatch(p.name)), None)
    if work is not None:
        raise UsageError(f"the output {output} is inside {work}, the work folder of a finsent classify run: "
                         "write the output elsewhere")
    if dst.name.endswith(ERRORS_SUFFIX):
        raise UsageError(f"the output {output} is named like the skipped-rows list of a finsent classify "
                         f"output ({ERRORS_SUFFIX}): choose another name")
    if src == dst or (src.is_file() and dst.is_file() and src.samefile(dst)):
        raise UsageError(f"the output {output} is the input: choose another output file")
    if src.is_dir() and src in dst.parents:
        raise UsageError(f"the output {output} is inside the input folder {input}: a later run would read it as a "
                         "shard; write it elsewhere")
    work = next((p for p in (src, *src.parents) if WORK_FOLDER.fullmatch(p.name)), None)
    if work is not None:
        raise UsageError(f"the input {input} is inside {work}, the work folder of a finsent classify run: "
                         "classify the original input, or the finished output")
    if src == dst.with_name(dst.name + ERRORS_SUFFIX):
        raise UsageError(f"the input {input} is the skipped-rows list of the output {output}, which this run "
                         "replaces: copy it elsewhere first")


def row_text(row: dict, text_column: str) -> tuple[str | None, str | None]:
    """``(text, None)`` for a row that can be classified, else ``(None, problem)``: one rule, both engines."""
    if isinstance(row, BadRow):
        return None, f"malformed row: {row.problem}"
    if text_column not in row:
        return None, f"no {text_column!r} field"
    try:
        return check_text(row[text_column]), None
    except InputError as exc:
        return None, str(exc)


@dataclass
class Scan:
    """One pass over the input (see the module docstring)."""

    files: list[Path]
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)  # SHA-256 of each file's bytes, in ``files`` order
    # column -> {arrow type: where it was first seen}, over the rows that will be written / over every row read
    types: dict = field(default_factory=dict)
    read_types: dict = field(default_factory=dict)
    big_ints: dict = field(default_factory=dict)  # column -> where an integer beyond 2**53 (inexact as double) is
    bad: list[tuple[int, str, str]] = field(default_factory=list)  # (row index, where, problem), the first ones
    bad_count: int = 0
    malformed: tuple[int, str, str] | None = None  # the first row the reader could not parse

    def arrow_schema(self, what: str = "one parquet column", *, every_row: bool = False):
        """The input columns' arrow schema, or ``UsageError`` naming a column that no one type holds.

        ``every_row``: over the rows that cannot be classified too (what a reader of the whole file meets).
        """
        import pyarrow as pa

        fields = []
        for name in self.columns:
            seen = (self.read_types if every_row else self.types).get(name, {})
            schema = pa.schema([(name, pa.null())])
            for kind, where in seen.items():
                try:
                    if isinstance(kind, str):
                        raise pa.ArrowTypeError(kind)
                    schema = pa.unify_schemas([schema, pa.schema([(name, kind)])], promote_options="permissive")
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    first = next(iter(seen.items()))
                    mix = f"{first[0]} ({first[1]}) and {kind} ({where})" if first[0] != kind else f"{kind} ({where})"
                    raise UsageError(f"column {name!r} holds {mix}, which {what} cannot hold: give the column one "
                                     "type, or write .jsonl or .csv (nothing was written)") from None
            if name in self.big_ints and len(seen) > 1:
                other = next(f"{k} ({w})" for k, w in seen.items() if k != pa.int64())
                raise UsageError(f"column {name!r} holds an integer beyond 2**53 ({self.big_ints[name]}) and {other}, "
                                 f"which {what} cannot hold exactly: give the column one type, or write .jsonl or "
                                 ".csv (nothing was written)")
            fields.append(schema.field(name))
        return pa.schema(fields)


def scan_input(files: list[Path], text_column: str, added: list[str]) -> Scan:
    """Read the input once (see the module docstring); refuse a missing text column or one of ``added``."""
    scan, columns = Scan(files), {}
    for file in files:
        scan.digests.append(file_sha256(file))
        suffix = file.suffix.lower()
        if suffix == ".parquet":
            _scan_parquet(scan, file, columns)
            continue
        if suffix == ".csv":
            header = csv_header(file, bad_bytes="row")
            columns.update(dict.fromkeys(header))
            _note_types(scan, (scan.types, scan.read_types), dict.fromkeys(header, ""), f"{file}: header")
        for where, row in read_table(file, bad_bytes="row"):
            if len(row) != len(columns) or any(k not in columns for k in row):
                columns.update(dict.fromkeys(row))
            _, problem = row_text(row, text_column)
            if problem is not None:
                _note_bad(scan, where, problem, isinstance(row, BadRow))
            if suffix != ".csv":
                _note_types(scan, (scan.read_types,) if problem else (scan.types, scan.read_types), row, where)
            scan.rows += 1
    scan.columns = list(columns)
    clash = [c for c in added if c in columns]
    if clash:
        raise UsageError(f"the input has column(s) {', '.join(map(repr, clash))}, which classify adds: rename "
                         "them in the input (nothing was written)")
    if scan.rows and text_column not in columns:
        raise UsageError(f"the input has no column {text_column!r} (its columns: "
                         f"{', '.join(map(repr, scan.columns))}): name the text column with --text-column")
    if all(f.suffix.lower() == ".parquet" for f in files):
        scan.arrow_schema("one column of the parquet shards")  # shards that disagree are refused for any output
    return scan


def _scan_parquet(scan: Scan, file: Path, columns: dict) -> None:
    """Rows and column types from the file's metadata (its values are checked by the engines as they read)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(file)
        schema = meta.schema_arrow
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for a broken file
        raise TableError(f"{file}: not a readable parquet file ({type(exc).__name__}: {exc})") from None
    names = schema.names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise TableError(f"{file}: the file names column(s) {', '.join(map(repr, dupes))} more than once")
    scan.rows += meta.metadata.num_rows
    columns.update(dict.fromkeys(names))
    for f in schema:
        for types in (scan.types, scan.read_types):
            types.setdefault(f.name, {}).setdefault(f.type, str(file))


def _note_bad(scan: Scan, where: str, problem: str, malformed: bool) -> None:
    entry = (scan.rows, where, problem)
    if malformed and scan.malformed is None:
        scan.malformed = entry
    if len(scan.bad) < _KEPT_BAD_ROWS:
        scan.bad.append(entry)
    scan.bad_count += 1


def _note_types(scan: Scan, targets: tuple[dict, ...], row: dict, where: str) -> None:
    for key, value in row.items():
        if value is None:
            continue
        kind = _arrow_type(value)
        if type(value) is int and value not in _EXACT_IN_DOUBLE:
            scan.big_ints.setdefault(key, where)
        for types in targets:
            types.setdefault(key, {}).setdefault(kind, where)


_INT64 = range(-(1 << 63), 1 << 63)
_EXACT_IN_DOUBLE = range(-(1 << 53), (1 << 53) + 1)


def _arrow_type(value):
    """The arrow type of a JSON value (as ``pa.array`` infers it), or a string saying why there is none."""
    import pyarrow as pa

    if isinstance(value, str):
        return pa.string()
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int) and value in _INT64:
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    try:
        return pa.array([value]).type
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        return f"a value no arrow type holds ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
