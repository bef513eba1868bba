"""Free accuracy at scoring time? Two post-hoc levers measured on a trained run's dev rows, no training.

    .venv/bin/python build/bench/posthoc_scoring.py --run direct-lr2e-4-dev

Reads the run's result (``results/tfns_accuracy-<run>.json``: its recipe, hence its dev split) and its merged
model (``runs/bench-<recipe name>-<run>/merged``, float32), and takes the 3-class label log-probabilities of every
TFNS + FPB dev row under both instructions (tweet and news; ``FinSentClassifier.label_logprobs``). It reports:

- **own**: each row under its own instruction, as the classifier and ``score_dev`` prompt it;
- **two instructions**: the sum of the two instructions' normalised log-probabilities (a prompt ensemble);
- **class offsets**: a log-offset per class (negative and positive, neutral fixed at 0; grid -2..2 by 0.1) fitted
  on one half of the rows and applied to the other, both ways, over 20 seeded random halvings: the gain an offset
  fitted on dev would carry to unseen rows (fitting and scoring on the same rows would flatter it).

Writes ``results/posthoc_scoring-<run>.json`` (git commit, the recipe, data hashes, seed, CPU); an existing result
is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import json
import time

GRID = [round(-2 + 0.1 * i, 1) for i in range(41)]
HALVINGS = 20


def offsets_gain(scores, gold, seed: int) -> dict:
    """Mean and sd over ``HALVINGS`` random halvings of (held-out accuracy with fitted offsets - without)."""
    import numpy as np

    def accuracy(rows, shift):
        return float(np.mean((scores[rows] + shift).argmax(1) == gold[rows]))

    rng = np.random.default_rng(seed)
    plain = float(np.mean(scores.argmax(1) == gold))
    gains = []
    for _ in range(HALVINGS):
        order = rng.permutation(len(gold))
        halves = (order[: len(gold) // 2], order[len(gold) // 2:])
        right = 0.0
        for fit, held in (halves, halves[::-1]):
            # the best fit; ties go to the smallest offsets (no shift unless it helps)
            _, _, neg, pos = max((accuracy(fit, np.array([a, 0.0, b])), -abs(a) - abs(b), a, b)
                                 for a in GRID for b in GRID)
            right += accuracy(held, np.array([neg, 0.0, pos])) * len(held)
        gains.append(right / len(gold) - plain)
    return {"mean": round(float(np.mean(gains)), 4), "sd": round(float(np.std(gains, ddof=1)), 4),
            "halvings": HALVINGS}


def main(argv=None) -> None:
    import numpy as np
    import torch
    from posthoc_pruning import RESULTS, ROOT, run_recipe  # this folder: the script's own sys.path entry

    from finsent.build.data import training_data
    from finsent.core.classify import FinSentClassifier
    from finsent.core.labels import SCHEMES
    from finsent.core.outputs import write_text_atomic
    from finsent.core.provenance import cpu_name, file_sha256, git_commit

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", default="direct-lr2e-4-dev", help="tag of a dev-split run with a merged model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    args = p.parse_args(argv)
    path = RESULTS / f"posthoc_scoring-{args.run}.json"
    if path.exists() and not args.overwrite:
        raise SystemExit(f"{path} exists: give --overwrite to replace it")
    recipe, contents, merged = run_recipe(args.run)
    f = recipe.finetune
    dev = {src: rows for src, rows in training_data(f).dev.items() if "finsent" not in src}  # TFNS + FPB rows only
    labels = list(SCHEMES["3"])
    classifier = FinSentClassifier.from_pretrained(str(merged), dtype=torch.float32)
    start = time.perf_counter()
    own, ensemble, gold, per_source = [], [], [], {}
    for src, rows in dev.items():
        texts = [r.text for r in rows]
        # [n, 3] log-probabilities of each label's answer, normalised over the three labels
        by_kind = {kind: torch.log_softmax(classifier.label_logprobs(texts, "3", kind=kind), -1).numpy()
                   for kind in ("tweet", "news")}
        mine = np.stack([by_kind[r.kind][i] for i, r in enumerate(rows)])
        both = by_kind["tweet"] + by_kind["news"]
        truth = np.array([labels.index(r.answer) for r in rows])
        per_source[src] = {"n": len(rows), "own": round(float(np.mean(mine.argmax(1) == truth)), 4),
                           "two_instructions": round(float(np.mean(both.argmax(1) == truth)), 4)}
        own.append(mine)
        ensemble.append(both)
        gold.append(truth)
    own, ensemble, gold = np.concatenate(own), np.concatenate(ensemble), np.concatenate(gold)
    out = {"run": args.run, "model": str(merged.relative_to(ROOT)), "git_commit": git_commit(),
           "recipe_contents": contents, "seed": f.seed, "cpu": cpu_name(), "dtype": "float32",
           "data_sha256": {src.path: file_sha256(src.path) for src in f.data},
           "n": int(len(gold)), "own": round(float(np.mean(own.argmax(1) == gold)), 4),
           "two_instructions": round(float(np.mean(ensemble.argmax(1) == gold)), 4),
           "class_offsets_gain": offsets_gain(own, gold, f.seed), "per_source": per_source,
           "seconds": round(time.perf_counter() - start, 1),
           "command": f"python build/bench/posthoc_scoring.py --run {args.run}"}
    print(json.dumps({k: out[k] for k in ("run", "n", "own", "two_instructions", "class_offsets_gain")}))
    write_text_atomic(path, json.dumps(out, indent=2) + "\n")
    print(f"written {path}")


if __name__ == "__main__":
    main()
