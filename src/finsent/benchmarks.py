"""The FinGPT sentiment test sets (and this project's own), loaded exactly as FinGPT splits them.

    finsent eval --benchmark tfns:../shared/data/tfns/sent_valid.csv --mode both

Each benchmark is read from its Hugging Face Hub id by default (with FinGPT's split, see
REFERENCE.md s. 2), or from a local path when one is given: a file (csv, jsonl, json, parquet) of
the Hub dataset's columns, used as is, or a folder laid out like a Hub dataset repository
(``validation.csv``, ``data/test-*.parquet`` ...), which goes through the same code as the Hub
id, FinGPT's split included. Every gold label goes through ``finsent.labels``; a malformed row is
an error naming the file, the row and the problem. ``data_sha256`` identifies the rows used.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError
from .labels import LabelError, fiqa_label, fpb_label, labels_of, nwgi_label, tfns_label, to_coarse
from .prompts import KINDS, InputError, clean_text
from .recipes import EvalBenchmark

logger = logging.getLogger(__name__)

SEED = 42  # FinGPT's train_test_split seed; also the seed of --limit samples
REPO_ROOT = Path(__file__).resolve().parents[2]


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
    kind: str  # instruction word when a row does not say
    default_path: str | None = None


BENCHMARKS: dict[str, BenchmarkSpec] = {
    spec.name: spec
    for spec in [
        # The original `financial_phrasebank` id redirects to takala/financial_phrasebank.
        BenchmarkSpec("fpb", "FPB", "takala/financial_phrasebank", "sentences_50agree", ("train",), 0.25,
                      1212, ("3",), "news"),
        BenchmarkSpec("fiqa", "FiQA-SA", "pauri32/fiqa-2018", None, ("train", "validation", "test"), 0.226,
                      275, ("3",), "tweet"),
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
    """(where, record) pairs of a csv / jsonl / json / parquet file; ``where`` names file and row."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            out = []
            for i, rec in enumerate(reader, start=1):
                if None in rec or None in rec.values():
                    raise BenchmarkDataError(f"{path}: row {i} (line {reader.line_num}): "
                                             f"{len(reader.fieldnames or [])} columns expected")
                out.append((f"{path}: row {i} (line {reader.line_num})", rec))
            return out
    if suffix == ".jsonl":
        out = []
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BenchmarkDataError(f"{path}: line {i}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise BenchmarkDataError(f"{path}: line {i}: expected a JSON object, got {type(rec).__name__}")
            out.append((f"{path}: line {i}", rec))
        return out
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BenchmarkDataError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise BenchmarkDataError(f"{path}: expected a JSON list of objects")
        return [(f"{path}: row {i}", rec) for i, rec in enumerate(data, start=1)]
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return [(f"{path}: row {i}", rec) for i, rec in enumerate(pq.read_table(path).to_pylist(), start=1)]
    raise BenchmarkDataError(f"{path}: unsupported file type {suffix!r}: use .csv, .jsonl, .json or .parquet")


# --- one record -> one row -------------------------------------------------------------------------


def _field(rec: dict, name: str, where: str):
    if name not in rec or rec[name] is None:
        raise BenchmarkDataError(f"{where}: missing field {name!r} (fields: {', '.join(map(str, rec))})")
    return rec[name]


def _row(spec: BenchmarkSpec, rec: dict, scheme: str, where: str) -> BenchmarkRow:
    try:
        text, label, kind = _GOLD[spec.name](rec, scheme, where)
        if label not in labels_of(scheme):
            raise LabelError(f"label {label!r} is not one of {', '.join(labels_of(scheme))}")
        return BenchmarkRow(clean_text(text), label, kind or spec.kind)
    except BenchmarkDataError:
        raise
    except (LabelError, InputError) as exc:
        raise BenchmarkDataError(f"{where}: {exc}") from None


def _fpb(rec, scheme, where):
    return _field(rec, "sentence", where), fpb_label(_field(rec, "label", where)), None


def _fiqa(rec, scheme, where):
    # FinGPT's instruction for FiQA-SA says "tweet" for microblog posts and "news" for headlines.
    fmt = str(rec.get("format") or "post").strip().lower()
    if fmt not in ("post", "headline"):
        raise BenchmarkDataError(f"{where}: unknown format {rec.get('format')!r}: expected 'post' or 'headline'")
    kind = "tweet" if fmt == "post" else "news"
    return _field(rec, "sentence", where), fiqa_label(_field(rec, "sentiment_score", where)), kind


def _tfns(rec, scheme, where):
    return _field(rec, "text", where), tfns_label(_field(rec, "label", where)), None


def _nwgi(rec, scheme, where):
    fine = nwgi_label(_field(rec, "label", where))
    return _field(rec, "news", where), fine if scheme == "7" else to_coarse(fine), None


def _finsent(rec, scheme, where):
    # The project's own set carries both golds: "label" (7 classes) and "coarse" (3 classes).
    label = str(_field(rec, "label" if scheme == "7" else "coarse", where)).strip().lower()
    kind = rec.get("kind") or "news"
    if kind not in KINDS:
        raise BenchmarkDataError(f"{where}: unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    return _field(rec, "text", where), label, kind


_GOLD = {"fpb": _fpb, "fiqa": _fiqa, "tfns": _tfns, "nwgi": _nwgi, "finsent": _finsent}
