"""``finsent card``, ``finsent push``, ``finsent space``: the model card, the tagged push, the Space."""

from __future__ import annotations

from pathlib import Path

import finsent.hub.card as card_module
import finsent.hub.publish as publish_module
from finsent.core.classify import FinSentClassifier
from finsent.core.models import PUBLISHED_MODEL
from finsent.core.recipes import load_recipe
from finsent.hub.card import TEMPLATE, CardError, render_card
from finsent.hub.gate import PublishError
from finsent.hub.publish import push_release
from finsent.hub.space import SpaceDeployError, busy_port, check_address, deploy_space, load_app


def register_card(sub) -> None:
    p = sub.add_parser("card", help="render the model card (README.md) of a release folder",
                       description=card_module.__doc__.split("\n\n")[0])
    p.add_argument("release_dir", type=Path, help="the release folder (releases/<recipe-name>)")
    p.add_argument("--recipe", type=Path, help="recipe YAML (default: RELEASE_DIR/reports/recipe.yaml)")
    p.add_argument("--repo-id", help="Hub id the usage code loads (default: the recipe's publish.repo_id)")
    p.add_argument("--template", type=Path, help=f"card template (default: finsent's own {TEMPLATE.name})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a README.md that was edited after finsent wrote it (default: refuse)")
    p.set_defaults(func=_card)


def _card(args) -> int:
    import sys


    recipe = load_recipe(args.recipe or args.release_dir / "reports" / "recipe.yaml")
    try:
        render_card(recipe, args.release_dir, args.template, repo_id=args.repo_id, overwrite=args.overwrite)
    except CardError as exc:
        print(f"finsent card: error: {exc}", file=sys.stderr)
        return 2
    print(args.release_dir / "README.md")
    return 0


def register_publish(sub) -> None:
    p = sub.add_parser("push", help="publish a release folder: one commit + a tag on the Hub",
                       description=publish_module.__doc__.split("\n\n")[0])
    p.add_argument("release_dir", type=Path, help="the release folder (releases/<recipe-name>)")
    p.add_argument("--repo-id", help="owner/name on the Hub (default: the recipe's publish.repo_id)")
    p.add_argument("--tag", help="version tag vX.Y.Z (default: the recipe's publish.tag)")
    p.add_argument("--dry-run", action="store_true",
                   help="read the repo, print the files to add and delete and the gate's verdict; send nothing")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead (no tag)")
    p.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    p.add_argument("--allow-regression", action="store_true", help="publish even if the gate finds a regression")
    p.add_argument("--endpoint", help="Hub URL (default: $HF_ENDPOINT or huggingface.co)")
    p.set_defaults(func=_push)


def _push(args) -> int:
    import sys

    repo_id, tag = args.repo_id, args.tag
    if not (repo_id and tag) and (args.release_dir / "reports" / "recipe.yaml").is_file():
        publish = load_recipe(args.release_dir / "reports" / "recipe.yaml").publish
        repo_id, tag = repo_id or publish.repo_id, tag or publish.tag
    if not (repo_id and tag):
        print("finsent push: error: give --repo-id and --tag (or set publish.repo_id/tag in the recipe)",
              file=sys.stderr)
        return 2
    try:
        out = push_release(args.release_dir, repo_id, tag, dry_run=args.dry_run, create_pr=args.create_pr,
                           private=args.private, allow_regression=args.allow_regression, endpoint=args.endpoint)
    except PublishError as exc:
        print(f"finsent push: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_push(out))
    return 1 if out["refused"] else 0


def format_push(out: dict) -> str:
    """The push (or dry run) as lines a person reads: files, sizes, deletions, scores, and what happened."""
    repo_id, tag = out["repo_id"], out["tag"] or "nothing (a pull request is tagged after merging)"
    width = max(len(rel) for rel, _ in out["files"])
    lines = [f"  add {rel:<{width}}  {size:>14,d} B" for rel, size in out["files"]]
    lines += [f"  delete {rel} (not in this release)" for rel in out["deleted"]]
    lines.append(f"  {len(out['files'])} files, {out['bytes']:,d} bytes; headline weighted F1: "
                 + ", ".join(f"{k} {v:.4f}" for k, v in out["scores"].items()))
    gate = ""
    if out["previous_tag"]:
        gate = (f"; gate against {out['previous_tag']}: " +
                (f"{len(out['regressions'])} regression(s) allowed" if out["regressions"] else "no regression"))
    if out["dry_run"]:
        if out["remote"]:
            lines.append(f"  note: {out['remote']}")
        what = {"tag": f"only tag main's commit {str(out['commit'])[:12]} as {tag} (it already holds this release)",
                "none": f"nothing: {tag} already holds this release",
                "pr": f"open a pull request on {repo_id}"}.get(out["action"], f"commit to {repo_id} and tag {tag}")
        if out["refused"]:
            lines.append(f"dry run: nothing sent; the push would be REFUSED: {out['refused']}")
        else:
            lines.append(f"dry run: nothing sent (would {what}{gate})")
    elif out["action"] == "none":
        lines.append(f"{repo_id} {tag} is already published (commit {out['commit']}): nothing sent")
    elif out["pr_url"]:
        lines.append(f"opened pull request {out['pr_url']} (commit {out['commit']}); no tag: tag after merging")
    elif out["action"] == "tag":
        lines.append(f"published {repo_id} {tag} = commit {out['commit']} (main already held this release: "
                     "only the tag was added)")
    else:
        lines.append(f"published {repo_id} {tag} = commit {out['commit']}{gate}")
    return "\n".join(lines)


def register_space(sub) -> None:
    p = sub.add_parser("space", help="serve the Gradio demo locally or deploy it as a Hugging Face Space",
                       description="The Gradio Space in space/: serve it on a local model, or deploy it.")
    actions = p.add_subparsers(dest="space_command", metavar="ACTION", required=True)
    d = actions.add_parser("deploy", help="assemble the Space and upload it in one commit")
    d.add_argument("--repo-id", required=True, help="the Space to create or update, owner/name")
    d.add_argument("--model", default=PUBLISHED_MODEL, help=f"Hub model id the Space loads (default {PUBLISHED_MODEL})")
    d.add_argument("--space-dir", help="Space source folder (default: the repository's space/)")
    d.add_argument("--private", action="store_true", help="create the Space private")
    d.add_argument("--dry-run", action="store_true", help="assemble and list the files; upload nothing")
    d.set_defaults(func=_deploy)
    s = actions.add_parser("serve", help="run the demo locally (blocks; Ctrl-C stops it)")
    s.add_argument("--model", help="folder, Hub id or 'smollm2' (default: $FINSENT_MODEL, newest release, "
                                   "published model)")
    s.add_argument("--port", type=port_number, default=7860)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 to share on a network)")
    s.add_argument("--space-dir", help="Space source folder (default: the repository's space/)")
    s.set_defaults(func=_serve)


def _deploy(args) -> int:
    import sys

    from huggingface_hub.errors import HfHubHTTPError

    try:
        result = deploy_space(args.repo_id, args.model, source=args.space_dir, private=args.private,
                              dry_run=args.dry_run)
    except (SpaceDeployError, HfHubHTTPError) as exc:
        print(f"finsent space deploy: error: {exc}", file=sys.stderr)
        return 2
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"Space {result.repo_id} (model {result.model}): {verb} {len(result.files)} files")
    for name in result.files:
        print(f"  {name}")
    for name in result.deleted:
        print(f"  deleted {name}")
    if result.commit:
        print(f"commit {result.commit}  {result.url}")
    return 0


def port_number(value: str) -> int:
    import argparse

    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {value!r}")
    return port


def _serve(args) -> int:
    check_address(args.host, args.port)
    app = load_app(args.space_dir)
    classifier = FinSentClassifier.from_pretrained(args.model)
    print(f"serving {classifier.source} on http://{args.host}:{args.port}", flush=True)
    try:
        app.launch(app.build_demo(classifier), server_name=args.host, server_port=args.port)
    except OSError as exc:
        # Gradio's only OSError at launch: no free port among those it tried ("Cannot find empty port").
        if "Cannot find empty port" not in str(exc):
            raise
        raise busy_port(args.host, args.port) from None
    return 0


def register(sub) -> None:
    register_card(sub)
    register_publish(sub)
    register_space(sub)
