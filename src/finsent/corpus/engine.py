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

import logging
import time
from collections.abc import Iterable, Iterator

from finsent.core.classify import FinSentClassifier, iter_chunks
from finsent.core.errors import UsageError
from finsent.core.tables import read_tables
from finsent.corpus.inputs import row_text
from finsent.corpus.job import (
    CHUNK_ROWS,
    CorpusJob,
    CorpusResult,
    _AlreadyDone,
    _prediction_fields,
    open_job,
    progress_bar,
)

logger = logging.getLogger(__name__)

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


def start_job(input, output, chunk_rows, **settings) -> CorpusJob | CorpusResult:
    """The open job of a run (both engines), or the result of a run whose output is already complete."""
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise UsageError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    try:
        job, _ = open_job(input, output, **settings)
    except _AlreadyDone as done:
        return _already_done(done.job)
    return job


def _already_done(job: CorpusJob) -> CorpusResult:
    logger.info("%s is already complete: nothing to do", job.output)
    errors = job.errors_path if job.errors_path.is_file() else None
    skipped = sum(1 for _ in open(errors, encoding="utf-8")) if errors else 0
    return CorpusResult(job.output, job.scan.rows, job.scan.rows - skipped, skipped, errors, job.scan.rows)


def _run_local(job: CorpusJob, *, text_column, kind, model, batch_size, chunk_rows, progress,
               classifier) -> CorpusResult:
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


def _log_skipped(job: CorpusJob) -> None:
    if job.skipped:
        logger.warning("%d row(s) could not be classified and were skipped: listed in %s", job.skipped,
                       job.errors_path)


def classify_rows(classifier, job: CorpusJob, chunk: list[tuple[int, str, dict]], *, text_column: str, kind: str,
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
