"""``finsent prune``, ``finsent finetune``, ``finsent merge``: the build stages, one command each."""

from __future__ import annotations

import json
from pathlib import Path

import finsent.build.finetune as finetune_module
import finsent.build.merge as merge_module
from finsent.build.distributed import launch_world
from finsent.build.finetune import WHAT, run_finetune
from finsent.build.merge import DTYPES, run_merge
from finsent.build.pruning import AMOUNT_HELP, calibration_texts, run_prune, vocab_rows
from finsent.core.args import positive_int
from finsent.core.errors import UsageError
from finsent.core.models import locate_model
from finsent.core.outputs import check_name, check_output_dir
from finsent.core.recipe_values import METHODS
from finsent.core.recipes import ModelSection, PruneSection, Recipe, load_recipe, parse_overrides


def register_pruning(sub) -> None:
    import argparse

    p = sub.add_parser(
        "prune", help="structured GLU pruning of every MLP (the first build stage)",
        description="Remove the least important GLU neurons of every decoder layer's MLP and save a plain "
                    "model folder (safetensors + tokenizer + pruning.json) that from_pretrained loads.",
        epilog=AMOUNT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", help="recipe YAML; its model.base and prune section are the defaults")
    p.add_argument("--model", help="base model: folder, Hub id or 'smollm2' (default: the recipe's, else smollm2)")
    p.add_argument("--revision", help="Hub revision of the base model (default: the recipe's)")
    p.add_argument("--method", type=str.lower, choices=[*METHODS, "maw"],
                   help="neuron importance: ppm (= maw, peak-to-peak range, the published model's), vow (variance "
                        "of weights), l2 (L2 norm), pon (product of L1 norms), act (activations on calibration "
                        "rows of the recipe's training data; needs --recipe) (default: recipe, else ppm)")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--ratio", type=float, help="fraction removed, 0 <= X < 1 (see below)")
    amount.add_argument("--expansion", type=float, help="target intermediate/hidden x 100 (see below)")
    p.add_argument("--round-to", type=int, help="kept size rounded down to a multiple of N (default 1)")
    p.add_argument("--vocab-first", type=int, metavar="N",
                   help="also trim the vocabulary to the first N token ids plus every token of the recipe's "
                        "training data (needs --recipe; default: the recipe's prune.vocab_first)")
    p.add_argument("--vocab-min-count", type=int, metavar="N",
                   help="with --vocab-first: keep a training token only if it occurs N times or more "
                        "(default: the recipe's prune.vocab_min_count, 1)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="dtype of the saved weights (default auto: the checkpoint's own)")
    p.add_argument("--out", help="output folder (default with a recipe: runs/<recipe-name>/pruned); a folder "
                                  "finsent did not write is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out folder even if finsent did not write it (or it holds committed "
                        "files)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_prune_command)


def _prune_command(args) -> int:
    overrides = {}
    if args.method:
        overrides["prune.method"] = args.method
    if args.ratio is not None:
        overrides.update({"prune.ratio": args.ratio, "prune.expansion": None})
    if args.expansion is not None:
        overrides.update({"prune.expansion": args.expansion, "prune.ratio": None})
    if args.round_to is not None:
        overrides["prune.round_to"] = args.round_to
    if args.vocab_first is not None:
        if not args.recipe:
            raise UsageError("--vocab-first keeps the tokens of a recipe's training data: give --recipe too")
        overrides["prune.vocab_first"] = args.vocab_first
    if args.vocab_min_count is not None:
        if not args.recipe:
            raise UsageError("--vocab-min-count counts the tokens of a recipe's training data: give --recipe too")
        overrides["prune.vocab_min_count"] = args.vocab_min_count
    calibration = vocab = None
    if args.recipe:
        recipe = load_recipe(args.recipe, overrides)
        section, model, name = recipe.prune, recipe.model, recipe.name
        calibration, vocab = calibration_texts(recipe), vocab_rows(recipe)
    else:
        section, model, name = PruneSection(), ModelSection(), None
        for dotted, value in overrides.items():
            setattr(section, dotted.split(".", 1)[1], value)
    if args.out is None and name is None:
        raise UsageError("--out DIR is required without --recipe")
    out = args.out or f"runs/{check_name(name, 'recipe name')}/pruned"
    base = model.base if args.model is None else args.model  # --model '' is refused by models.resolve_model
    path = run_prune(section, base, out, revision=args.revision or model.revision,
                     dtype=args.dtype, progress=not args.no_progress, overwrite=args.overwrite,
                     calibration=calibration, vocab=vocab)
    report = json.loads((path / "pruning.json").read_text())
    print(json.dumps({k: report[k] for k in ("method", "intermediate_before", "intermediate_after",
                                              "expansion_before", "expansion_after", "vocab", "params_before",
                                              "params_after", "bytes_on_disk", "seconds_prune") if k in report}))
    print(f"saved {path}")
    return 0


def register_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="train a LoRA adapter (recipe's finetune section)",
                       description=finetune_module.__doc__.split("\n\n")[0],
                       epilog="On several devices: torchrun --nproc_per_node N -m finsent.cli finetune ... "
                              "(or accelerate launch -m finsent.cli finetune ...): data-parallel, one optimizer "
                              "step = batch_size x grad_accum x N rows; rank 0 writes --out.")
    p.add_argument("--recipe", required=True, help="recipe YAML (build/recipes/...)")
    p.add_argument("--base", help="base model folder (default: the recipe's model.base, e.g. the embedded smollm2)")
    p.add_argument("--out", help="adapter folder to write (default: runs/<recipe name>/adapter); a folder "
                                  "finsent did not write is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if finsent did not write it (or it holds committed files)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint of an interrupted run (.OUT.checkpoints) or of a "
                        "finished one (OUT/checkpoints)")
    p.add_argument("--max-steps", type=positive_int,
                   help="stop after N optimizer steps (overrides epochs and max_steps)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed data rows instead of stopping")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set finetune.grad_accum=2 to keep the global batch on 8 "
                        "devices, or --set 'finetune.seeds=[1, 2, 3]' --set finetune.soup=greedy for a model soup "
                        "(members in seeds/ beside --out; one process) (YAML value)")
    p.set_defaults(func=_finetune)


def _finetune(args) -> int:
    overrides = parse_overrides(args.set)
    if args.skip_bad_rows:
        overrides["finetune.skip_bad_rows"] = True
    recipe = load_recipe(args.recipe, overrides)
    out = Path(args.out) if args.out else Path("runs") / check_name(recipe.name, "recipe name") / "adapter"
    check_output_dir(out, kind="finetune", overwrite=args.overwrite, what=WHAT,  # before the base is looked for
                     reads=[args.base])
    base = Path(args.base) if args.base else Path(locate_model(recipe.model.base))
    adapter = run_finetune(recipe, base, out, resume=args.resume, max_steps=args.max_steps, overwrite=args.overwrite)
    if launch_world()[0] != 0:
        return 0  # rank 0 reports
    report = json.loads((adapter / "training.json").read_text())
    print(f"adapter: {adapter}  steps {report['steps']}  train loss {report['train_loss']}  "
          f"{report['tokens_per_second']} tokens/s  {report['seconds']} s")
    soup = report.get("soup")
    if soup:  # finetune.seeds: the members (in seeds/ beside the output) and what the average kept
        members = ", ".join(f"{m['seed']}: {(m['dev'] or {}).get('accuracy')}" for m in soup["members"])
        print(f"{soup['method']} soup of seeds {soup['chosen']}: dev accuracy {soup['dev_accuracy']}  "
              f"(members' dev accuracy {members})")
    return 0


def register_merge(sub) -> None:
    p = sub.add_parser("merge", help="fold a LoRA adapter into its base and save it (checked)",
                       description=merge_module.__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the base model folder the adapter was trained on")
    p.add_argument("--adapter", required=True, help="the LoRA adapter folder (finsent finetune's output)")
    p.add_argument("--out", required=True,
                   help="folder to write the merged model as (replaced whole; one finsent did not write is refused "
                        "unless --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if finsent did not write it (or it holds committed files)")
    p.add_argument("--recipe", help="recipe YAML for merge.dtype / merge.tolerance (default: their defaults)")
    p.add_argument("--dtype", choices=DTYPES, help="dtype of the saved weights (default: the recipe's, float16)")
    p.add_argument("--tolerance", type=float,
                   help="max |log-prob difference| on the top-10 tokens allowed (default: the recipe's)")
    p.set_defaults(func=_merge)


def _merge(args) -> int:
    recipe = load_recipe(args.recipe) if args.recipe else Recipe(name="merge")
    if args.tolerance is not None:
        recipe.merge.tolerance = args.tolerance
    out = run_merge(recipe, Path(args.base), Path(args.adapter), Path(args.out), dtype=args.dtype,
                    overwrite=args.overwrite)
    report = json.loads((Path(args.adapter) / "merge.json").read_text())
    print(f"merged model: {out}  ({report['dtype']}, max |log-prob diff| {report['max_abs_logprob_diff_top10']}, "
          f"{report['bytes_on_disk']} bytes)")
    return 0


def register(sub) -> None:
    register_pruning(sub)
    register_finetune(sub)
    register_merge(sub)
