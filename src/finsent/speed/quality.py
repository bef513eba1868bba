"""``finsent bench-quality``: what each fast variant costs in accuracy, on a tuned release and real labels.

Every variant of ``speed_variants`` (bf16, w8a8, int8, packed...) scores the same labelled TFNS
validation rows (all 2,388 by default) as the exact float32 scorer; quality.json records, per variant,
accuracy and weighted F1 against the gold labels, ``accuracy_delta`` (its accuracy minus float32's),
``label_agreement`` (share of rows with float32's label) and how far the probabilities move. Speed is
measured on the published shape with random weights, where accuracy means nothing; the cost is measured
here, on a real tuned release, and ``finsent bench --quality quality.json`` (or ``--apply`` here, on a
speed.json measured before) puts it on the speed rows.

    finsent bench-quality releases/NAME --out eval/bench/llama-finsent-s --apply eval/bench/llama-finsent-s/speed.json
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from finsent.core.classify import FinSentClassifier
from finsent.core.errors import UsageError
from finsent.core.labels import labels_of
from finsent.core.precision import auto_dtype
from finsent.core.provenance import cpu_flags, cpu_name, git_commit
from finsent.evaluation.benchmarks import load_benchmark
from finsent.speed.variants import DEFAULT, MAX_ACCURACY_LOSS, build, describe, unavailable

logger = logging.getLogger(__name__)


class QualityFileError(UsageError, ValueError):
    """A quality.json that cannot be used (missing, not from bench-quality, no variants)."""


def load_tfns(path: Path, n: int | None) -> tuple[list[str], list[str]]:
    """``n`` (text, gold label) rows spread evenly over a TFNS CSV (whose rows come in runs of one label); all
    rows when ``n`` is None."""
    data = load_benchmark("tfns", path, "3", limit=n, sample="even")
    return [r.text for r in data.rows], [r.label for r in data.rows]


def measure_quality(model: str | Path, data_file: Path, out_dir: Path, *, variants=DEFAULT, n: int | None = None,
                    batch_size: int = 16, scheme: str = "3", pack_tokens: int | None = None) -> dict:
    """Score the rows with float32 and every variant that runs here; write and return quality.json."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score


    texts, gold = load_tfns(data_file, n)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    reference = FinSentClassifier.from_pretrained(str(model), dtype=torch.float32, device=device)
    float_dtype, why = auto_dtype(device, reference.model.config)
    runs, skipped, cache = {}, {}, {}
    for variant in dict.fromkeys(("float32",) + tuple(variants)):
        reason = unavailable(variant, device, float_dtype)
        if reason:
            skipped[variant] = reason
            continue
        clf = build(variant, reference, float_dtype, cache, pack_tokens)
        start = time.perf_counter()
        scores = clf.label_logprobs(texts, scheme, kind="tweet", batch_size=batch_size)
        seconds = time.perf_counter() - start
        probs = torch.softmax(scores, dim=-1)
        labels = [labels_of(scheme)[i] for i in probs.argmax(-1).tolist()]
        runs[variant] = {"labels": labels, "probs": probs, "dtype": describe(variant, clf),
                         "accuracy": accuracy_score(gold, labels),
                         "weighted_f1": f1_score(gold, labels, average="weighted", labels=list(labels_of(scheme)),
                                                 zero_division=0),
                         "items_per_second": len(texts) / seconds, "seconds": seconds}
        logger.info("%s: accuracy %.4f, %.1f items/s", variant, runs[variant]["accuracy"], len(texts) / seconds)
    ref = runs["float32"]
    out = {}
    for variant, run in runs.items():
        diff = (run["probs"] - ref["probs"]).abs()
        out[variant] = {
            **{k: v for k, v in run.items() if k not in ("labels", "probs")},
            "accuracy_delta": run["accuracy"] - ref["accuracy"],
            "label_agreement": sum(a == b for a, b in zip(run["labels"], ref["labels"])) / len(texts),
            "mean_abs_prob_diff": diff.mean().item(), "max_abs_prob_diff": diff.max().item(),
        }
    data_file = Path(data_file)
    result = {
        "kind": "bench-quality", "model": str(reference.source), "scheme": scheme, "n": len(texts),
        "data": f"{data_file.name}, {len(texts)} rows" + (" evenly spaced" if n else " (all)"),
        "data_sha256": hashlib.sha256(data_file.read_bytes()).hexdigest(), "batch_size": batch_size,
        "reference_accuracy": ref["accuracy"], "device": torch.cuda.get_device_name() if device.type == "cuda"
        else cpu_name(), "cpu_flags": cpu_flags(), "threads": torch.get_num_threads(),
        "dtype_auto": {"dtype": str(float_dtype).replace("torch.", ""), "why": why}, "torch": torch.__version__,
        "git_commit": git_commit(), "variants": out, "variants_skipped": skipped,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "quality.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "quality.md").write_text(format_quality(result) + "\n")
    return result


def read_quality(path: Path) -> dict:
    """A quality.json written by ``finsent bench-quality``, checked enough to be put on speed rows."""
    path = Path(path)
    if not path.is_file():
        raise QualityFileError(f"{path} is missing (it is written by `finsent bench-quality RELEASE --out DIR`)")
    data = json.loads(path.read_text())
    if data.get("kind") != "bench-quality" or "float32" not in data.get("variants", {}):
        raise QualityFileError(f"{path}: not a `finsent bench-quality` result with a float32 reference")
    return data


def format_quality(result: dict) -> str:
    lines = [
        f"Accuracy cost of each scoring variant on `{result['model']}`, {result['data']}, "
        f"{result['scheme']}-class label scoring, {result['device']}:",
        "",
        "| variant | weights | accuracy | delta (points) | weighted F1 | label agreement | mean abs prob diff "
        "| items/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in result["variants"].items():
        lines.append(f"| {name} | {r['dtype']} | {r['accuracy']:.4f} | {100 * r['accuracy_delta']:+.2f} | "
                     f"{r['weighted_f1']:.4f} | {100 * r['label_agreement']:.1f} % | {r['mean_abs_prob_diff']:.4f} | "
                     f"{r['items_per_second']:.1f} |")
    for name, why in result.get("variants_skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} | | | | | | |")
    return "\n".join(lines)


def apply_quality(result: dict, quality: dict | None) -> dict:
    """Put each variant's measured accuracy cost on its rows and (re)select the ``best`` rows: per scheme, a copy
    of the fastest row that is exact or within MAX_ACCURACY_LOSS of float32. Used by ``run_bench`` and by
    ``finsent bench-quality --apply``, which adds a cost measured later to an existing speed.json."""
    rows = [r for r in result["rows"] if not r["config"].startswith("best (")]
    for row in rows:
        for key in ("accuracy", "accuracy_delta", "label_agreement"):
            row.pop(key, None)
        _attach_quality(row, quality)
    for scheme in dict.fromkeys(r["scheme"] for r in rows):
        best = max((r for r in rows if r["mode"] == "score" and r["scheme"] == scheme and _admissible(r)
                    and " @ " not in r["config"]), key=lambda r: r["items_per_second"], default=None)
        if best is not None:
            rows.append({**best, "config": f"best ({best['config']})"})
    return {**result, "rows": rows,
            "best_rule": {"max_accuracy_loss": MAX_ACCURACY_LOSS, "measured_on": quality["model"] if quality else None},
            "quality": {k: v for k, v in quality.items() if k != "variants"} if quality else None}


def _attach_quality(row: dict, quality: dict | None) -> dict:
    """The variant's measured accuracy cost (same scheme only: TFNS has 3-class gold labels)."""
    cost = (quality or {}).get("variants", {}).get(row.get("variant"))
    if row["mode"] == "score" and cost and quality["scheme"] == row["scheme"]:
        row.update(accuracy=cost["accuracy"], accuracy_delta=cost["accuracy_delta"],
                   label_agreement=cost["label_agreement"])
    return row


def _admissible(row: dict) -> bool:
    """Exact, or a measured accuracy cost within MAX_ACCURACY_LOSS: an unmeasured inexact row is never best."""
    if row["exact"]:
        return True
    return row.get("accuracy_delta") is not None and row["accuracy_delta"] >= -MAX_ACCURACY_LOSS
