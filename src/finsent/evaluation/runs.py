"""``finsent eval``: accuracy of a model on the FinGPT benchmarks, one results JSON per run.

    finsent eval --model smollm2 --benchmark tfns:../shared/data/tfns/sent_valid.csv --mode both
    finsent eval --recipe build/recipes/smollm2-135m.yaml          # the recipe's benchmarks, its release

A run is one benchmark x scheme x mode. For each, ``run_eval`` classifies the rows through the one
code path (``FinSentClassifier.classify``), scores them with the shipped ``finsent_sentiment``
metric and writes into the output folder:

    <benchmark>-<scheme>-<mode>.json               the results (schema: the shared contract), with the model's
                                                   provenance (finsent.evaluation.model_provenance)
    <benchmark>-<scheme>-<mode>.png                its confusion matrix
    <benchmark>-<scheme>-<mode>.predictions.jsonl  gold / predicted label per row (no texts)

``write_summary`` (defined in ``finsent.evaluation.summary``) then tabulates every results JSON in the folder.

The folder is one run's: it is built in a temporary sibling and replaces ``--out`` whole when every
benchmark is done (``outputs.output_dir``). A folder finsent did not write, or one holding results
committed to git (the default ``eval/results/<model>`` in this repository), is refused unless
``--overwrite``. One benchmark and scheme given twice would write the same files: that is an error.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import platform
import re
import time
from collections.abc import Sequence
from pathlib import Path

from finsent.core.classify import MODES as RESULT_MODES  # the classifier's modes, defined once
from finsent.core.classify import FinSentClassifier
from finsent.core.errors import UsageError
from finsent.core.labels import labels_of
from finsent.core.models import locate_model, resolve_model
from finsent.core.outputs import check_output_dir, output_dir
from finsent.core.prompts import KINDS
from finsent.core.provenance import file_sha256, library_versions
from finsent.core.recipes import EvalBenchmark
from finsent.core.reports import write_report
from finsent.evaluation.benchmarks import get_spec, load_eval_benchmark
from finsent.evaluation.metrics import load_metric
from finsent.evaluation.model_provenance import model_provenance
from finsent.evaluation.summary import plot_confusion, write_summary  # write_summary is part of this module's API

logger = logging.getLogger(__name__)

VERSION_PACKAGES = ("llama-finsent", "torch", "transformers", "datasets", "evaluate", "scikit-learn", "numpy")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
WHAT = "eval output folder"  # names the folder in OutputError messages


class EvalError(UsageError, ValueError):
    """An evaluation that cannot run as asked: unknown mode, a benchmark given twice, no release to evaluate."""


# The name of one run's result file (``result_stem`` + ".json"), as the card and the push gate find them.
EVAL_NAME = re.compile(r"^(?P<benchmark>[a-z0-9_]+)-(?P<scheme>[37])-(?P<mode>score|generate)\.json$")


def result_stem(benchmark: str, scheme: str, mode: str) -> str:
    return f"{benchmark}-{scheme}-{mode}"


def check_runs(benchmarks: Sequence[EvalBenchmark], modes: Sequence[str]) -> None:
    """EvalError for an unknown mode, or for two benchmarks that would write the same result files."""
    for mode in modes:
        if mode not in RESULT_MODES:
            raise EvalError(f"unknown mode {mode!r}: choose one of {', '.join(RESULT_MODES)}")
    seen: dict[tuple[str, str], EvalBenchmark] = {}
    for bench in benchmarks:
        key = (bench.name, str(bench.scheme))
        if key in seen:
            first = seen[key]
            raise EvalError(
                f"benchmark {bench.name} ({bench.scheme} classes) is given twice ({_shown(first)} and "
                f"{_shown(bench)}): both would write {result_stem(bench.name, str(bench.scheme), '<mode>')}.json; "
                "give each benchmark once per run (evaluate the other file with another --out)")
        seen[key] = bench


def _shown(bench: EvalBenchmark) -> str:
    if bench.path:
        return f"{bench.name}:{bench.path}"
    spec = get_spec(bench.name)
    return f"{bench.name} from the Hub" if spec.hub_id else f"{bench.name} ({spec.default_path})"


def run_eval(model: str | Path, benchmarks: Sequence[EvalBenchmark], modes: Sequence[str], out_dir: Path,
             batch_size: int = 16, classifier=None, progress: bool = True, overwrite: bool = False,
             summary: bool = False) -> list[dict]:
    """Evaluate ``model`` on every benchmark x mode into the folder ``out_dir``; return the results.

    ``out_dir`` is written whole (results, plots, predictions, and ``summary.md`` with ``summary``) in a
    temporary sibling and renamed into place when every run is done. It is checked first: a folder
    finsent did not write, or one holding committed files, is refused unless ``overwrite``.
    ``classifier`` (a loaded ``FinSentClassifier`` of the same model) avoids loading it again.
    """
    check_runs(benchmarks, modes)
    out_dir = check_output_dir(out_dir, kind="eval", overwrite=overwrite, what=WHAT, reads=[model])
    with output_dir(out_dir, kind="eval", overwrite=overwrite, what=WHAT, reads=[model]) as tmp:
        results = evaluate_into(tmp, model, benchmarks, modes, batch_size=batch_size, classifier=classifier,
                                progress=progress)
        if summary:
            write_summary(tmp)
    return results


def evaluate_into(folder: Path, model: str | Path, benchmarks: Sequence[EvalBenchmark], modes: Sequence[str],
                  batch_size: int = 16, classifier=None, progress: bool = True) -> list[dict]:
    """Evaluate and write every run's files into ``folder``, an existing folder its caller owns (the temporary
    folder of ``outputs.output_dir``); ``run_eval`` is the whole-folder writer."""

    check_runs(benchmarks, modes)
    out_dir = Path(folder)
    # Load every benchmark first: a bad file fails the command before minutes of inference.
    loaded = [load_eval_benchmark(b) for b in benchmarks]
    if classifier is None:
        classifier = FinSentClassifier.from_pretrained(str(model))
    name, model_hash = model_identity(model)
    provenance = model_provenance(model)  # read once: the build of the weights, the same for every run
    metric = load_metric()
    versions = installed_versions()
    results = []
    for data in loaded:
        for mode in modes:
            logger.info("eval %s (%s classes, %s mode): %d rows", data.name, data.scheme, mode, data.n)
            start = time.perf_counter()
            preds = predict(classifier, data, mode, batch_size, progress)
            seconds = time.perf_counter() - start
            # "" marks an unparseable answer (a column of only None would defeat Arrow's type check).
            metrics = metric.compute(predictions=[p.label or "" for p in preds], references=data.labels,
                                     labels=list(labels_of(data.scheme)))
            stem = result_stem(data.name, data.scheme, mode)
            result = {
                "model": name,
                "model_hash": model_hash,
                "benchmark": data.name,
                "dataset": data.dataset,
                "split": data.split,
                "data_sha256": data.data_sha256,
                "scheme": data.scheme,
                "mode": mode,
                "n": data.n,
                "metrics": metrics,
                "seconds": round(seconds, 6),  # fine enough that n / seconds gives items_per_second back
                "items_per_second": round(data.n / seconds, 3) if seconds > 0 else None,
                "batch_size": batch_size,
                "truncated": sum(p.truncated for p in preds),
                "device": str(classifier.device),
                "versions": versions,
                "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "provenance": provenance,
            }
            _write_predictions(out_dir / f"{stem}.predictions.jsonl", data, preds)
            write_report("eval", result, out_dir / f"{stem}.json")
            plot_confusion(result, out_dir / f"{stem}.png")
            logger.info("%s: accuracy %.4f, weighted F1 %.4f, unparseable %d, %.1f items/s",
                        stem, metrics["accuracy"], metrics["weighted_f1"], metrics["unparseable"],
                        result["items_per_second"] or 0.0)
            results.append(result)
    return results


def predict(classifier, data, mode: str, batch_size: int, progress: bool = False) -> list:
    """Predictions in row order; rows are classified in groups of one instruction word (news / tweet)."""
    out: list = [None] * data.n
    for kind in KINDS:
        idx = [i for i, row in enumerate(data.rows) if row.kind == kind]
        if not idx:
            continue
        texts = [data.rows[i].text for i in idx]
        for i, pred in zip(idx, classifier.classify(texts, data.scheme, kind=kind, mode=mode,
                                                    batch_size=batch_size, progress=progress)):
            out[i] = pred
    return out


def _write_predictions(path: Path, data, preds) -> None:
    # No texts: the release folder is published and some benchmarks' licences forbid redistribution.
    with path.open("w", encoding="utf-8") as f:
        for i, (row, pred) in enumerate(zip(data.rows, preds)):
            line = {"i": i, "kind": row.kind, "gold": row.label, "pred": pred.label, "truncated": pred.truncated}
            if pred.mode == "score":
                line["probs"] = {k: round(v, 6) for k, v in pred.probs.items()}
            else:
                line["answer"] = pred.answer
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


# --- identity of what was measured ------------------------------------------------------------------


def model_identity(model: str | Path | None) -> tuple[str, str]:
    """(name, hash): ``sha256:<hex>`` of the weight files of a local folder, or ``hub:<revision sha>``."""

    name = resolve_model(model)
    source = locate_model(model)
    path = Path(source)
    if path.is_dir():
        return name, "sha256:" + weights_sha256(path)
    return name, "hub:" + _hub_revision(source)


_HASHES: dict[tuple, str] = {}


def weights_sha256(folder: Path) -> str:
    """sha256 of the single weight file; for sharded weights, sha256 of the '<name> <sha256>' lines."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise FileNotFoundError(f"{folder}: no weight files (*.safetensors, *.bin) to hash")
    hashes = []
    for p in files:
        key = (str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns)
        if key not in _HASHES:
            _HASHES[key] = file_sha256(p)
        hashes.append((p.name, _HASHES[key]))
    if len(hashes) == 1:
        return hashes[0][1]
    return hashlib.sha256("".join(f"{n} {h}\n" for n, h in hashes).encode()).hexdigest()


def _hub_revision(repo_id: str) -> str:
    """The commit sha of a Hub model: asked of the Hub, else read from the local cache's snapshot."""
    from huggingface_hub import HfApi, try_to_load_from_cache

    try:
        return HfApi().model_info(repo_id).sha
    except Exception as exc:  # offline or gated: fall back to what was downloaded
        cached = try_to_load_from_cache(repo_id, "config.json")
        if isinstance(cached, str) and "/snapshots/" in cached:
            return cached.split("/snapshots/")[1].split("/")[0]
        logger.warning("no revision for %s (%s)", repo_id, exc)
        return "unknown"


def installed_versions() -> dict[str, str]:
    """Python's version and the installed ones of ``VERSION_PACKAGES`` (a missing package is left out)."""
    found = {name: version for name, version in library_versions(VERSION_PACKAGES).items() if version is not None}
    return {"python": platform.python_version(), **found}


# --- command line -----------------------------------------------------------------------------------


__all__ = ["run_eval", "evaluate_into", "check_runs", "EvalError", "write_summary", "predict", "model_identity",
           "weights_sha256", "library_versions"]
