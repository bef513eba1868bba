"""The FinGPT sentiment test sets (and this project's own), loaded exactly as FinGPT splits them.

    finsent eval --benchmark tfns:../shared/data/tfns/sent_valid.csv --mode both

Each benchmark is read from its Hugging Face Hub id by default, with FinGPT's split (the
``train_test_split(test_size, seed=42)`` of the FinGPT repository's ``fingpt/FinGPT_Benchmark/benchmarks/``
scripts, github.com/AI4Finance-Foundation/FinGPT), or from a local path when one is given: a file
(csv, jsonl, json, parquet) of the Hub dataset's columns, used as is, or a folder laid out like a Hub dataset repository
(``validation.csv``, ``data/test-*.parquet`` ...), which goes through the same code as the Hub
id, FinGPT's split included. Files are read by ``finsent.core.tables.read_table`` and rows mapped by
``core.rows.schema_row``, the reader and mapping of the training data. Every gold label goes through
``finsent.core.labels``; a malformed row is an error naming the file, the row and the problem.
``data_sha256`` identifies the rows used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from finsent.core.errors import UsageError
from finsent.core.labels import LabelError
from finsent.core.paths import REPO_ROOT
from finsent.core.prompts import InputError
from finsent.core.recipes import EvalBenchmark
from finsent.core.rows import schema_row
from finsent.core.tables import BadRow, TableError, read_table

logger = logging.getLogger(__name__)

SEED = 42  # FinGPT's train_test_split seed; also the seed of --limit samples


class BenchmarkDataError(InputError):
    """A benchmark file or row that cannot be used; the message names the file, the row and the problem."""


class DataNotAvailableError(UsageError, FileNotFoundError):
    """The benchmark's data cannot be loaded (no Hub access, missing file); the message says what to pass."""


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    title: str
    hub_id: str | None  # None: the benchmark is a file shipped with the project
    hub_config: str | None
    hub_splits: tuple[str, ...]  # concatenated in this order before splitting
    test_size: float | None  # FinGPT's train_test_split(test_size, seed=42) test part; None = splits as is
    size: int | None  # rows of the full test set (None: whatever the shipped file holds)
    schemes: tuple[str, ...]
    kind: str  # instruction word when a row does not say (core.rows.SCHEMA_KIND, the same for training)
    default_path: str | None = None


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        # The original `financial_phrasebank` id redirects to takala/financial_phrasebank.
        BenchmarkSpec("fpb", "FPB", "takala/financial_phrasebank", "sentences_50agree", ("train",), 0.25,
                      1212, ("3",), "news"),
        BenchmarkSpec("fiqa", "FiQA-SA", "pauri32/fiqa-2018", None, ("train", "validation", "test"), 0.226,
                      275, ("3",), "news"),  # per row: "tweet" for format "post" (labels.fiqa_kind)
        BenchmarkSpec("tfns", "TFNS", "zeroshot/twitter-financial-news-sentiment", None, ("validation",), None,
                      2388, ("3",), "tweet"),
        BenchmarkSpec("nwgi", "NWGI", "oliverwang15/news_with_gpt_instructions", None, ("test",), None,
                      4047, ("3", "7"), "news"),
        BenchmarkSpec("finsent", "FinSent headlines", None, None, (), None, None, ("3", "7"), "news",
                      default_path="data/finsent-headlines/test.jsonl"),
    ]
}


@dataclass(frozen=True)
class BenchmarkRow:
    text: str
    label: str  # gold label in the benchmark's scheme
    kind: str  # "news" | "tweet": the instruction word for this row


@dataclass
class BenchmarkData:
    name: str
    scheme: str
    dataset: str  # Hub id (and config) or local path
    split: str  # how the rows were selected, in words
    rows: list[BenchmarkRow] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.rows]

    @property
    def data_sha256(self) -> str:
        """sha256 of the rows used (text, gold label, kind), one JSON array per line, in order."""
        digest = hashlib.sha256()
        for r in self.rows:
            digest.update(json.dumps([r.text, r.label, r.kind], ensure_ascii=False).encode() + b"\n")
        return digest.hexdigest()


def get_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise BenchmarkDataError(f"unknown benchmark {name!r}: choose one of {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def parse_benchmark_arg(text: str, scheme: str = "3", limit: int | None = None) -> EvalBenchmark:
    """``NAME`` or ``NAME:PATH`` (the command line's ``--benchmark``) as an ``EvalBenchmark``."""
    name, sep, path = text.partition(":")
    get_spec(name.strip())
    if sep and not path.strip():
        raise BenchmarkDataError(f"--benchmark {text!r}: empty path after ':'")
    return EvalBenchmark(name=name.strip(), path=path.strip() or None, scheme=str(scheme), limit=limit)


def load_benchmark(name: str, path: str | Path | None = None, scheme: str = "3",
                   limit: int | None = None, sample: str = "random") -> BenchmarkData:
    """Load a benchmark's rows: from ``path`` if given, else from its Hub id with FinGPT's split.

    ``limit`` keeps that many rows, in file order: a seeded random sample, or with ``sample="even"``
    every (n / limit)-th row, which spreads a handful of rows over a file that comes in runs of one label
    (TFNS validation starts with 29 negative tweets).
    """
    if sample not in ("random", "even"):
        raise ValueError(f"sample must be 'random' or 'even', got {sample!r}")
    spec = get_spec(name)
    scheme = str(scheme)
    if scheme not in spec.schemes:
        raise BenchmarkDataError(
            f"{spec.title} has no {scheme}-class labels: choose scheme {' or '.join(spec.schemes)}")
    shown = path  # the dataset's name in results: as given, never this machine's absolute path
    if path is None and spec.hub_id is None:
        path, shown = _default_file(spec), spec.default_path
    if path is not None and Path(path).is_file():
        records = read_records(Path(path))
        data = BenchmarkData(name, scheme, str(shown), "file as given")
    elif path is not None and not Path(path).is_dir():
        raise DataNotAvailableError(f"{spec.title}: no such file or folder: {path}")
    else:
        source = str(path) if path is not None else spec.hub_id
        records, split = _hub_records(spec, source, is_folder=path is not None)
        dataset = source if path is not None or not spec.hub_config else f"{source} ({spec.hub_config})"
        data = BenchmarkData(name, scheme, dataset, split)
    data.rows = [_row(spec, rec, scheme, where) for where, rec in records]
    if not data.rows:
        raise BenchmarkDataError(f"{spec.title}: {data.dataset} has no rows")
    if limit is not None and limit < data.n:
        if limit < 1:
            raise BenchmarkDataError(f"limit must be >= 1, got {limit}")
        if sample == "even":
            keep = [i * data.n // limit for i in range(limit)]
            data.split += f", {limit} evenly spaced rows"
        else:
            keep = sorted(random.Random(SEED).sample(range(data.n), limit))
            data.split += f", sample of {limit} rows (seed {SEED})"
        data.rows = [data.rows[i] for i in keep]
    logger.info("%s: %d rows from %s [%s]", spec.title, data.n, data.dataset, data.split)
    return data


def load_eval_benchmark(bench: EvalBenchmark) -> BenchmarkData:
    return load_benchmark(bench.name, bench.path, bench.scheme, bench.limit)


def _default_file(spec: BenchmarkSpec) -> Path:
    for root in (Path.cwd(), REPO_ROOT):
        candidate = root / spec.default_path
        if candidate.is_file():
            return candidate
    raise DataNotAvailableError(f"{spec.title}: {spec.default_path} not found (run from the project root)")


# --- FinGPT's split -----------------------------------------------------------------------------


def fingpt_test_indices(n_rows: int, test_size: float, seed: int = SEED) -> list[int]:
    """Row indices of ``datasets.Dataset.train_test_split(test_size, seed=seed)["test"]``, in its order.

    That method draws ``np.random.default_rng(seed).permutation(n)`` and takes the first
    ``ceil(test_size * n)`` indices as the test part (checked against datasets in the tests).
    """
    import numpy as np

    n_test = math.ceil(test_size * n_rows)
    return np.random.default_rng(seed).permutation(n_rows)[:n_test].tolist()


def _hub_records(spec: BenchmarkSpec, source: str, is_folder: bool):
    """Records of a Hub dataset (or a local folder laid out like one) after FinGPT's split."""
    import datasets

    where = f"{spec.title}: {source}"
    try:
        loaded = datasets.load_dataset(source, None if is_folder else spec.hub_config)
    except Exception as exc:  # offline, unknown repo, script-only repo...: all say "cannot load"
        raise DataNotAvailableError(
            f"{where}: could not load the dataset ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            f"Without Hub access pass a local copy: --benchmark {spec.name}:PATH"
        ) from exc
    missing = [s for s in spec.hub_splits if s not in loaded]
    if missing:
        raise BenchmarkDataError(f"{where}: split(s) {missing} missing; found {list(loaded)}")
    records: list[tuple[str, dict]] = []
    for split in spec.hub_splits:
        records += [(f"{where} [{split}] row {i + 1}", rec) for i, rec in enumerate(loaded[split].to_list())]
    described = "+".join(spec.hub_splits)
    if spec.test_size is not None:
        records = [records[i] for i in fingpt_test_indices(len(records), spec.test_size)]
        described += f", train_test_split(test_size={spec.test_size}, seed={SEED}) test part"
    return records, described


# --- local files --------------------------------------------------------------------------------


def read_records(path: Path) -> list[tuple[str, dict]]:
    """(where, record) pairs of a csv / jsonl / json / parquet file, read by ``finsent.core.tables.read_table``.

    The same reader (and rules: BOM, encoding, duplicate header, extra fields, ``.json`` as an array or
    JSON lines) as training data, the Space and the speed texts; a row it cannot parse is an error
    naming the file and the row.
    """
    records = []
    try:
        for where, rec in read_table(path):
            if isinstance(rec, BadRow):
                raise BenchmarkDataError(f"{where}: {rec.problem}")
            records.append((where, rec))
    except TableError as exc:
        raise BenchmarkDataError(str(exc)) from None
    return records


# --- one record -> one row -------------------------------------------------------------------------


def _row(spec: BenchmarkSpec, rec: dict, scheme: str, where: str) -> BenchmarkRow:
    """One benchmark row through ``core.rows.schema_row``: the mapping training uses, so both read a row alike."""
    try:
        text, label, kind = schema_row(spec.name, rec, scheme)
    except (LabelError, InputError) as exc:
        raise BenchmarkDataError(f"{where}: {exc}") from None
    return BenchmarkRow(text, label, kind)
