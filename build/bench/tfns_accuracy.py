"""Accuracy benchmark of the build stage: prune -> fine-tune -> merge SmolLM2 on real data, score TFNS validation.

    .venv/bin/python build/bench/tfns_accuracy.py --recipe build/recipes/smollm2-135m-fingpt.yaml \\
        [--max-steps N] [--eval-every 200 --probe-rows 500] [--eval-limit N] [--no-prune] [--resume]
    .venv/bin/python build/bench/tfns_accuracy.py --report TAG   # TFNS validation, once, for a chosen --dev-only run

Trains the recipe's pipeline (TFNS train + FPB train from ../shared/data for smollm2-135m-fingpt.yaml),
optionally scores a fixed ``--probe-rows`` sample of the TFNS validation set every ``--eval-every``
steps while training (accuracy against steps, one learning-rate schedule), then merges and scores
the merged model on the TFNS validation set (all 2,388 rows unless ``--eval-limit``) with the one
classification path (``FinSentClassifier``, label scoring). Prints accuracy, macro-F1, wall time per
stage, peak memory and training tokens/s; writes build/bench/results/tfns_accuracy[-TAG].json and a
plot of accuracy against steps. A shared machine makes the timings noisy.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import time
from pathlib import Path

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "bench" / "results"
TFNS_VALID = ROOT.parent / "shared" / "data" / "tfns" / "sent_valid.csv"
SEVEN_TEST = ROOT / "data" / "finsent-headlines" / "test.jsonl"  # the project's own 7-class headlines


def score(model, tokenizer, bench, batch_size: int = 32) -> dict:
    """Accuracy and macro-F1 of label scoring on the benchmark rows (grouped by instruction kind)."""
    from sklearn.metrics import accuracy_score, f1_score

    from finsent.core.classify import FinSentClassifier

    clf = FinSentClassifier(model, tokenizer, batch_size=batch_size)
    gold, pred = [], []
    for kind in sorted({r.kind for r in bench.rows}):
        rows = [r for r in bench.rows if r.kind == kind]
        preds = clf.classify([r.text for r in rows], bench.scheme, kind=kind, batch_size=batch_size, progress=True)
        gold += [r.label for r in rows]
        pred += [p.label for p in preds]
    return {"n": len(gold), "accuracy": round(accuracy_score(gold, pred), 4),
            "macro_f1": round(f1_score(gold, pred, average="macro"), 4),
            "weighted_f1": round(f1_score(gold, pred, average="weighted"), 4)}


class ProbeEval(TrainerCallback):
    """Scores the probe sample every ``every`` optimizer steps with the adapter model as it is."""

    def __init__(self, tokenizer, bench, every: int):
        self.tokenizer, self.bench, self.every, self.curve = tokenizer, bench, every, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.every:
            return
        from finsent.core.models import unwrap

        model.eval()
        start = time.perf_counter()
        result = score(unwrap(model), self.tokenizer, self.bench)
        model.train()
        self.curve.append({"step": state.global_step, **result, "seconds": round(time.perf_counter() - start, 1)})
        print(f"step {state.global_step}: probe accuracy {result['accuracy']} macro-F1 {result['macro_f1']}",
              flush=True)


def plot_curve(curve: list[dict], path: Path, title: str, batch: int) -> None:
    """Probe accuracy and macro-F1 against optimizer steps (one PNG beside the results JSON)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([c["step"] for c in curve], [c["accuracy"] for c in curve], marker="o", label="accuracy")
    ax.plot([c["step"] for c in curve], [c["macro_f1"] for c in curve], marker="s", label="macro-F1")
    ax.set_xlabel(f"optimizer step (batch {batch})")
    ax.set_ylabel(f"TFNS validation, {curve[0]['n']}-row sample")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report_once(tag: str) -> None:
    """Score TFNS validation for the finished ``--dev-only`` run ``tag``, the one its dev split chose.

    Adds ``tfns_validation`` and ``reported`` (when, at which commit, the merged weights' SHA-256) to the run's
    results JSON, and refuses a run that already has a TFNS validation score: the test set is looked at once.
    """
    import datetime

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finsent.core.outputs import write_text_atomic
    from finsent.core.provenance import file_sha256, git_commit
    from finsent.evaluation.benchmarks import load_benchmark

    path = RESULTS / f"tfns_accuracy-{tag}.json"
    if not path.is_file():
        raise SystemExit(f"no results for run {tag!r} ({path})")
    result = json.loads(path.read_text())
    if result.get("tfns_validation"):
        raise SystemExit(f"{path.name} already has a TFNS validation score: it is reported once")
    if not result.get("dev"):
        raise SystemExit(f"{path.name} has no dev score: only a run chosen on the dev split is reported")
    merged = ROOT / "runs" / f"bench-{result['recipe_contents']['name']}-{tag}" / "merged"
    weights = merged / "model.safetensors"
    if not weights.is_file():
        raise SystemExit(f"{merged} holds no merged model: the run's folder is gone, rebuild it first")
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    final = score(model, AutoTokenizer.from_pretrained(merged), load_benchmark("tfns", TFNS_VALID, "3"))
    result["tfns_validation"] = final
    result["reported"] = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "git_commit": git_commit(), "model_sha256": file_sha256(str(weights)),
                          "data_sha256": file_sha256(str(TFNS_VALID)), "seconds": round(time.perf_counter() - start, 1)}
    write_text_atomic(path, json.dumps(result, indent=2) + "\n")
    print(f"TFNS validation ({final['n']} rows): accuracy {final['accuracy']}  macro-F1 {final['macro_f1']}  "
          f"weighted-F1 {final['weighted_f1']}\nwritten {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(ROOT / "build" / "recipes" / "smollm2-135m-fingpt.yaml"))
    parser.add_argument("--max-steps", type=int, help="override finetune.max_steps")
    parser.add_argument("--learning-rate", type=float, help="override finetune.learning_rate")
    parser.add_argument("--eval-every", type=int, default=0, help="score the probe sample every N steps (0: never)")
    parser.add_argument("--probe-rows", type=int, default=500, help="rows of TFNS validation in the probe sample")
    parser.add_argument("--eval-limit", type=int, help="score only N rows of TFNS validation at the end")
    parser.add_argument("--no-prune", action="store_true", help="fine-tune the unpruned model (does pruning hurt?)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint of an interrupted run (WORK/.adapter.checkpoints) "
                             "or of a finished one (WORK/adapter/checkpoints, e.g. to train it for more steps)")
    parser.add_argument("--work", help="working folder (default runs/bench-<recipe name>[-TAG])")
    parser.add_argument("--tag", default="", help="suffix for the work folder and the results file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value (YAML), e.g. --set finetune.method=full")
    parser.add_argument("--overwrite", action="store_true", help="replace a committed results file of this tag")
    parser.add_argument("--dev-only", action="store_true",
                        help="choose settings: score the dev split (finetune.dev_fraction) and not TFNS validation, "
                             "which is reported once, for the chosen recipe")
    parser.add_argument("--report", metavar="TAG",
                        help="score TFNS validation once for the finished --dev-only run TAG that the dev split chose "
                             "(adds it to that run's results JSON; refused if it has one already)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.report:
        return report_once(args.report)
    from finsent.build.allocator import use_jemalloc

    use_jemalloc()  # as finsent finetune trains (FINSENT_ALLOCATOR=system: glibc's malloc)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finsent.build.data import training_data
    from finsent.build.devsplit import score_dev
    from finsent.build.finetune import run_finetune
    from finsent.build.merge import run_merge
    from finsent.build.pruning import calibration_texts, run_prune, vocab_rows
    from finsent.core.classify import FinSentClassifier
    from finsent.core.models import locate_model
    from finsent.core.outputs import tracked_files, write_text_atomic
    from finsent.core.provenance import cpu_flags, cpu_name, file_sha256, git_commit
    from finsent.core.recipes import load_recipe, parse_overrides
    from finsent.evaluation.benchmarks import load_benchmark

    overrides = parse_overrides(args.set)
    if args.max_steps:
        overrides["finetune.max_steps"] = args.max_steps
    if args.learning_rate:
        overrides["finetune.learning_rate"] = args.learning_rate
    recipe = load_recipe(args.recipe, overrides)
    suffix = f"-{args.tag}" if args.tag else ""
    out = RESULTS / f"tfns_accuracy{suffix}.json"
    if out.exists() and tracked_files(out) and not args.overwrite:  # checked before an hour of training
        raise SystemExit(f"{out} is a committed result: choose another --tag, or pass --overwrite")
    work = Path(args.work or ROOT / "runs" / f"bench-{recipe.name}{suffix}")
    stages: dict[str, dict] = {}

    def mark(name, start):
        stages[name] = {"seconds": round(time.perf_counter() - start, 1),
                        "peak_memory_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        print(f"== {name}: {stages[name]['seconds']} s, process peak memory {stages[name]['peak_memory_mb_so_far']} MB",
              flush=True)

    commit = git_commit()  # the code that runs: taken now, as commits made during an hour of training are not
    t = time.perf_counter()
    base = Path(locate_model(recipe.model.base))
    pruned = recipe.prune.enabled and not args.no_prune  # a recipe's prune.enabled: false is honoured too
    if pruned:
        base = run_prune(recipe.prune, str(base), work / "pruned", progress=False,
                         calibration=calibration_texts(recipe), vocab=vocab_rows(recipe))
    mark("prune", t)

    callbacks = []
    if args.eval_every:
        probe = load_benchmark("tfns", TFNS_VALID, "3", limit=args.probe_rows)
        callbacks.append(ProbeEval(AutoTokenizer.from_pretrained(base), probe, args.eval_every))
    adapter, training = None, {}  # finetune.enabled: false scores the pruned model as it is
    if recipe.finetune.enabled:
        t = time.perf_counter()
        adapter = run_finetune(recipe, base, work / "adapter", resume=args.resume, callbacks=callbacks)
        mark("finetune", t)
        training = json.loads((adapter / "training.json").read_text())

    t = time.perf_counter()
    merged = run_merge(recipe, base, adapter, work / "merged")
    mark("merge", t)

    final = None
    # Scored in float32 where it was trained (the GPU, when there is one): the run records which.
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(merged)
    if adapter is None and recipe.finetune.dev_fraction:  # the dev rows training would have held out and scored
        f = recipe.finetune
        t = time.perf_counter()
        dev = training_data(f).dev
        training["dev"] = score_dev(FinSentClassifier(model, tokenizer, batch_size=32), dev, 32)
        mark("dev", t)
    # The guard of the 7-class prompt: a 3-class gain must not come from breaking it (not used to choose).
    t = time.perf_counter()
    seven = score(model, tokenizer, load_benchmark("finsent", SEVEN_TEST, "7"))
    mark("seven-class", t)
    if not args.dev_only:
        t = time.perf_counter()
        bench = load_benchmark("tfns", TFNS_VALID, "3", limit=args.eval_limit)
        final = score(model, tokenizer, bench)
        mark("eval", t)

    result = {"git_commit": commit, "cpu": cpu_name(), "cpu_flags": cpu_flags(),
              "device": f"GPU {torch.cuda.get_device_name()}" if device == "cuda" else cpu_name(),
              "recipe": recipe.source, "recipe_contents": recipe.to_dict(),
              "data_sha256": {src.path: file_sha256(src.path) for src in recipe.finetune.data},
              "seed": recipe.finetune.seed, "model_params": sum(p.numel() for p in model.parameters()),
              "selection": {"split": f"dev: {recipe.finetune.dev_fraction} of each training source, stratified by "
                                     f"label, seed {recipe.finetune.split_seed} (row ids in the adapter's "
                                     "dev_split.json, or drawn again by finsent.build.devsplit when nothing was "
                                     "trained)",
                            "metric": "dev accuracy"} if recipe.finetune.dev_fraction else None,
              "dev": training.get("dev"), "dev_curve": training.get("dev_curve", []),
              # finetune.average_from: the steps averaged, and the dev score of the last weights beside the mean's
              "weight_average": training.get("weight_average"),
              # finetune.seeds: each member's dev score, seconds and memory, the greedy trials, the seeds chosen
              "soup": training.get("soup"),
              "seven_class_test": seven,
              "pruned": pruned, "max_steps": recipe.finetune.max_steps,
              # A resumed run's training time, tokens/s and probe curve cover only the steps after this one.
              "resumed_from_step": training.get("resumed_from_step") or 0,
              "learning_rate": recipe.finetune.learning_rate, "tfns_validation": final, "stages": stages,
              "training": {k: training.get(k) for k in ("method", "steps", "epochs", "train_loss", "tokens_per_second",
                                                        "seconds", "peak_memory_mb", "allocator", "rows",
                                                        "tokens_per_row", "precision", "trainable_params")},
              "wall_seconds": round(sum(v["seconds"] for v in stages.values()), 1),
              "peak_memory_mb": max(v["peak_memory_mb_so_far"] for v in stages.values()),
              "probe_curve": callbacks[0].curve if callbacks else [],
              "threads": torch.get_num_threads()}
    write_text_atomic(out, json.dumps(result, indent=2) + "\n")
    if result["probe_curve"]:
        plot_curve(result["probe_curve"], out.with_suffix(".png"), f"{recipe.name}{suffix}",
                   recipe.finetune.batch_size * recipe.finetune.grad_accum)
    if result["dev"]:
        sources = ", ".join(f"{Path(k).parent.name} {v['accuracy']}" for k, v in result["dev"]["per_source"].items())
        print(f"dev split ({result['dev']['n']} rows): accuracy {result['dev']['accuracy']}  macro-F1 "
              f"{result['dev']['macro_f1']}  ({sources})")
    print(f"7-class guard, project headlines test ({seven['n']} rows): accuracy {seven['accuracy']}  "
          f"macro-F1 {seven['macro_f1']}")
    if final:
        print(f"TFNS validation ({final['n']} rows): accuracy {final['accuracy']}  macro-F1 {final['macro_f1']}  "
              f"weighted-F1 {final['weighted_f1']}")
    timings = ", ".join(f"{k} {v['seconds']} s" for k, v in stages.items())
    if adapter:
        print(f"training: {training['steps']} steps, {training['tokens_per_second']} tokens/s, "
              f"peak {training['peak_memory_mb']} MB")
    print(f"stages: {timings}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
