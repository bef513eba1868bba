"""Classify a corpus file to file: ``finsent classify --input PATH --output PATH``, resumable, in bounded memory.

The input is a CSV, JSON-lines or parquet file, or a folder of such shards (read in name order, hidden
entries skipped); the output's suffix (``.csv``, ``.jsonl``, ``.parquet``) chooses its format. Every input
column is kept, in order, and the classifier's columns are added after them::

    predicted_label, p_<label> ...        (3 classes: p_negative, p_neutral, p_positive; 7 classes:
                                           p_strong_negative ... with spaces as underscores)

An input column with one of those names is refused before any work (rename it).

How a run goes:

1. The input is scanned once (rows counted, columns gathered: the progress bar's total, and a file that
   cannot be read at all is refused now, not hours in).
2. Rows are read in chunks of ``chunk_rows`` (1,024). Each chunk is classified by
   ``FinSentClassifier.classify``, which sorts the chunk's texts by token length into batches (less
   padding) and returns the results in input order. Each finished chunk is one part file,
   ``.<output name>.parts/part-<first row>-<end row>.<suffix>``, written to a temporary name and
   renamed, after its ``.errors.jsonl`` side file when it skipped rows. ``state.json`` in that folder
   holds the run's fingerprint: the input files (path, size, modification time and a SHA-256 of their
   bytes), the model (its folder's config and weights' sizes and times, or its name), the scheme, the kind
   and the text column.
3. When every row is done, the parts are concatenated into a temporary sibling of the output, which is
   renamed onto the output (one atomic step), the skipped rows go to ``<output>.errors.jsonl``, and the
   parts folder is removed.

A run killed at any moment is resumed by the same command: the parts on disk say which input rows are
done (their names give the row range), so the run continues at the first missing row, with no row lost or
written twice. A parts folder from a different input, model, scheme, kind or text column is refused
(``--overwrite`` discards it and starts again): an input edited since, even to the same size and time, is
another input. So is a parts folder finsent did not write, an existing output (``--overwrite`` replaces it
when the new one is complete), a second run writing the same output at the same time (a lock), and an output
that a run would read back or mix up (the input itself, a file in the input folder, a file in a parts folder:
``finsent.corpus.inputs.check_paths``).

Rows that cannot be classified (an empty text, text that is not UTF-8 or valid Unicode, a row missing the
text column, a malformed CSV row or JSON line) are reported on stderr with their file and row number and
listed in ``<output>.errors.jsonl`` (one JSON object a row: ``row``, the 1-based input row over all shards,
``where`` and ``problem``). ``on_error="skip"`` (the default: one bad row of a million should not stop an
overnight run, and every skip is listed) leaves them out of the output; ``on_error="fail"`` stops at the
first one, keeping the finished parts so that a corrected run can start over or this one resume.

Value types: CSV cells stay strings; JSON values are written back as JSON; parquet columns keep their
arrow types. Writing another format converts: a JSON or parquet value that is not a string is written
into CSV as JSON (``3``, ``true``, ``{"a": 1}``), an empty cell for a missing value. A parquet output's
column types are decided from the whole input before the work (JSON ``1`` and ``2.5``: double), and a column
whose values no one type holds is refused then. A CSV output's cells (header included) pass through
``finsent.core.tables.spreadsheet_safe``: a cell starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading
``'``, so that a spreadsheet shows it as text and never runs it as a formula.

``finsent classify --engine ray`` runs the same job on Ray Data: see ``finsent.corpus.ray_engine``.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from finsent.core.classify import FinSentClassifier, iter_chunks
from finsent.core.errors import FinsentError, UsageError
from finsent.core.labels import check_scheme, labels_of
from finsent.core.models import resolve_model
from finsent.core.outputs import OutputError
from finsent.core.prompts import KINDS, InputError
from finsent.core.tables import read_tables, spreadsheet_safe, table_files
from finsent.corpus.inputs import Scan, check_paths, parts_dir, row_text, scan_input

logger = logging.getLogger(__name__)

FORMATS = (".csv", ".jsonl", ".parquet")
ON_ERROR = ("skip", "fail")
ENGINES = ("local", "ray")
CHUNK_ROWS = 1024
LABEL_COLUMN = "predicted_label"
STATE = "state.json"
_PART_RE = re.compile(r"part-(\d{12})-(\d{12})\.(csv|jsonl|parquet)")
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_SHOWN_ERRORS = 20  # skipped rows named on stderr one by one; the rest are counted (all are in the errors file)


def prob_column(label: str) -> str:
    """The probability column of a label: ``p_`` + the label with spaces as underscores."""
    return "p_" + label.replace(" ", "_")


def output_columns(scheme) -> list[str]:
    """The columns the classifier adds, in order."""
    return [LABEL_COLUMN] + [prob_column(label) for label in labels_of(check_scheme(scheme))]


def output_format(path) -> str:
    """The output format (``.csv``, ``.jsonl``, ``.parquet``) from the output path's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"output {path}: unsupported file type {suffix or '(none)'!r}: end the name with "
                         f"{', '.join(FORMATS)}")
    return suffix


@dataclass
class CorpusResult:
    """What a run did: rows in the input, rows written, rows skipped (listed in ``errors_path``)."""

    output: Path
    rows: int
    written: int
    skipped: int
    errors_path: Path | None
    resumed_at: int = 0  # input rows that were already done when this run started
    seconds: float = 0.0
    classified: int = 0  # rows this run classified (excludes resumed ones)

    @property
    def items_per_s(self) -> float:
        return self.classified / self.seconds if self.seconds else 0.0


# --- fingerprint ------------------------------------------------------------------------------------------


def _stat(path: Path) -> dict:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def model_fingerprint(model) -> dict:
    """The model as ``models.resolve_model`` names it; a local folder adds its files' sizes and times."""

    choice = resolve_model(model)
    path = Path(choice).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and (p.suffix in (".json", ".safetensors", ".bin")))
        return {"model": str(path.resolve()), "files": [dict(_stat(p), path=p.name) for p in files]}
    return {"model": choice}


def fingerprint(scan: Scan, *, model, scheme, kind: str, text_column: str) -> dict:
    return {
        "input": [dict(_stat(f), sha256=digest) for f, digest in zip(scan.files, scan.digests)],
        "model": model_fingerprint(model),
        "scheme": check_scheme(scheme),
        "kind": kind,
        "text_column": text_column,
    }


def _differences(old: dict, new: dict) -> list[str]:
    names = {"text_column": "text column"}
    return [names.get(k, k) for k in new if old.get(k) != new[k]]


# --- values ------------------------------------------------------------------------------------------------


def _json_default(value):
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "backslashreplace")
    return str(value)  # datetimes, decimals... from parquet


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def _prediction_fields(pred, labels) -> dict:
    row = {LABEL_COLUMN: pred.label}
    for label in labels:
        row[prob_column(label)] = pred.probs[label]
    return row


# --- the job: parts folder, state, lock, parts, final concatenation ------------------------------------


@dataclass
class Job:
    """The output side of a run, shared by both engines: the checks, the parts, the resume point and the end."""

    output: Path
    fmt: str
    scan: Scan
    scheme: str
    on_error: str
    parts: Path
    done: int = 0  # input rows covered by parts on disk
    written: int = 0
    skipped: int = 0
    shown: int = 0
    # the parts' parquet types are those of the rows as read (inferred per part, unified at the end), not the
    # scan's: Ray's JSON-lines reader (pandas) has its own types
    reader_types: bool = False
    _lock: object = None
    _labels: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return self.scan.columns + output_columns(self.scheme)

    @property
    def errors_path(self) -> Path:
        return self.output.with_name(self.output.name + ".errors.jsonl")

    def arrow_schema(self):
        """The parts' parquet schema, decided from the whole input before the work (every part has it)."""
        import pyarrow as pa

        ours = [pa.field(LABEL_COLUMN, pa.string())] + [pa.field(prob_column(lb), pa.float64()) for lb in self._labels]
        return pa.schema(list(self.scan.arrow_schema()) + ours)

    # parts ------------------------------------------------------------------------------------------

    def _part_files(self) -> list[tuple[int, int, Path]]:
        found = []
        for path in self.parts.iterdir():
            m = _PART_RE.fullmatch(path.name)
            if m and "." + m.group(3) == self.fmt:
                found.append((int(m.group(1)), int(m.group(2)), path))
        return sorted(found)

    def _contiguous_parts(self) -> list[tuple[int, int, Path]]:
        """The parts that cover input rows 0..done without a gap (written in order, so all of them)."""
        chain, end = [], 0
        for start, stop, path in self._part_files():
            if start != end:
                break
            chain.append((start, stop, path))
            end = stop
        return chain

    def write_part(self, start: int, stop: int, rows: list[dict], errors: list[dict]) -> None:
        """Write the part holding input rows [start, stop) atomically: its errors side file first, then the part."""
        if start != self.done:
            raise RuntimeError(f"part starting at row {start} written while {self.done} rows are done")
        name = f"part-{start:012d}-{stop:012d}"
        if errors:
            text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors)
            _write_atomic(self.parts / f"{name}.errors.jsonl", text.encode("utf-8"))
        _write_atomic(self.parts / f"{name}{self.fmt}", self._encode(rows))
        self.done = stop
        self.written += len(rows)
        self.skipped += len(errors)

    def _encode(self, rows: list[dict]) -> bytes:
        if self.fmt == ".jsonl":
            return "".join(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows).encode()
        if self.fmt == ".csv":  # no header: the final file gets one, from state.json's columns
            buf = io.StringIO(newline="")
            writer = csv.writer(buf, lineterminator="\n")
            cols = self.columns
            for r in rows:
                writer.writerow([spreadsheet_safe(_cell(r.get(c))) for c in cols])
            return buf.getvalue().encode("utf-8")
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if self.reader_types:  # inferred per part, unified when the parts are joined
                table = (pa.Table.from_pylist([{c: r.get(c) for c in self.columns} for r in rows]) if rows
                         else self.arrow_schema().empty_table())
            else:
                table = pa.Table.from_pylist(rows, schema=self.arrow_schema())
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # the values read are not those the scan saw
            raise FinsentError(f"a value does not fit the parquet types read from the input before the work "
                               f"({str(exc).splitlines()[0]}): write .jsonl or .csv instead") from None
        buf = io.BytesIO()
        pq.write_table(table, buf)
        return buf.getvalue()

    # errors -----------------------------------------------------------------------------------------

    def bad_row(self, index: int, where: str, problem: str) -> dict:
        """A row that cannot be classified: raise (``fail``) or report it and return its errors-file record."""
        if self.on_error == "fail":
            raise InputError(f"{where}: {problem} (nothing was written for this chunk; --on-error skip skips "
                             "such rows and lists them)")
        if self.shown < _SHOWN_ERRORS:
            logger.warning("skipped %s: %s", where, problem)
        elif self.shown == _SHOWN_ERRORS:
            logger.warning("more rows skipped: all are listed in %s", self.errors_path)
        self.shown += 1
        return {"row": index + 1, "where": where, "problem": problem}

    # the end ----------------------------------------------------------------------------------------

    def finish(self) -> None:
        """Join the parts into the output (atomic rename), write or remove the errors file, drop the parts."""
        parts = self._contiguous_parts()
        if (parts[-1][1] if parts else 0) != self.scan.rows:
            raise FinsentError(f"{self.parts}: the parts cover {self.done} of {self.scan.rows} rows; run again")
        joined = self.parts / f"final{self.fmt}"
        tmp = self.parts / f".final{self.fmt}.tmp"
        self._join([p for _, _, p in parts], tmp)
        os.replace(tmp, joined)
        state = self._read_state()
        state["finished"] = True
        _write_atomic(self.parts / STATE, (json.dumps(state, indent=1) + "\n").encode())
        self._install(joined)

    def _install(self, joined: Path) -> None:
        """Errors file from the parts' side files, then the output in one rename, then the parts go."""
        errors = b"".join(side.read_bytes() for side in (path.with_name(path.name[: -len(self.fmt)] + ".errors.jsonl")
                                                         for _, _, path in self._contiguous_parts()) if side.is_file())
        self.skipped = errors.count(b"\n")  # over every part, this run's and earlier ones'
        self.written = self.scan.rows - self.skipped
        if errors:
            _write_atomic(self.errors_path, errors)
        elif self.errors_path.is_file():
            self.errors_path.unlink()  # a previous run's list would describe rows this output does not skip
        os.replace(joined, self.output)
        _fsync_dir(self.output.parent)
        shutil.rmtree(self.parts, ignore_errors=True)

    def _join(self, parts: list[Path], dest: Path) -> None:
        if self.fmt in (".csv", ".jsonl"):
            with open(dest, "wb") as out:
                if self.fmt == ".csv":
                    buf = io.StringIO(newline="")
                    csv.writer(buf, lineterminator="\n").writerow([spreadsheet_safe(c) for c in self.columns])
                    out.write(buf.getvalue().encode("utf-8"))
                for part in parts:
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        schemas = [pq.read_schema(p) for p in parts] or [self.arrow_schema()]
        try:
            schema = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise FinsentError(f"the input's values have types that do not fit one parquet column ({exc}): "
                               "write .jsonl or .csv instead") from None
        order = [schema.field(c) for c in self.columns if c in schema.names]
        schema = pa.schema(order + [f for f in schema if f.name not in self.columns])
        with pq.ParquetWriter(dest, schema) as writer:
            for part in parts:
                table = pq.read_table(part)
                try:
                    arrays = [table[f.name].cast(f.type) if f.name in table.column_names
                              else pa.nulls(len(table), f.type) for f in schema]
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                    raise FinsentError(f"{part.name}: a value does not fit the output's parquet column "
                                       f"({str(exc).splitlines()[0]}): write .jsonl or .csv instead") from None
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

    # state ------------------------------------------------------------------------------------------

    def _read_state(self) -> dict:
        try:
            return json.loads((self.parts / STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _write_atomic(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary sibling, fsync and ``os.replace``: the file is whole or absent."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; the result is an ordinary file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def open_job(input, output, *, text_column: str = "text", kind: str = "news", scheme="3", model=None,
             on_error: str = "skip", overwrite: bool = False) -> tuple[Job, dict]:
    """Check everything, take the lock and find where to resume; nothing is classified yet.

    Returns the job and its fingerprint. Raises ``UsageError`` for what the user must change (arguments,
    an input column clash, an output that is not finsent's, a run with other settings in progress).
    """
    scheme = check_scheme(scheme)
    if kind not in KINDS:
        raise UsageError(f"unknown text kind {kind!r}: choose one of {', '.join(KINDS)}")
    if on_error not in ON_ERROR:
        raise UsageError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    output = Path(output).expanduser()
    fmt = output_format(output)
    check_paths(input, output)
    files = table_files(input)
    if output.is_dir():
        raise OutputError(f"output {output} is a folder: name a {', '.join(FORMATS)} file (nothing was written)")
    scan = scan_input(files, text_column, output_columns(scheme))
    fp = fingerprint(scan, model=model, scheme=scheme, kind=kind, text_column=text_column)
    parts = parts_dir(output)
    job = Job(output, fmt, scan, scheme, on_error, parts, _labels=labels_of(scheme))
    if fmt == ".parquet":
        job.arrow_schema()  # a column no one parquet type holds is refused now, not after the work
    output.parent.mkdir(parents=True, exist_ok=True)

    resuming = (parts / STATE).is_file()
    if parts.exists() and not resuming:
        # a run killed before it wrote its state file leaves only its lock (or a temporary state file)
        ours = parts.is_dir() and all(p.name == "lock" or p.name.startswith(f".{STATE}.tmp-") for p in parts.iterdir())
        if not ours and not overwrite:
            raise OutputError(f"{parts} exists and was not written by finsent classify: remove it, or pass "
                              "--overwrite to replace it")
        if ours:
            job._lock = _take_lock(parts)  # (another run may be starting in it right now)
            _clear(parts)
        else:
            _remove(parts)
    try:
        if not resuming and output.exists() and not overwrite:
            raise OutputError(f"output {output} already exists: pass --overwrite to replace it (it is replaced only "
                              "when the new output is complete), or choose another name")
        parts.mkdir(exist_ok=True)
        if job._lock is None:
            job._lock = _take_lock(parts)
        state = job._read_state()
        if state and state.get("fingerprint") != fp:
            changed = _differences(state.get("fingerprint", {}), fp)
            if not overwrite:
                raise UsageError(f"{output}: the unfinished run in {parts} used another "
                                 f"{' and '.join(changed) or 'setup'}: run it with its own settings to finish it, "
                                 "or pass --overwrite to discard it and start again")
            logger.info("discarding the unfinished run in %s (%s changed)", parts, ", ".join(changed))
            _clear(parts)
            state = {}
        if state.get("finished") and (parts / f"final{fmt}").is_file():
            job._install(parts / f"final{fmt}")  # killed between the join and the rename
            raise _AlreadyDone(job)
        if state.get("finished") and output.is_file():
            shutil.rmtree(parts, ignore_errors=True)  # killed after the rename, before the clean-up
            raise _AlreadyDone(job)
        if output.exists() and not overwrite:
            raise OutputError(f"output {output} already exists: pass --overwrite to replace it (it is replaced "
                              "only when the new output is complete), or choose another name")
        if not state:
            state = {"written_by": "finsent classify", "created": time.time(), "fingerprint": fp,
                     "format": fmt, "columns": job.columns, "rows": scan.rows}
            _write_atomic(parts / STATE, (json.dumps(state, indent=1) + "\n").encode())
        chain = job._contiguous_parts()
        job.done = chain[-1][1] if chain else 0
        for _, _, path in job._part_files()[len(chain):]:  # a part past a gap cannot be (written in order)
            path.unlink()
        if job.done > scan.rows:
            raise UsageError(f"{parts} holds parts past the input's end ({job.done} > {scan.rows} rows): pass "
                             "--overwrite to start again")
    except BaseException:
        job.close()
        raise
    return job, fp


class _AlreadyDone(Exception):
    def __init__(self, job: Job):
        super().__init__("already done")
        self.job = job


def _take_lock(parts: Path):
    handle = open(parts / "lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise UsageError(f"another finsent classify is writing {parts} right now: wait for it to end") from None
    return handle


def _clear(parts: Path) -> None:
    """Empty a parts folder we own, keeping the lock file (held by this process)."""
    for path in parts.iterdir():
        if path.name != "lock":
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def progress_bar(job: Job, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=job.scan.rows, initial=job.done, unit="row", desc="classify", disable=not enabled,
                dynamic_ncols=True, mininterval=1.0, smoothing=0.1)


# --- the local engine ----------------------------------------------------------------------------------


def classify_corpus(input, output, *, text_column: str = "text", kind: str = "news", scheme="3", model=None,
                    batch_size: int = 16, chunk_rows: int = CHUNK_ROWS, on_error: str = "skip",
                    overwrite: bool = False, progress: bool = True, classifier=None) -> CorpusResult:
    """Classify the table(s) at ``input`` into ``output`` in one process; see the module docstring.

    ``classifier``: an already loaded ``FinSentClassifier`` (else ``model`` is loaded when there is work).
    Returns a ``CorpusResult``; a run whose output is already complete returns at once.
    """
    job = start_job(input, output, chunk_rows, text_column=text_column, kind=kind, scheme=scheme, model=model,
                    on_error=on_error, overwrite=overwrite)
    if isinstance(job, CorpusResult):
        return job
    try:
        return _run_local(job, text_column=text_column, kind=kind, model=model, batch_size=batch_size,
                          chunk_rows=chunk_rows, progress=progress, classifier=classifier)
    finally:
        job.close()


def start_job(input, output, chunk_rows, **settings) -> Job | CorpusResult:
    """The open job of a run (both engines), or the result of a run whose output is already complete."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise UsageError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    try:
        job, _ = open_job(input, output, **settings)
    except _AlreadyDone as done:
        return _already_done(done.job)
    return job


def _already_done(job: Job) -> CorpusResult:
    logger.info("%s is already complete: nothing to do", job.output)
    errors = job.errors_path if job.errors_path.is_file() else None
    skipped = sum(1 for _ in open(errors, encoding="utf-8")) if errors else 0
    return CorpusResult(job.output, job.scan.rows, job.scan.rows - skipped, skipped, errors, job.scan.rows)


def _run_local(job: Job, *, text_column, kind, model, batch_size, chunk_rows, progress, classifier) -> CorpusResult:
    resumed_at = job.done
    if resumed_at:
        logger.info("resuming %s at row %d of %d", job.output, resumed_at + 1, job.scan.rows)
    start_time = time.perf_counter()
    if job.done < job.scan.rows:
        if classifier is None:

            classifier = FinSentClassifier.from_pretrained(model)
        start_time = time.perf_counter()  # the rate counts classification, not the model's loading
        rows = _numbered(read_tables(job.scan.files, bad_bytes="row"), skip=job.done)
        with progress_bar(job, progress) as bar:
            for chunk in iter_chunks(rows, chunk_rows):
                out, errors = classify_rows(classifier, job, chunk, text_column=text_column, kind=kind,
                                            batch_size=batch_size)
                job.write_part(chunk[0][0], chunk[-1][0] + 1, out, errors)
                bar.update(len(chunk))
    seconds = time.perf_counter() - start_time
    job.finish()
    _log_skipped(job)
    return CorpusResult(job.output, job.scan.rows, job.written, job.skipped,
                        job.errors_path if job.errors_path.is_file() else None, resumed_at, seconds,
                        job.scan.rows - resumed_at)


def _log_skipped(job: Job) -> None:
    if job.skipped:
        logger.warning("%d row(s) could not be classified and were skipped: listed in %s", job.skipped,
                       job.errors_path)


def classify_rows(classifier, job: Job, chunk: list[tuple[int, str, dict]], *, text_column: str, kind: str,
                  batch_size: int) -> tuple[list[dict], list[dict]]:
    """Classify one chunk of ``(index, where, row)``: the output rows (input order) and the errors records."""
    good, texts, errors = [], [], []
    for index, where, row in chunk:
        text, problem = row_text(row, text_column)
        if problem is not None:
            errors.append(job.bad_row(index, where, problem))
            continue
        texts.append(text)
        good.append(row)
    out = []
    if texts:
        preds = classifier.classify(texts, job.scheme, kind=kind, batch_size=batch_size)
        for row, pred in zip(good, preds):
            out.append({**row, **_prediction_fields(pred, job._labels)})
    return out, errors


def _numbered(rows: Iterable[tuple[str, dict]], skip: int) -> Iterator[tuple[int, str, dict]]:
    for index, (where, row) in enumerate(rows):
        if index >= skip:
            yield index, where, row
