"""The job of ``finsent classify --input X --output Y``, whichever engine runs it: the run's fingerprint, its
parts folder (state, lock, one part file a finished chunk) and the final join onto the output; the file format
rules are in ``finsent.corpus.engine``'s docstring.
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
from dataclasses import dataclass, field
from pathlib import Path

from finsent.core.errors import FinsentError, UsageError
from finsent.core.labels import check_scheme, labels_of
from finsent.core.models import resolve_model
from finsent.core.outputs import OutputError
from finsent.core.prompts import KINDS, InputError
from finsent.core.tables import spreadsheet_safe, table_files
from finsent.corpus.inputs import Scan, check_paths, parts_dir, scan_input

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
class CorpusJob:
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
             on_error: str = "skip", overwrite: bool = False) -> tuple[CorpusJob, dict]:
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
    job = CorpusJob(output, fmt, scan, scheme, on_error, parts, _labels=labels_of(scheme))
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
    def __init__(self, job: CorpusJob):
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


def progress_bar(job: CorpusJob, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=job.scan.rows, initial=job.done, unit="row", desc="classify", disable=not enabled,
                dynamic_ncols=True, mininterval=1.0, smoothing=0.1)
