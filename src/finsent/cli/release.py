"""``finsent release``: every stage of one recipe, skipping those that are up to date."""

from __future__ import annotations

from pathlib import Path

import finsent.release as release_module
from finsent.build.distributed import require_single_process
from finsent.cli.hub import format_push
from finsent.core.recipes import load_recipe, parse_overrides
from finsent.release import STAGES, Release


def register(sub) -> None:
    p = sub.add_parser("release", help="run a whole release: prune, finetune, merge, eval, export, card, push, Space",
                       description=release_module.__doc__.split("\n\n")[0])
    p.add_argument("recipe", help="recipe YAML, e.g. build/recipes/smollm2-135m.yaml")
    p.add_argument("--push", action="store_true", help="really push (default: a dry run of the push)")
    p.add_argument("--repo-id", help="Hub model repo to push to (default: recipe publish.repo_id)")
    p.add_argument("--tag", help="release tag, e.g. v1.0.0 (default: recipe publish.tag)")
    p.add_argument("--space-id", help="also deploy the Space on the pushed model (needs --push)")
    p.add_argument("--allow-regression", action="store_true", help="push even if scores fell below the previous tag")
    p.add_argument("--force", action="store_true", help="re-run every stage even if up to date")
    p.add_argument("--from", dest="start", choices=STAGES, help="re-run from this stage on")
    p.add_argument("--only", choices=STAGES, help="run just this stage")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set finetune.max_steps=5 (YAML value)")
    p.add_argument("--overwrite", action="store_true",
                   help="let stages replace folders finsent did not write (its own are replaced without it)")
    p.add_argument("--runs-dir", default="runs", type=Path)
    p.add_argument("--releases-dir", default="releases", type=Path)
    p.set_defaults(func=_release_cmd)


def _release_cmd(args) -> int:
    require_single_process("finsent release")  # under torchrun every stage would run N times on one folder
    recipe = load_recipe(args.recipe, parse_overrides(args.set))
    release = Release(recipe, args.runs_dir, args.releases_dir, overwrite=args.overwrite)
    result = release.run(force=args.force, start=args.start, only=args.only, push=args.push,
                         repo_id=args.repo_id, tag=args.tag, space_id=args.space_id,
                         push_kwargs={"allow_regression": args.allow_regression})
    print()
    if "push" in result:
        print(format_push(result["push"]))
        print()
    print(format_summary(result["summary"], result["seconds"]))
    return 0


def format_summary(summary: dict, seconds: dict) -> str:
    lines = [f"Release folder: {summary['release_dir']}", ""]
    if summary["scores"]:
        lines += ["| run | n | accuracy | macro-F1 | weighted-F1 |", "|---|---:|---:|---:|---:|"]
        for s in summary["scores"]:
            lines.append(f"| {s['run']} | {s['n']} | {_num(s['accuracy'])} | {_num(s['macro_f1'])} | "
                         f"{_num(s['weighted_f1'])} |")
        lines.append("")
    size = summary.get("size") or {}
    if size.get("bytes_on_disk"):
        params = f"{size['params']:,} parameters, " if size.get("params") else ""
        lines.append(f"Size: {params}{size['bytes_on_disk'] / 1e6:.1f} MB of weights")
    for row in (summary.get("speed") or {}).get("rows", []):
        lines.append(f"Speed: {row['config']}: {row['items_per_second']:.1f} items/s")
    for e in summary.get("exports") or []:
        agreement = "not measured" if e["agreement"] is None else f"{100 * e['agreement']:.1f} % same label"
        lines.append(f"Export: {e['path']}: {e['bytes'] / 1e6:.1f} MB, {agreement}")
    if seconds:
        lines.append("Stage wall time: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    lines += ["", f"Serve the Space on it: {summary['serve']}"]
    return "\n".join(lines)


def _num(x) -> str:
    return "-" if x is None else f"{x:.3f}"
