"""What each prune ratio destroys before any recovery: a fine-tuned unpruned model pruned after training.

    .venv/bin/python build/bench/posthoc_pruning.py --run lora-r8-mix7-p0-dev --ratios 0 0.2 0.32 0.4 --methods ppm act

Reads the run's result (``results/tfns_accuracy-<run>.json``: its recipe, hence its dev split) and its merged
model (``runs/bench-<recipe name>-<run>/merged``), prunes a float32 copy at each ratio with each importance
method (``act`` calibrates on the recipe's training rows, ``finsent.build.pruning.calibration_texts``), with no
training afterwards, and scores the TFNS + FPB dev rows with the classifier's own code. ``--vocab-first N``
also trims each pruned copy's vocabulary (``prune.vocab_first``, ``finsent.build.vocab``) and writes
``results/posthoc_pruning-<run>-vocab<N>.json``; ``--vocab-min-count M`` keeps only training tokens seen M times
(``prune.vocab_min_count``, ``-vocab<N>-min<M>.json``). Beside the
pruning-cost curve (prune, then train) this shows how much of each ratio's loss training wins back. Writes
``results/posthoc_pruning-<run>.json`` (git commit, the recipe, data hashes, seed, CPU); an existing result is
replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "bench" / "results"


def run_recipe(run: str):
    """(recipe, its stored contents, merged model folder) of the dev-split run ``run`` of tfns_accuracy.py."""
    import yaml

    from finsent.core.recipes import load_recipe

    contents = json.loads((RESULTS / f"tfns_accuracy-{run}.json").read_text())["recipe_contents"]
    merged = ROOT / "runs" / f"bench-{contents['name']}-{run}" / "merged"
    if not merged.is_dir():
        raise SystemExit(f"{merged} is missing: rebuild the run ({run}) with build/bench/tfns_accuracy.py")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:  # load_recipe validates the stored recipe
        yaml.safe_dump(contents, fh)
        fh.flush()
        return load_recipe(fh.name), contents, merged


def main(argv=None) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from finsent.build.data import training_data
    from finsent.build.devsplit import score_model
    from finsent.build.pruning import calibration_texts, prune_model, save_trimmed_tokenizer, vocab_rows
    from finsent.build.vocab import kept_ids, tokenizer_json, trim_model, trim_tokenizer_json, used_ids
    from finsent.core.outputs import write_text_atomic
    from finsent.core.provenance import cpu_name, file_sha256, git_commit

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="lora-r8-mix7-p0-dev", help="tag of an unpruned dev-split run")
    p.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.2, 0.32, 0.4])
    p.add_argument("--methods", nargs="+", default=["ppm"], help="importance methods (finsent.build.importance)")
    p.add_argument("--vocab-first", type=int, metavar="N", help="also trim the vocabulary (prune.vocab_first)")
    p.add_argument("--vocab-min-count", type=int, default=1, metavar="N",
                   help="with --vocab-first: keep training tokens seen N times or more (prune.vocab_min_count)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    args = p.parse_args(argv)
    suffix = f"-vocab{args.vocab_first}" if args.vocab_first is not None else ""
    if args.vocab_min_count > 1:
        if args.vocab_first is None:
            raise SystemExit("--vocab-min-count counts the tokens a trimmed vocabulary keeps: give --vocab-first too")
        suffix += f"-min{args.vocab_min_count}"
    path = RESULTS / f"posthoc_pruning-{args.run}{suffix}.json"
    if path.exists() and not args.overwrite:
        raise SystemExit(f"{path} exists: give --overwrite to replace it")
    result = json.loads((RESULTS / f"tfns_accuracy-{args.run}.json").read_text())
    if result.get("pruned", True):
        raise SystemExit(f"{args.run} was pruned before training: give an unpruned run (--no-prune)")
    recipe, contents, merged = run_recipe(args.run)
    f = recipe.finetune
    data = training_data(f)
    dev = {path: rows for path, rows in data.dev.items() if "finsent" not in path}  # TFNS + FPB rows only
    tokenizer = AutoTokenizer.from_pretrained(merged)
    base = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    recipe.prune.method = "act"
    texts = calibration_texts(recipe)  # the same training rows for every ratio (read only by method act)
    recipe.prune.vocab_first = args.vocab_first
    vocab = vocab_rows(recipe)  # None without --vocab-first
    scorer, keep = tokenizer, None
    if vocab:  # the kept tokens depend on the rows only: one trimmed tokenizer for every ratio
        keep = kept_ids(tokenizer, used_ids(tokenizer, vocab, args.vocab_min_count), args.vocab_first, base.config)
        with tempfile.TemporaryDirectory() as folder:  # the trimmed tokenizer, as a release would load it
            tokenizer.save_pretrained(folder)
            save_trimmed_tokenizer(Path(folder), trim_tokenizer_json(tokenizer_json(tokenizer), keep), keep)
            scorer = AutoTokenizer.from_pretrained(folder)
    rows = []
    runs = [(0.0, None)] if 0 in args.ratios else []  # the unpruned model once, whatever the methods
    runs += [(ratio, method) for method in args.methods for ratio in args.ratios if ratio > 0]
    for ratio, method in runs:
        model = copy.deepcopy(base)
        if method:
            prune_model(model, method=method, ratio=ratio, progress=False, tokenizer=tokenizer, calibration=texts)
        if keep:
            trim_model(model, keep)
        start = time.perf_counter()
        scored = score_model(model, scorer, dev, batch_size=32)
        rows.append({"ratio": ratio, "method": method, "vocab": len(scorer),
                     "params": sum(t.numel() for t in model.parameters()),
                     "dev_tfns_fpb": scored["accuracy"], "n": scored["n"],
                     "per_source": {k: v["accuracy"] for k, v in scored["per_source"].items()},
                     "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
        del model
    out = {"run": args.run, "model": str(merged.relative_to(ROOT)), "git_commit": git_commit(),
           "recipe_contents": contents, "seed": f.seed, "cpu": cpu_name(), "dtype": "float32",
           "data_sha256": {src.path: file_sha256(src.path) for src in f.data},
           "selection": result.get("selection"), "rows": rows,
           "command": "python build/bench/posthoc_pruning.py --run " + args.run + " --ratios "
                      + " ".join(f"{r:g}" for r in args.ratios) + " --methods " + " ".join(args.methods)
                      + (f" --vocab-first {args.vocab_first}" if vocab else "")
                      + (f" --vocab-min-count {args.vocab_min_count}" if args.vocab_min_count > 1 else "")}
    write_text_atomic(path, json.dumps(out, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
