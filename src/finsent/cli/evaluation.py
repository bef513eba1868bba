"""``finsent eval``: the FinGPT benchmarks (and the project's headlines) on a model."""

from __future__ import annotations

from pathlib import Path

from finsent.core.args import positive_int
from finsent.core.classify import MODES as RESULT_MODES
from finsent.core.models import resolve_model
from finsent.core.outputs import OutputError, check_name, check_output_dir
from finsent.core.recipes import EvalBenchmark, load_recipe
from finsent.evaluation.benchmarks import BENCHMARKS, get_spec, parse_benchmark_arg
from finsent.evaluation.runs import WHAT, EvalError, check_runs, result_stem, run_eval


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="accuracy on the FinGPT benchmarks (results JSON, confusion matrices, summary.md)",
        description="Evaluate a model on FPB, FiQA-SA, TFNS, NWGI and the project's own test set. "
                    "Benchmarks load from the Hub by default; NAME:PATH reads a local file or folder.",
    )
    p.add_argument("--model", help="folder, Hub id or 'smollm2' (default: the recipe's release, else "
                                   "$FINSENT_MODEL, newest release, published model)")
    p.add_argument("--recipe", help="take benchmarks, modes, batch size and the release folder from a recipe")
    p.add_argument("--benchmark", action="append", metavar="NAME[:PATH]",
                   help=f"repeatable; NAME in {', '.join(BENCHMARKS)} (default: the recipe's, else all)")
    p.add_argument("--scheme", choices=["3", "7"], help="label scheme (default 3; 7 only for nwgi and finsent)")
    p.add_argument("--mode", choices=["score", "generate", "both"], help="default: the recipe's, else score")
    p.add_argument("--limit", type=positive_int, help="evaluate a seeded sample of N rows of each benchmark")
    p.add_argument("--batch-size", type=positive_int, help="default: the recipe's, else 16")
    p.add_argument("--out", help="output folder, written whole (default: releases/<recipe>/eval, else "
                                  "eval/results/<model>); a folder finsent did not write, or one holding committed "
                                  "results, is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if finsent did not write it or it holds results committed to git")
    p.set_defaults(func=_eval_command)


def _eval_command(args) -> int:
    recipe = load_recipe(args.recipe) if args.recipe else None
    model, out = args.model, args.out
    if recipe is not None:
        release = Path("releases") / check_name(recipe.name, "recipe name")
        if model is None:
            if not (release / "config.json").is_file():
                raise EvalError(f"recipe {recipe.name}: no release at {release} (run `finsent release "
                                f"{args.recipe}` first, or pass --model)")
            model = str(release)
        out = out or str(release / "eval")
    modes = _modes(args.mode, recipe)
    benchmarks = _benchmarks(args, recipe)
    check_runs(benchmarks, modes)
    batch_size = args.batch_size if args.batch_size is not None else (recipe.eval.batch_size if recipe else 16)
    if out is None:
        out = str(Path("eval") / "results" / _slug(resolve_model(model)))
        try:  # eval/results/<model> holds committed results in this repository: never replaced by default
            check_output_dir(out, kind="eval", overwrite=args.overwrite, what=f"default {WHAT}", reads=[model])
        except OutputError as exc:
            hint = "it is the default folder for this model: name another with --out DIR"
            raise OutputError(f"{exc} ({hint})") from None
    results = run_eval(model, benchmarks, modes, Path(out), batch_size=batch_size, overwrite=args.overwrite,
                       summary=True)
    summary = Path(out) / "summary.md"
    print(f"{'run':<22} {'n':>6} {'accuracy':>9} {'macro-F1':>9} {'wtd-F1':>9} {'unparse':>8} {'items/s':>8}")
    for r in results:
        m = r["metrics"]
        print(f"{result_stem(r['benchmark'], r['scheme'], r['mode']):<22} {r['n']:>6} {m['accuracy']:>9.4f} "
              f"{m['macro_f1']:>9.4f} {m['weighted_f1']:>9.4f} {m['unparseable']:>8} {r['items_per_second']:>8.2f}")
    print(f"results and plots in {out}; summary: {summary}")
    return 0


def _modes(mode: str | None, recipe) -> list[str]:
    if mode == "both":
        return list(RESULT_MODES)
    if mode:
        return [mode]
    return list(recipe.eval.modes) if recipe else ["score"]


def _benchmarks(args, recipe) -> list[EvalBenchmark]:
    if args.benchmark:
        found = [parse_benchmark_arg(b, args.scheme or "3", args.limit) for b in args.benchmark]
    elif recipe is not None and recipe.eval.benchmarks:
        limit = args.limit  # None = each benchmark's own (0 is refused by positive_int, never a default)
        found = [EvalBenchmark(b.name, b.path, args.scheme or b.scheme, limit if limit is not None else b.limit)
                 for b in recipe.eval.benchmarks]
    else:
        scheme = args.scheme or "3"
        found = [EvalBenchmark(name, None, scheme, args.limit)
                 for name, spec in BENCHMARKS.items() if scheme in spec.schemes]
    for b in found:
        get_spec(b.name)
    return found


def _slug(model: str) -> str:
    path = Path(model)
    return path.name if path.exists() else model.replace("/", "--")
