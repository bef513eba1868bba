"""What int8 costs in quality: the same real labelled texts scored by the float32 and the int8 classifier.

``finsent bench --model smollm2 --int8-accuracy 256`` writes ``int8_accuracy.json`` and ``.md`` beside
speed.json: accuracy and weighted F1 against the gold labels for both, how often the two agree, and
how far their probabilities move. Dynamic int8 is never exact, so this is the price of its speed.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .benchmarks import load_benchmark
from .labels import labels_of

logger = logging.getLogger(__name__)


def load_tfns(path: Path, n: int) -> tuple[list[str], list[str]]:
    """``n`` (text, gold label) rows spread evenly over a TFNS CSV, whose rows come in runs of one label."""
    data = load_benchmark("tfns", path, "3", limit=n, sample="even")
    return [r.text for r in data.rows], [r.label for r in data.rows]


def int8_accuracy(model: str | Path, texts_file: Path, n: int, out_dir: Path, *, scheme: str = "3",
                  batch_size: int = 16) -> dict:
    """Score ``n`` TFNS rows with float32 and with int8; write and return the comparison."""
    import torch
    from sklearn.metrics import accuracy_score, f1_score

    from .classify import FinSentClassifier

    texts, gold = load_tfns(texts_file, n)
    clf = FinSentClassifier.from_pretrained(str(model), dtype=torch.float32, device="cpu")
    runs = {}
    for name in ("float32", "int8"):
        if name == "int8":
            clf.quantize("int8")
        start = time.perf_counter()
        preds = clf.classify(texts, scheme, kind="tweet", batch_size=batch_size, progress=True)
        seconds = time.perf_counter() - start
        labels = [p.label for p in preds]
        runs[name] = {
            "labels": labels, "probs": torch.tensor([list(p.probs.values()) for p in preds]),
            "accuracy": accuracy_score(gold, labels),
            "weighted_f1": f1_score(gold, labels, average="weighted", labels=list(labels_of("3")), zero_division=0),
            "items_per_second": len(texts) / seconds,
        }
    diff = (runs["int8"]["probs"] - runs["float32"]["probs"]).abs()
    result = {
        "model": str(clf.source), "data": f"{Path(texts_file).name}, {len(texts)} rows evenly spaced", "n": len(texts),
        "scheme": scheme, "batch_size": batch_size,
        **{name: {k: v for k, v in run.items() if k not in ("labels", "probs")} for name, run in runs.items()},
        "agreement": sum(a == b for a, b in zip(runs["float32"]["labels"], runs["int8"]["labels"])) / len(texts),
        "mean_abs_prob_diff": diff.mean().item(), "max_abs_prob_diff": diff.max().item(),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "int8_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / "int8_accuracy.md").write_text(format_int8(result) + "\n")
    return result


def format_int8(result: dict) -> str:
    lines = [
        f"int8 vs float32 on `{result['model']}`, {result['data']}, {result['scheme']}-class label scoring:",
        "",
        "| weights | accuracy | weighted F1 | items/s |",
        "|---|---:|---:|---:|",
    ]
    for name in ("float32", "int8"):
        r = result[name]
        lines.append(f"| {name} | {r['accuracy']:.4f} | {r['weighted_f1']:.4f} | {r['items_per_second']:.2f} |")
    lines += ["", f"Same label on {100 * result['agreement']:.1f} % of rows; probabilities differ by "
                  f"{result['mean_abs_prob_diff']:.4f} on average (at most {result['max_abs_prob_diff']:.4f})."]
    return "\n".join(lines)
