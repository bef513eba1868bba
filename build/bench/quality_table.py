"""One table (and plot) of every dev-split run of tfns_accuracy.py: what each training choice gained; and what
pruning costs (the same training at every prune ratio, side by side).

    .venv/bin/python build/bench/quality_table.py [--reference lora-r8-mix7-dev]   # reads results/tfns_accuracy-*.json

results/quality.md: one row per run with a dev score (``finetune.dev_fraction`` > 0), sorted by parameters then
``dev TFNS+FPB``, the accuracy over the TFNS + FPB dev rows (the one column comparable across runs: a run that adds
a source, e.g. the 7-class headlines, adds rows to its dev split), beside the overall dev accuracy and macro-F1,
each source's, TFNS validation where it was reported (once, for the chosen recipe), the 7-class guard, items/s,
wall time and peak memory; results/quality.png plots dev TFNS+FPB against parameters. Then the settings built more
than once on one dev split (only ``finetune.seed`` moved: the noise a choice has to beat), runs that averaged their
weights (``finetune.average_from``: last weights beside the mean) and runs that spent several trainings on one
model (soups, ensemble teachers: each part beside the model).

results/pruning_cost.json and .png: the runs trained exactly as the reference run (``--reference TAG``: the
model, prune, finetune and merge sections equal except how much is pruned and the logging / checkpoint cadence),
one row per removed share (0 % for a ``--no-prune`` run): parameters, fp16 size, dev accuracy, the 7-class guard,
dev items/s, wall time, commit and CPU. The model card shows them when a recipe sets ``card.pruning_cost``.
Every file is written atomically (temporary sibling, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from quality_plots import plot, plot_cost  # this folder: a script's own sys.path entry

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"
REFERENCE = "lora-r8-mix7-dev"  # the adopted recipe's run (smollm2-135m-fingpt.yaml)
# The recipe sections that decide what a run trains; everything else (name, description, eval, export, card,
# publish) describes or ships the model and may differ between runs of the same training.
COMPARED = ("model", "prune", "finetune", "merge")
# Settings that do not change what is trained: how much is pruned (the variable of the curve), the logging /
# dev-scoring / checkpoint cadence, and how the trained model is saved (merge.*: the dev score is taken before
# the merge; the 60 % run's float16 merge failed its check, 0.54 log-prob, and it was merged in float32).
IGNORED = ("prune.ratio", "prune.enabled", "prune.expansion", "finetune.dev_every", "finetune.logging_steps",
           "finetune.save_steps", "merge.dtype", "merge.tolerance")
TIMING = ("the runs were timed on a shared 2-core machine where other jobs ran at the same time: the speeds are "
          "indications, not a benchmark")
TIMING_GPU = ("each run was timed where it trained (its device), a CPU shared with other jobs or a GPU shared with "
              "the other runs: the speeds are indications, not a benchmark")
ITEMS_S = ("label scoring of the dev split as each run measured it at the end of its training (the model in its "
           "training dtype, the run's threads)")
METRIC = ("dev accuracy over the TFNS and FPB dev rows only (rows weighted by source: correct rows of both / "
          "rows of both), comparable across runs whatever other sources they add")


def source_kind(path: str, recipe: dict) -> str:
    """``tfns``, ``fpb`` or ``finsent`` (the 7-class headlines) for a dev source (a data file path), from the
    recipe's data entry for that file, else from the file's folder name; another name for anything else."""
    schemas = {d["path"]: d.get("schema") for d in recipe["finetune"]["data"]}
    schema = schemas.get(path) or Path(path).parent.name
    return "finsent" if schema.startswith("finsent") else schema


def correct_rows(score: dict) -> float:
    """Rows a source's dev score got right. The accuracy is stored rounded to 4 decimals, so below 10,000 rows
    ``n * accuracy`` is within 0.5 of the true (whole) count and rounds back to it."""
    exact = score["n"] * score["accuracy"]
    return round(exact) if score["n"] < 10_000 else exact


def pooled(scores: list[dict]) -> dict | None:
    """One score over the rows of several sources: ``n`` summed, accuracy = correct rows / rows (None if none)."""
    n = sum(s["n"] for s in scores)
    if not n:
        return None
    if len(scores) == 1:
        return {"n": n, "accuracy": scores[0]["accuracy"]}
    return {"n": n, "accuracy": round(sum(correct_rows(s) for s in scores) / n, 4)}


def per_source(result: dict) -> dict[str, dict]:
    """The dev score of each source kind (``{"tfns": {"n": .., "accuracy": ..}, ...}``; two files of one kind
    pooled)."""
    kinds: dict[str, list] = {}
    for path, score in result["dev"]["per_source"].items():
        kinds.setdefault(source_kind(path, result["recipe_contents"]), []).append(score)
    return {kind: pooled(scores) for kind, scores in kinds.items()}


def tfns_fpb(result: dict) -> dict | None:
    """The TFNS + FPB dev rows pooled (``{"n": .., "accuracy": ..}``; None when a run has neither)."""
    return pooled([s for path, s in result["dev"]["per_source"].items()
                   if source_kind(path, result["recipe_contents"]) in ("tfns", "fpb")])


def comparable_dev(result: dict) -> float | None:
    """Accuracy over the TFNS + FPB dev rows only: their correct rows / their rows (None when a run has neither)."""
    return (tfns_fpb(result) or {}).get("accuracy")


def load(results: Path) -> list[tuple[str, dict]]:
    """(tag, result) of every tfns_accuracy run in ``results`` that carries a dev score, by file name."""
    found = []
    for path in sorted(results.glob("tfns_accuracy-*.json")):
        result = json.loads(path.read_text())
        if result.get("dev"):  # older runs chose settings on TFNS validation itself: history, not in these tables
            found.append((path.stem.removeprefix("tfns_accuracy-"), result))
    return found


def trained_on(result: dict) -> str | None:
    """Where the run trained: its ``device`` (``GPU <name>`` or the CPU), else, for runs made before runs recorded
    it, the CPU (all of them trained on one)."""
    return result.get("device") or result.get("cpu")


def is_pruned(result: dict) -> bool:
    return bool(result.get("pruned", True)) and result["recipe_contents"]["prune"].get("enabled", True)


def runs(loaded: list[tuple[str, dict]]) -> list[dict]:
    found = []
    for tag, result in loaded:
        recipe = result["recipe_contents"]
        f = recipe["finetune"]
        per = {kind: s["accuracy"] for kind, s in per_source(result).items()}
        method = f"LoRA r{f['lora_r']}" if f.get("method", "lora") == "lora" else "full"
        if method == "full" and not f.get("freeze_embeddings", False):
            method += ", embeddings trained"  # every full run froze them until direct-emb-dev
        if not f.get("enabled", True):
            method = "no training"
        elif f.get("distill_from"):
            temperature = f.get("distill_temperature", 1.0)
            ensemble = f["distill_from"] if isinstance(f["distill_from"], list) and len(f["distill_from"]) > 1 else []
            method += (f" + KD{f' from {len(ensemble)} teachers' if ensemble else ''} (alpha {f['distill_alpha']}"
                       + (f", T {temperature:g})" if temperature != 1 else ")"))
        if f.get("average_from") is not None:
            method += f", weights averaged from {f['average_from']:.0%} of the run"
        if f.get("seeds"):
            method += f", {f['soup']} soup of {len(f['seeds'])} seeds"
        if is_pruned(result) and recipe["prune"].get("method", "ppm") != "ppm":
            method += f", {recipe['prune']['method']}-scored prune"
        if is_pruned(result) and recipe["prune"].get("vocab_first") is not None:
            seen = recipe["prune"].get("vocab_min_count", 1)
            tokens = "training tokens" if seen == 1 else f"training tokens seen {seen}+ times"
            method += f", vocabulary trimmed (first {recipe['prune']['vocab_first']} ids + {tokens})"
        if recipe["model"]["base"] != "smollm2":  # e.g. a tuned model pruned and recovered: name the folder
            method += f", from {Path(recipe['model']['base']).parent.name}"
        found.append({
            "run": tag, "method": method,
            "prune": _cell(removed_share(result), "{:.0%}").replace("-", "?"),
            "params": result["model_params"], "epochs": result["training"].get("epochs"), "lr": f["learning_rate"],
            "dev3": comparable_dev(result), "dev": result["dev"]["accuracy"], "dev_f1": result["dev"]["macro_f1"],
            "tfns_dev": per.get("tfns"), "fpb_dev": per.get("fpb"), "finsent_dev": per.get("finsent"),
            "tfns_valid": (result.get("tfns_validation") or {}).get("accuracy"),
            "seven": (result.get("seven_class_test") or {}).get("accuracy"),
            "items_s": result["dev"].get("items_per_second"), "wall_min": result["wall_seconds"] / 60,
            "resumed": bool(result.get("resumed_from_step")),
            "peak_gb": result["peak_memory_mb"] / 1024, "commit": result["git_commit"][:8],
            # a GPU run's own peak is the GPU's (training.json: torch's peak allocation), not the host process's
            "gpu_peak_gb": (result["training"].get("peak_memory_mb") or 0) / 1024
            if (trained_on(result) or "").startswith("GPU") else None,
            "device": trained_on(result),
        })
    return sorted(found, key=lambda r: (r["params"], -1 if r["dev3"] is None else r["dev3"], r["run"]))


def _cell(value, fmt="{}"):
    return "-" if value is None else fmt.format(value)


def table(rows: list[dict]) -> str:
    seven_dev = any(r["finsent_dev"] is not None for r in rows)  # the column only when a run has that source
    lines = ["| run | method | pruned | params | epochs | lr | dev TFNS+FPB | dev acc (all sources) | dev macro-F1 | "
             "TFNS dev | FPB dev | " + "finsent 7-class dev | " * seven_dev +
             "TFNS validation | 7-class test | items/s | wall | peak memory | trained on | commit |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * seven_dev +
             "---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        gpu = "" if r["gpu_peak_gb"] is None else f" (GPU {r['gpu_peak_gb']:.1f} GB)"
        lines.append(f"| {r['run']} | {r['method']} | {r['prune']} | {r['params'] / 1e6:.1f}M | {_cell(r['epochs'])} | "
                     f"{r['lr']:g} | {_cell(r['dev3'], '{:.4f}')} | {r['dev']:.4f} | {r['dev_f1']:.4f} | "
                     f"{_cell(r['tfns_dev'], '{:.4f}')} | {_cell(r['fpb_dev'], '{:.4f}')} | "
                     + f"{_cell(r['finsent_dev'], '{:.4f}')} | " * seven_dev +
                     f"{_cell(r['tfns_valid'], '{:.4f}')} | {_cell(r['seven'], '{:.3f}')} | "
                     f"{_cell(r['items_s'], '{:.1f}')} | {r['wall_min']:.0f} min{' (resumed part)' * r['resumed']} | "
                     f"{r['peak_gb']:.1f} GB{gpu} | "
                     f"{_cell(r['device'])} | {r['commit']} |")
    note = ("\ndev TFNS+FPB: " + METRIC + ". dev acc (all sources) also counts the rows of any other source a run "
            "trains on (the finsent 7-class headlines), so it compares only runs with the same sources.\n")
    return "\n".join(lines) + "\n" + note


# --- builds of one setting ---------------------------------------------------------------------------------
# What may differ between builds of one setting: the training seed (row order, LoRA init, an activation prune's
# calibration sample) and the logging / dev-scoring / checkpoint cadence.
SEEDS = ("finetune.seed", "finetune.dev_seed", "finetune.dev_every", "finetune.logging_steps", "finetune.save_steps")


def builds(loaded: list[tuple[str, dict]], rows: list[dict]) -> list[dict]:
    """Settings built two or more times, scored on one dev split: every training setting equal except the seed
    (``finetune.dev_seed`` fixes the split while ``finetune.seed`` moves), on any device. Their spread is the
    noise a choice between settings has to beat. ``rows``: ``runs(loaded)``, which names each setting. One row per
    setting, the runs of each in tag order."""
    from statistics import mean, stdev

    named = {r["run"]: r for r in rows}
    defaults = section_defaults("finetune")
    groups: dict[str, list] = {}
    for tag, result in loaded:
        settings = training_settings(result["recipe_contents"], SEEDS)
        f = {**defaults, **result["recipe_contents"]["finetune"]}  # a run older than dev_seed: the split is seed's
        split = f["seed"] if f["dev_seed"] is None else f["dev_seed"]
        key = json.dumps([settings, is_pruned(result), split], sort_keys=True, default=str)
        if comparable_dev(result) is not None:
            groups.setdefault(key, []).append((tag, result))
    found = []
    for members in groups.values():
        if len(members) < 2:
            continue
        scores = [comparable_dev(result) for _, result in members]
        first = named[members[0][0]]
        found.append({"setting": f"{first['method']}, {first['prune']} pruned, lr {first['lr']:g}",
                     "runs": [tag for tag, _ in members],
                     "seeds": [r["recipe_contents"]["finetune"].get("seed", defaults["seed"]) for _, r in members],
                     "mean": round(mean(scores), 4), "sd": round(stdev(scores), 4),
                     "min": min(scores), "max": max(scores)})
    return sorted(found, key=lambda r: r["setting"])


def builds_table(rows: list[dict]) -> str:
    head = ("\n### Builds of one setting\n\nSettings built more than once on the same dev split (only the seed or the "
            "device differs); sd: the sample standard deviation of dev TFNS+FPB between builds, the noise a choice "
            "between settings has to beat.\n\n")
    if not rows:
        return head + "No setting has been built twice yet.\n"
    lines = ["| setting | builds | seeds | dev TFNS+FPB mean | sd | min - max |", "|---|---|---|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {', '.join(r['runs'])} | {', '.join(map(str, r['seeds']))} | "
                     f"{r['mean']:.4f} | {r['sd']:.4f} | {r['min']:.4f} - {r['max']:.4f} |")
    return head + "\n".join(lines) + "\n"


def averaged(loaded: list[tuple[str, dict]]) -> list[dict]:
    """Runs that averaged their weights (``finetune.average_from``): the dev TFNS+FPB of their last weights and of
    the mean, both scored in the one run, so the difference is the averaging's alone (same training, same rows)."""
    found = []
    for tag, result in loaded:
        average = result.get("weight_average")
        if not average or not average.get("dev_last_weights"):
            continue
        last = tfns_fpb({"dev": average["dev_last_weights"], "recipe_contents": result["recipe_contents"]})
        mean = tfns_fpb(result)
        if last and mean:
            found.append({"run": tag, "from": average["from"], "steps": average["steps_averaged"],
                          "last": last["accuracy"], "mean": mean["accuracy"], "n": mean["n"],
                          "rows": round(correct_rows(mean) - correct_rows(last))})
    return found


def averaged_table(rows: list[dict]) -> str:
    if not rows:
        return ""
    lines = ["\n### Weights averaged\n", "Runs with `finetune.average_from`: dev TFNS+FPB of the last weights and of "
             "their mean over the run's last steps, both from the one training.\n",
             "| run | averaged from | steps averaged | last weights | averaged | dev rows gained |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['from']:.0%} | {r['steps']} | {r['last']:.4f} | {r['mean']:.4f} | "
              f"{r['rows']:+d} of {r['n']} |" for r in rows]
    return "\n".join(lines) + "\n"


def several(loaded: list[tuple[str, dict]]) -> list[dict]:
    """Soups (``finetune.seeds``) and ensemble students (``finetune.distill_from``, 2+ teachers), each part with its
    dev TFNS+FPB where a run here trained it (a soup member, or a run's ``runs/bench-<recipe>-<tag>/merged``)."""
    def member_dev(member: dict, result: dict) -> float | None:
        return comparable_dev({"dev": member["dev"], "recipe_contents": result["recipe_contents"]})

    known = {ROOT / "runs" / f"bench-{r['recipe_contents']['name']}-{tag}" / "merged": (tag, comparable_dev(r))
             for tag, r in loaded}  # folder -> (label, dev TFNS+FPB)
    members = [(tag, r, m) for tag, r in loaded for m in (r.get("soup") or {}).get("members", [])]
    for tag, result, m in sorted(members, key=lambda x: bool(x[2].get("reused"))):  # named by the run that trained it
        known.setdefault((ROOT / m["folder"]).resolve(), (f"{tag} seed {m['seed']}", member_dev(m, result)))
    found = []
    for tag, result in loaded:
        f, soup = result["recipe_contents"]["finetune"], result.get("soup")
        teachers = f.get("distill_from") if isinstance(f.get("distill_from"), list) else []
        if not soup and len(teachers) < 2:
            continue
        parts = ([(f"seed {m['seed']}", member_dev(m, result)) for m in soup["members"]] if soup
                 else [known.get((ROOT / t).resolve(), (t, None)) for t in teachers])
        kind = (f"{soup['method']} soup" if soup else
                f"ensemble teacher (alpha {f['distill_alpha']}, T {f.get('distill_temperature', 1.0):g})")
        found.append({"run": tag, "kind": kind, "parts": parts, "chosen": soup and soup["chosen"],
                      "dev": comparable_dev(result), "minutes": (result["training"].get("seconds") or 0) / 60,
                      "peak": result["training"].get("peak_memory_mb")})
    return found


def several_table(rows: list[dict]) -> str:
    lines = ["\n### Several trainings in one model\n", "Soups (the members' weights averaged) and ensemble teachers "
             "(one student learns the teachers' averaged label distributions): dev TFNS+FPB of each part and of the "
             "model. Fine-tuning and peak memory: a soup's members summed and their largest peak; an ensemble "
             "student's own (its teachers trained in the runs named).\n",
             "| run | kind | parts (dev TFNS+FPB) | chosen | best part | model | gain | fine-tuning | peak memory |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        best = max((dev for _, dev in r["parts"] if dev is not None), default=None)
        gain = None if best is None or r["dev"] is None else 100 * (r["dev"] - best)
        parts = ", ".join(f"{label} {_cell(dev, '{:.4f}')}" for label, dev in r["parts"])
        lines.append(f"| {r['run']} | {r['kind']} | {parts} | {_cell(r['chosen'])} | {_cell(best, '{:.4f}')} | "
                     f"{_cell(r['dev'], '{:.4f}')} | {_cell(gain, '{:+.2f} pt')} | {r['minutes']:.1f} min | "
                     f"{_cell(r['peak'], '{:,.0f} MiB')} |")
    return "\n".join(lines) + "\n" if rows else ""


# --- what pruning costs ------------------------------------------------------------------------------------


def section_defaults(section: str) -> dict:
    """A recipe section's fields and their defaults in today's ``finsent.core.recipes``."""
    from dataclasses import MISSING, fields

    from finsent.core import recipes

    cls = {"model": recipes.ModelSection, "prune": recipes.PruneSection, "finetune": recipes.FinetuneSection,
           "merge": recipes.MergeSection}[section]
    return {f.name: f.default_factory() if f.default_factory is not MISSING else f.default
            for f in fields(cls) if f.default is not MISSING or f.default_factory is not MISSING}


def training_settings(recipe: dict, ignored: tuple[str, ...] = IGNORED) -> dict:
    """The recipe's settings that decide what is trained, as ``{"finetune.lora_r": 8, ...}`` (``ignored`` left out).
    A field added to the recipes after a run was made counts at its default, which is what that run trained with
    (prune.vocab_min_count did not exist when the first pruning-cost rows ran)."""
    flat: dict = {}

    def walk(value, key):
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}.{k}")
        elif key not in ignored:
            flat[key] = value

    for section in COMPARED:
        walk({**section_defaults(section), **(recipe.get(section) or {})}, section)
    return flat


def removed_share(result: dict) -> float | None:
    """The share of MLP neurons the run's prune removed (its ``prune.ratio``), 0 for an unpruned run; None when
    the prune was given as a target expansion (no ratio to show)."""
    if not is_pruned(result):
        return 0.0
    ratio = result["recipe_contents"]["prune"].get("ratio")
    return None if ratio is None else float(ratio)


def cost_row(tag: str, result: dict) -> dict:
    per = per_source(result)
    params = result["model_params"]
    return {
        "run": tag, "removed_share": removed_share(result), "pruned": is_pruned(result), "params": params,
        "fp16_mb": round(params * 2 / 1e6, 1), "dev_accuracy": comparable_dev(result),
        "dev_n": (tfns_fpb(result) or {}).get("n", 0),
        "tfns_dev": (per.get("tfns") or {}).get("accuracy"), "fpb_dev": (per.get("fpb") or {}).get("accuracy"),
        "finsent_dev": (per.get("finsent") or {}).get("accuracy"),
        "seven_class_test": (result.get("seven_class_test") or {}).get("accuracy"),
        "items_per_second": result["dev"].get("items_per_second"),
        "wall_minutes": round(result["wall_seconds"] / 60, 1),
        "resumed_from_step": result.get("resumed_from_step") or 0,
        "commit": result["git_commit"][:8], "cpu": result.get("cpu"), "device": trained_on(result),
    }


def pruning_cost(loaded: list[tuple[str, dict]], reference: str, source: str) -> dict:
    """The runs trained as ``reference`` (see COMPARED / IGNORED), one row each, least pruned first."""
    results = dict(loaded)
    if reference not in results:
        raise SystemExit(f"reference run {reference!r} has no dev score here (tfns_accuracy-{reference}.json with "
                         f"finetune.dev_fraction set): choose another with --reference; runs: {', '.join(results)}")
    ref = results[reference]
    settings = training_settings(ref["recipe_contents"])
    rows, skipped = [], []
    for tag, result in loaded:
        if training_settings(result["recipe_contents"]) != settings:
            continue
        if removed_share(result) is None:
            skipped.append(tag)
            continue
        rows.append(cost_row(tag, result))
    for tag in skipped:
        print(f"pruning cost: {tag} skipped: pruned to a target expansion, no prune.ratio to show", file=sys.stderr)
    rows.sort(key=lambda r: (r["removed_share"], r["run"]))
    cpus = sorted({r["cpu"] for r in rows if r["cpu"]})
    devices = sorted({r["device"] for r in rows if r["device"]})
    return {
        "source": source, "reference": reference, "recipe": ref["recipe_contents"]["name"],
        "base": ref["recipe_contents"]["model"]["base"], "method": ref["recipe_contents"]["prune"]["method"],
        "split": (ref.get("selection") or {}).get("split"), "metric": METRIC,
        "same_training": f"every setting of the recipe sections {', '.join(COMPARED)} equal to the reference run's, "
                         f"except {', '.join(IGNORED)}",
        "items_per_second": ITEMS_S, "timing": TIMING_GPU if any(d.startswith("GPU") for d in devices) else TIMING,
        "cpu": "; ".join(cpus) if cpus else None,
        "devices": devices, "rows": rows,
    }


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", default=REFERENCE,
                        help=f"tag of the run whose training the pruning-cost rows share (default {REFERENCE})")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="folder of the tfns_accuracy-*.json results; the tables are written there too")
    args = parser.parse_args(argv)
    results = args.results
    loaded = load(results)
    if not loaded:
        raise SystemExit(f"no run with a dev score in {results}: run tfns_accuracy.py with finetune.dev_fraction set")
    from finsent.core.outputs import write_text_atomic

    rows = runs(loaded)
    text = (table(rows) + builds_table(builds(loaded, rows)) + averaged_table(averaged(loaded))
            + several_table(several(loaded)))
    write_text_atomic(results / "quality.md", text)
    plot(rows, results / "quality.png")
    print(text, end="")

    command = f"python build/bench/quality_table.py --reference {args.reference}"
    if results.resolve() != RESULTS:
        command += f" --results {_shown(results)}"
    source = f"{command} (from {_shown(results)}/tfns_accuracy-*.json)"
    cost = pruning_cost(loaded, args.reference, source)
    write_text_atomic(results / "pruning_cost.json", json.dumps(cost, indent=2) + "\n")
    plot_cost(cost, results / "pruning_cost.png")
    print(f"pruning cost ({cost['recipe']}, like {args.reference}): "
          + ", ".join(f"{r['run']} {100 * r['removed_share']:.0f} % -> {r['dev_accuracy']}" for r in cost["rows"]))
    print(f"written {results / 'quality.md'}, quality.png, pruning_cost.json and pruning_cost.png")


if __name__ == "__main__":
    main()
