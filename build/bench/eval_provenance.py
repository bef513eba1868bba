"""Give committed eval results the provenance of the tfns_accuracy.py run that built their weights.

    .venv/bin/python build/bench/eval_provenance.py --run direct-lr2e-4-dev eval/results/smollm2-109m-fingpt-direct

``finsent eval`` records where a model came from when it scores a release folder (``provenance``, from the
release's reports: ``finsent.evaluation.model_provenance``). A model built by this folder's tfns_accuracy.py
(``runs/bench-<recipe>-<tag>/merged``) has no release reports, but its run's results file
``build/bench/results/tfns_accuracy-<tag>.json`` holds the same facts: ``git_commit`` (taken when the run
started), ``recipe_contents``, ``model_params``, the ``dev`` score and the ``selection`` (split and metric) it was
chosen by. This writes them as each results JSON's ``provenance``, with ``source`` naming that file, after checking
that the run's weights are the ones scored (its ``reported.model_sha256`` equals the result's ``model_hash``); no
other field of a result changes, and a second run writes the same bytes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "build" / "bench" / "results"


def run_provenance(run: dict, source: str, sha256: str) -> dict:
    """The ``provenance`` of a model from its tfns_accuracy run ``run`` (read from ``source``, of that SHA-256)."""
    from finsent.evaluation.model_provenance import chosen_by

    recipe = run["recipe_contents"]
    dev = run.get("dev")
    selection = run.get("selection") or {}
    rows = {path: part["n"] for path, part in (dev or {}).get("per_source", {}).items()} or None
    chosen = chosen_by(recipe, dev, rows, definition=selection.get("split"))
    if dev and selection.get("metric"):
        chosen["metric"] = selection["metric"]  # the run's own wording of what chose it
    return {
        "source": source,
        "git_commit": run.get("git_commit"),
        "recipe": recipe,
        "model_params": run.get("model_params"),
        "chosen_by": chosen,
        "files": {source: sha256},
        "note": f"added after scoring from {source}, the build/bench/tfns_accuracy.py run that built these weights "
                "(its reported.model_sha256 is this result's model_hash), by build/bench/eval_provenance.py",
    }


def stamp(run_file: Path, folders: list[Path]) -> list[Path]:
    """Add the provenance of ``run_file`` to every results JSON in ``folders``; the paths written."""
    import json

    from finsent.core.provenance import file_sha256
    from finsent.core.reports import read_report, write_report
    from finsent.evaluation.runs import EVAL_NAME

    run_file = Path(run_file).resolve()
    if not run_file.is_file():
        raise SystemExit(f"no results file {run_file}")
    run = json.loads(run_file.read_text(encoding="utf-8"))
    weights = (run.get("reported") or {}).get("model_sha256")
    if not weights:
        raise SystemExit(f"{run_file.name} has no reported.model_sha256: nothing proves which weights it built "
                         "(tfns_accuracy.py --report records it)")
    source = run_file.relative_to(ROOT).as_posix() if run_file.is_relative_to(ROOT) else str(run_file)
    provenance = run_provenance(run, source, file_sha256(run_file))
    paths = [p for folder in folders for p in sorted(Path(folder).glob("*.json")) if EVAL_NAME.match(p.name)]
    if not paths:
        raise SystemExit(f"no eval results (<benchmark>-<scheme>-<mode>.json) in {', '.join(map(str, folders))}")
    results = {path: read_report("eval", path) for path in paths}
    for path, result in results.items():  # every file checked before any is written
        if result["model_hash"] != f"sha256:{weights}":
            raise SystemExit(f"{path}: model_hash {result['model_hash']} is not the weights {run_file.name} built "
                             f"(sha256:{weights}); nothing was written")
    for path, result in results.items():
        write_report("eval", {**result, "provenance": provenance}, path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, metavar="TAG",
                        help="the tfns_accuracy.py run: build/bench/results/tfns_accuracy-TAG.json")
    parser.add_argument("--results", type=Path, default=RESULTS, help="its folder (default: build/bench/results)")
    parser.add_argument("folders", nargs="+", type=Path, help="folders of finsent eval results of that run's model")
    args = parser.parse_args(argv)
    for path in stamp(args.results / f"tfns_accuracy-{args.run}.json", args.folders):
        print(f"provenance of run {args.run} written into {path}")


if __name__ == "__main__":
    main()
