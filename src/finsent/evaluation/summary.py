"""Confusion-matrix plots and ``summary.md`` for a folder of ``finsent eval`` results.

    finsent eval ... --out DIR        # writes DIR/summary.md after the runs

``write_summary(out_dir)`` tabulates every results JSON in the folder (one row per benchmark x
scheme x mode, a per-class table and the confusion-matrix image of each run), then compares the
headline weighted F1 with the published scores in ``finsent/resources/references.yaml`` (package
data, so an installed wheel has it), which are reported elsewhere and are marked so: this project
did not measure them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from finsent.core.paths import RESOURCES
from finsent.evaluation.benchmarks import BENCHMARKS

logger = logging.getLogger(__name__)

REFERENCES_FILE = RESOURCES / "references.yaml"
SUMMARY_NAME = "summary.md"


def plot_confusion(result: dict, path: Path) -> Path:
    """A confusion-matrix PNG (rows = gold, columns = predicted, colour = share of the row's gold items)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = result["metrics"]
    labels = m["labels"]
    counts = np.array(m["confusion_matrix"], dtype=float)
    columns = list(labels)
    if m["unparseable"]:
        # One more column, so each row still accounts for all of its gold items.
        counts = np.hstack([counts, [[m["unparseable_by_label"][lab]] for lab in labels]])
        columns.append("(unparseable)")
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.1 * len(columns) + 2.5
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(columns)):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                    color="white" if shares[i, j] > 0.6 else "black", fontsize=9)
    ax.set_xticks(range(len(columns)), columns, rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    title = BENCHMARKS[result["benchmark"]].title if result["benchmark"] in BENCHMARKS else result["benchmark"]
    ax.set_title(f"{title}, {result['scheme']} classes, {result['mode']} (n={result['n']})\n"
                 f"accuracy {m['accuracy']:.3f}, weighted F1 {m['weighted_f1']:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_results(out_dir: Path) -> list[dict]:
    """Every results JSON in the folder (files with 'benchmark' and 'metrics'), in table order."""
    order = list(BENCHMARKS)
    found = []
    for p in sorted(Path(out_dir).glob("*.json")):
        data = json.loads(p.read_text())
        if isinstance(data, dict) and "benchmark" in data and "metrics" in data:
            found.append(data)
    rank = {name: i for i, name in enumerate(order)}
    return sorted(found, key=lambda r: (rank.get(r["benchmark"], len(order)), r["scheme"], r["mode"] != "score"))


def load_references(path: Path | None = None) -> dict:
    """The published reference scores; each model entry needs name, source, note and its scores."""
    import yaml

    path = Path(path or REFERENCES_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"reference scores not found: {path}")
    refs = yaml.safe_load(path.read_text())
    for i, entry in enumerate(refs.get("models", []), start=1):
        missing = [k for k in ("name", "source", "note", "weighted_f1") if not entry.get(k)]
        if missing:
            raise ValueError(f"{path}: model #{i}: missing {', '.join(missing)}")
        unknown = sorted(set(entry["weighted_f1"]) - set(BENCHMARKS))
        if unknown:
            raise ValueError(f"{path}: model #{i} ({entry['name']}): unknown benchmark(s) {unknown}")
    return refs


def _f(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _full(result: dict) -> bool:
    """Whether a run covered the whole published test set (comparable with published scores)."""
    spec = BENCHMARKS.get(result["benchmark"])
    if spec is None or "sample" in result["split"]:
        return False
    return spec.size is None or result["n"] == spec.size


def results_table(results: list[dict]) -> list[str]:
    lines = ["| benchmark | classes | mode | n | accuracy | macro-F1 | weighted-F1 | unparseable | items/s |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        m = r["metrics"]
        title = BENCHMARKS[r["benchmark"]].title if r["benchmark"] in BENCHMARKS else r["benchmark"]
        ips = r.get("items_per_second")
        lines.append(f"| {title} | {r['scheme']} | {r['mode']} | {r['n']} | {m['accuracy']:.3f} | "
                     f"{m['macro_f1']:.3f} | {m['weighted_f1']:.3f} | {m['unparseable']} | "
                     f"{'–' if ips is None else f'{ips:.1f}'} |")
    return lines


def per_class_table(result: dict) -> list[str]:
    lines = ["| label | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for label in result["metrics"]["labels"]:
        c = result["metrics"]["per_class"][label]
        lines.append(f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | {c['support']} |")
    return lines


def comparison_table(results: list[dict], refs: dict) -> list[str]:
    """Weighted F1 (3 classes): this model's runs, then the published scores reported elsewhere."""
    names = [n for n in BENCHMARKS if BENCHMARKS[n].hub_id]  # the four FinGPT benchmarks
    lines = ["| model | " + " | ".join(BENCHMARKS[n].title for n in names) + " | source |",
             "|---|" + "---:|" * len(names) + "---|"]
    model = results[0]["model"] if results else "this model"
    for mode in ("score", "generate"):
        runs = {r["benchmark"]: r for r in results if r["scheme"] == "3" and r["mode"] == mode}
        if not any(n in runs for n in names):
            continue
        cells = []
        for n in names:
            r = runs.get(n)
            cell = "–" if r is None else _f(r["metrics"]["weighted_f1"])
            cells.append(cell if r is None or _full(r) else f"{cell}†")
        lines.append(f"| **{model}** ({mode}) | " + " | ".join(cells) + " | measured here |")
    for entry in refs.get("models", []):
        cells = [_f(entry["weighted_f1"].get(n)) for n in names]
        lines.append(f"| {entry['name']} | " + " | ".join(cells) + f" | {entry['source']} ({entry['note']}) |")
    return lines


def write_summary(out_dir: Path, references: Path | None = None) -> Path:
    """Write ``out_dir/summary.md`` from the results JSON files there; returns its path."""
    out_dir = Path(out_dir)
    results = load_results(out_dir)
    if not results:
        raise FileNotFoundError(f"{out_dir}: no finsent eval results (*.json) to summarise")
    refs = load_references(references)
    model = results[0]["model"]
    lines = [f"# Evaluation of {model}", "",
             f"Model hash `{results[0]['model_hash']}`. Weighted F1 is FinGPT's headline metric. Generated "
             "answers that are not a label count as wrong (column *unparseable*), never as neutral.", "",
             "## Results", "", *results_table(results), ""]
    others = sorted({r["model_hash"] for r in results} - {results[0]["model_hash"]})
    if others:
        lines += [f"Warning: this folder mixes results of {len(others) + 1} different models.", ""]
    lines += ["## Compared with published scores (weighted F1, 3 classes)", "",
              f"Every row but this model's is **reported elsewhere**, not measured by this project: "
              f"{refs.get('note', '')}".rstrip(), "", *comparison_table(results, refs), ""]
    if any(not _full(r) for r in results if r["scheme"] == "3"):
        lines += ["† measured on a subset of the benchmark (see *n* above): not comparable with the "
                  "published full-set scores.", ""]
    lines += ["## Runs", ""]
    for r in results:
        stem = f"{r['benchmark']}-{r['scheme']}-{r['mode']}"
        lines += [f"### {stem}", "",
                  f"{r['n']} rows of `{r['dataset']}` ({r['split']}), data sha256 `{r['data_sha256'][:16]}…`, "
                  f"{r['seconds']:.1f} s.", "", *per_class_table(r), "",
                  f"![confusion matrix of {stem}]({stem}.png)", ""]
    path = out_dir / SUMMARY_NAME
    path.write_text("\n".join(lines))
    logger.info("wrote %s (%d runs)", path, len(results))
    return path
