"""Classify a corpus with Ray Data: many classifier workers, on one machine or a Ray cluster.

``finsent classify --input PATH --output PATH --engine ray`` or, from Python::

    from finsent.corpus.ray_engine import classify_with_ray

    result = classify_with_ray("news/", "scored.parquet", scheme="3", model="smollm2", num_workers=4)
    print(result.written, result.skipped, result.items_per_s)

The input (a CSV, JSON-lines or parquet file or a folder of shards, see ``finsent.corpus.engine``) is read as a Ray
dataset (``ray.data.read_csv`` / ``read_json`` / ``read_parquet``), classified by ``map_batches`` with a pool
of actors (``_ClassifyBatch``: one ``FinSentClassifier`` per actor, loaded once; ``num_gpus=1`` per actor
when the cluster has GPUs), and streamed back in input order to this process, which writes it with the
local engine's writer: the same output file, the same columns, the same parts folder (so a killed run
resumes, by either engine), the same errors file. The output matches the local engine row for row:
the same labels, probabilities within float rounding (each actor's batches are padded differently).

The driver checks every row before Ray starts (the scan both engines share, ``finsent.corpus.inputs``), so
that a data error fails in seconds with one line, as in the local engine, never as Ray task tracebacks:
a row the local reader cannot parse (pyarrow's CSV and JSON readers would stop at it) is refused up front
(the local engine skips and lists it: use ``--engine local``); a JSON-lines column whose values have no one
arrow type (pyarrow's JSON reader would stop) is refused up front; with ``on_error="fail"`` the first row
that cannot be classified is refused up front with the local engine's message. A data error is never
retried. Other differences: JSON lines are read by pandas, with its types (a parquet output's types are
those, unified over the parts when they are joined); a JSON-lines row missing a key gets ``null`` for it; a
skipped row is named by its input row number over all shards (``input row N``) rather than by file and line.
On resume, the rows already written are read and classified again and dropped (Ray gives no row numbers to
skip by); split a big input into shards of similar size and let each run finish, or accept that cost.

Running on a Ray cluster
------------------------
Start the cluster (``ray start --head`` on one node, ``ray start --address=HEAD:6379`` on the others, or
KubeRay / the cluster launcher), install this package on every node with its ``scale`` extra (``pip install
'llama-finsent[scale]'``), then on the head node (or any machine that can reach it)::

    RAY_ADDRESS=auto finsent classify --input /shared/news/ --output /shared/news.scored.parquet \\
        --engine ray --workers 8 --model oopere/Llama-FinSent-S

``RAY_ADDRESS`` (``auto`` on a cluster node, ``ray://HEAD:10001`` from outside) makes ``ray.init()`` join
the cluster; from Python, call ``ray.init(address="auto")`` before ``classify_with_ray`` (or pass
``address="auto"``). The input must be readable at the same path on every node (a shared file system such
as NFS); the output is written by the driver process only. The model is named as for ``--model``: a Hub
id (downloaded by each node, or from its cache), ``smollm2`` (converted on each node from the wheel), or a
folder present on every node. Without ``RAY_ADDRESS``, Ray starts a local instance on this machine.
"""

from __future__ import annotations

import logging
import time

from finsent.core.classify import FinSentClassifier
from finsent.core.errors import FinsentError, UsageError
from finsent.core.labels import labels_of
from finsent.core.models import locate_model, resolve_model
from finsent.core.prompts import InputError, check_text
from finsent.corpus.engine import CorpusJob, _log_skipped, start_job
from finsent.corpus.job import CHUNK_ROWS, LABEL_COLUMN, CorpusResult, prob_column, progress_bar

logger = logging.getLogger(__name__)

ERROR_COLUMN = "__finsent_error__"  # the actors' per-row problem, dropped before writing
# DataContext settings (those this Ray version has) that make Ray Data retry a failed task or block
_NO_RETRY = {"retried_map_errors": False, "max_map_retries": 0, "actor_task_retry_on_errors": False,
             "max_errored_blocks": 0}


class _ClassifyBatch:
    """A Ray Data actor: one ``FinSentClassifier``, reused for every batch sent to this actor."""

    def __init__(self, *, model: str, scheme: str, kind: str, text_column: str, batch_size: int, threads: int | None):
        import torch


        if threads:
            torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() else None
        self.clf = FinSentClassifier.from_pretrained(model, device=device)
        self.scheme, self.kind, self.text_column, self.batch_size = scheme, kind, text_column, batch_size
        self.labels = labels_of(scheme)

    def __call__(self, batch):
        """A pyarrow Table in; the same table with the label, probability and error columns appended."""
        import pyarrow as pa


        n = batch.num_rows
        texts = batch.column(self.text_column).to_pylist() if self.text_column in batch.column_names else [None] * n
        good, checked, problems = [], [], [None] * n
        for i, text in enumerate(texts):
            try:
                checked.append(check_text(text))
                good.append(i)
            except InputError as exc:
                problems[i] = str(exc)
        labels: list = [None] * n
        probs = {label: [None] * n for label in self.labels}
        if checked:
            for i, pred in zip(good, self.clf.classify(checked, self.scheme, kind=self.kind,
                                                       batch_size=self.batch_size)):
                labels[i] = pred.label
                for label in self.labels:
                    probs[label][i] = pred.probs[label]
        batch = batch.append_column(LABEL_COLUMN, pa.array(labels, pa.string()))
        for label in self.labels:
            batch = batch.append_column(prob_column(label), pa.array(probs[label], pa.float64()))
        return batch.append_column(ERROR_COLUMN, pa.array(problems, pa.string()))


def classify_with_ray(input, output, *, text_column: str = "text", kind: str = "news", scheme="3", model=None,
                      batch_size: int = 16, chunk_rows: int = CHUNK_ROWS, on_error: str = "skip",
                      overwrite: bool = False, progress: bool = True, num_workers: int | None = None,
                      cpus_per_worker: float | None = None, address: str | None = None) -> CorpusResult:
    """``finsent.corpus.engine.classify_corpus`` on Ray Data; see the module docstring.

    ``num_workers``: classifier actors (default: one per GPU of the cluster, else one per
    ``cpus_per_worker`` CPUs, keeping one CPU for reading). ``cpus_per_worker``: CPUs each actor reserves
    and its torch threads (default: 1 with GPUs, else up to 4). ``address``: passed to ``ray.init`` when
    Ray is not initialized yet (``None``: ``$RAY_ADDRESS``, else a local instance).
    """
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray Data: pip install 'llama-finsent[scale]' (or 'ray[data]')") from None

    job = start_job(input, output, chunk_rows, text_column=text_column, kind=kind, scheme=scheme, model=model,
                    on_error=on_error, overwrite=overwrite)
    if isinstance(job, CorpusResult):
        return job
    started_ray = False
    try:
        suffixes = {f.suffix.lower() for f in job.scan.files}
        if len(suffixes) != 1 or next(iter(suffixes)) not in (".csv", ".jsonl", ".parquet"):
            raise UsageError(f"--engine ray reads one kind of file, .csv, .jsonl or .parquet (the input has "
                             f"{', '.join(sorted(suffixes))}): convert the shards, or use --engine local")
        if ERROR_COLUMN in job.scan.columns:
            raise UsageError(f"the input has a column {ERROR_COLUMN!r}, which --engine ray uses: rename it")
        check_rows(job)
        job.reader_types = ".jsonl" in suffixes  # pandas reads JSON lines, with its own types
        resumed_at = job.done
        seconds = 0.0
        if job.done < job.scan.rows:
            choice = resolve_model(model)
            locate_model(choice)  # checks a folder, converts smollm2 once here rather than in racing actors
            if not ray.is_initialized():
                ray.init(address=address, logging_level=logging.WARNING, include_dashboard=False)
                started_ray = True
            seconds = _run(job, ray, model=choice, scheme=job.scheme, kind=kind,
                           text_column=text_column, batch_size=batch_size, chunk_rows=chunk_rows,
                           progress=progress, num_workers=num_workers, cpus_per_worker=cpus_per_worker)
        job.finish()
        _log_skipped(job)
        return CorpusResult(job.output, job.scan.rows, job.written, job.skipped,
                            job.errors_path if job.errors_path.is_file() else None, resumed_at, seconds,
                            job.scan.rows - resumed_at)
    finally:
        job.close()
        if started_ray:
            ray.shutdown()


def check_rows(job: CorpusJob) -> None:
    """Refuse, before Ray starts, the rows Ray's readers would stop at and, with ``fail``, the first bad row."""
    scan = job.scan
    if scan.malformed is not None:
        _, where, problem = scan.malformed
        raise UsageError(f"{where}: {problem}: --engine ray cannot skip such a row (its pyarrow readers stop at "
                         "it or read it otherwise): fix it, or use --engine local, which skips and lists such rows")
    if scan.files[0].suffix.lower() == ".jsonl":
        scan.arrow_schema("Ray's JSON reader (one type a column)", every_row=True)
    if job.on_error == "fail":
        first = next((bad for bad in scan.bad if bad[0] >= job.done), None)
        if first is not None:
            job.bad_row(*first)  # raises the local engine's error for this row


def read_dataset(ray, job: CorpusJob):
    """The input as a Ray dataset, with the local reader's types for CSV (every cell a string)."""
    import pyarrow as pa

    paths = [str(f.resolve()) for f in job.scan.files]
    suffix = job.scan.files[0].suffix.lower()
    if suffix == ".csv":
        import pyarrow.csv as pacsv

        return ray.data.read_csv(
            paths, file_extensions=None,
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in job.scan.columns}),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
        )
    if suffix == ".jsonl":
        return ray.data.read_json(paths, lines=True, file_extensions=None)
    return ray.data.read_parquet(paths, file_extensions=None)


def _resources(ray, num_workers, cpus_per_worker) -> tuple[int, float, int]:
    """(actors, CPUs per actor, GPUs per actor) from the cluster's resources and the caller's choices."""
    cluster = ray.cluster_resources()
    gpus, cpus = int(cluster.get("GPU", 0)), float(cluster.get("CPU", 1))
    if gpus:
        per = cpus_per_worker or 1
        return num_workers or gpus, per, 1
    per = cpus_per_worker or max(1, min(4, int(cpus) // 2))
    return num_workers or max(1, int((cpus - 1) // per)), per, 0


def _run(job: CorpusJob, ray, *, model, scheme, kind, text_column, batch_size, chunk_rows, progress, num_workers,
         cpus_per_worker) -> float:
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.target_max_block_size)
    retries = {k: getattr(ctx, k) for k in _NO_RETRY if hasattr(ctx, k)}
    for k in retries:  # a data error fails the same way every time: fail at once
        setattr(ctx, k, _NO_RETRY[k])
    workers, per_cpu, per_gpu = _resources(ray, num_workers, cpus_per_worker)
    ctx.execution_options.preserve_order = True  # rows come back in input order: parts and resume rely on it
    ctx.enable_progress_bars = False  # ours counts rows written
    # Blocks small enough that every actor gets work: one file is read by one task, whose output is split
    # into blocks of at most this size (a few per actor; 16 MiB at most, ~100k headlines).
    size = sum(f.stat().st_size for f in job.scan.files)
    ctx.target_max_block_size = max(4 << 10, min(16 << 20, size // (4 * workers)))
    try:
        return _stream(job, ray, _dataset(job, ray, model=model, scheme=scheme, kind=kind, text_column=text_column,
                                          batch_size=batch_size, chunk_rows=chunk_rows, workers=workers,
                                          per_cpu=per_cpu, per_gpu=per_gpu), chunk_rows, progress)
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars, ctx.target_max_block_size = saved
        for k, v in retries.items():
            setattr(ctx, k, v)


def _dataset(job: CorpusJob, ray, *, model, scheme, kind, text_column, batch_size, chunk_rows, workers, per_cpu,
             per_gpu):
    logger.info("Ray Data: %d classifier actor(s), %s CPU and %d GPU each", workers, per_cpu, per_gpu)
    threads = max(1, int(per_cpu))
    ds = read_dataset(ray, job).map_batches(
        _ClassifyBatch, batch_size=chunk_rows, batch_format="pyarrow", num_cpus=per_cpu,
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_gpus=per_gpu, fn_constructor_kwargs=dict(model=model, scheme=scheme, kind=kind, text_column=text_column,
                                                     batch_size=batch_size, threads=threads),
    )
    return ds


def _stream(job: CorpusJob, ray, ds, chunk_rows: int, progress: bool) -> float:
    """Write the classified rows as they stream back in input order, one part per ``chunk_rows`` input rows."""
    start = time.perf_counter()
    index, pending, errors = 0, [], []
    pending_start = job.done
    try:
        with progress_bar(job, progress) as bar:
            for batch in ds.iter_batches(batch_size=chunk_rows, batch_format="pyarrow", prefetch_batches=2):
                n = batch.num_rows
                if index + n <= job.done and not pending:  # written by an earlier run
                    index += n
                    continue
                problems = batch.column(ERROR_COLUMN).to_pylist()
                rows = batch.drop_columns([ERROR_COLUMN]).to_pylist()
                for i in range(n):
                    row_index = index + i
                    if row_index < job.done:
                        continue
                    if problems[i] is not None:
                        errors.append(job.bad_row(row_index, f"input row {row_index + 1}", problems[i]))
                    else:
                        pending.append(rows[i])
                    if row_index + 1 - pending_start == chunk_rows:
                        job.write_part(pending_start, row_index + 1, pending, errors)
                        bar.update(row_index + 1 - pending_start)
                        pending, errors, pending_start = [], [], row_index + 1
                index += n
            if pending_start < index:
                job.write_part(pending_start, index, pending, errors)
                bar.update(index - pending_start)
    except ray.exceptions.RayError as exc:
        raise FinsentError(f"Ray could not read or classify the input: {_first_line(exc)} (--engine local reads "
                           "malformed rows one by one and reports them)") from None
    if index != job.scan.rows:
        raise FinsentError(f"Ray read {index} rows, the input scan counted {job.scan.rows}: the input changed, or "
                           "its readers disagree; use --engine local")
    return time.perf_counter() - start


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else type(exc).__name__)
