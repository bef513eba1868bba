"""Publish a release folder to the Hugging Face Hub as ONE commit plus a tag, behind a release gate.

    finsent push releases/<recipe-name> --repo-id oopere/Llama-FinSent-S --tag v1.0.0 [--dry-run]

Steps (``push_release``): check the folder and its eval results; find a token (``HF_TOKEN`` or the login
file, through huggingface_hub's own lookup) and check it with ``whoami`` before anything is uploaded;
``create_repo(exist_ok=True)``; read the branch head and the tags; the gate compares every headline
weighted F1 with the previous tag's (read from the repo) and refuses a drop larger than
``publish.max_regression`` unless ``allow_regression``; then one ``create_commit`` of every file (and
the deletion of files an older release left) with ``parent_commit`` = the head read before (a
concurrent change makes the commit fail instead of being overwritten) and ``create_tag`` on it.
``create_pr`` opens a pull request instead, untagged. An interrupted upload leaves no commit and no
tag; running the same command again completes it.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .errors import FinsentError

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model.safetensors", "README.md")
EVAL_NAME = re.compile(r"^(?P<benchmark>[a-z0-9_]+)-(?P<scheme>[37])-(?P<mode>score|generate)\.json$")
TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
DEFAULT_MAX_REGRESSION = 0.01
KEEP_REMOTE = {".gitattributes"}  # files of the repo that a release never replaces or removes


class PublishError(FinsentError, RuntimeError):
    """A release that must not (or cannot) be pushed; the message says why and what to do."""


# --- the release folder --------------------------------------------------------------------------


def release_files(release_dir: Path) -> list[Path]:
    """Every file that is published, sorted; hidden files and folders (.cache, .git...) are not."""
    return sorted(p for p in release_dir.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(release_dir).parts))


def headline_scores(results: dict[str, dict]) -> dict[str, float]:
    """``{"tfns-3-score": weighted_f1, ...}`` from eval result JSONs keyed by file name."""
    out = {}
    for name, result in results.items():
        try:
            out[name.removesuffix(".json")] = float(result["metrics"]["weighted_f1"])
        except (KeyError, TypeError, ValueError):
            raise PublishError(f"eval/{name}: no metrics.weighted_f1 in the result") from None
    return out


def read_eval_results(release_dir: Path) -> dict[str, dict]:
    """The eval results JSONs of a release folder; none at all is an error (the gate needs them)."""
    eval_dir = release_dir / "eval"
    found = {p.name: p for p in sorted(eval_dir.glob("*.json")) if EVAL_NAME.match(p.name)} if eval_dir.is_dir() else {}
    if not found:
        raise PublishError(f"{release_dir}: no eval results (eval/<benchmark>-<scheme>-<mode>.json); "
                           "run `finsent eval` before publishing")
    results = {}
    for name, path in found.items():
        try:
            results[name] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PublishError(f"{path}: not valid JSON ({exc})") from None
    return results


def check_release(release_dir: Path) -> dict[str, float]:
    """Refuse a folder that lacks what a release must hold; return its headline scores."""
    if not release_dir.is_dir():
        raise PublishError(f"release folder {release_dir} does not exist")
    missing = [f for f in REQUIRED_FILES if not (release_dir / f).is_file()]
    if missing:
        raise PublishError(f"{release_dir} is not a complete release: missing {', '.join(missing)}")
    return headline_scores(read_eval_results(release_dir))


def release_threshold(release_dir: Path) -> float:
    """``publish.max_regression`` of the recipe stored with the release (reports/recipe.yaml)."""
    path = release_dir / "reports" / "recipe.yaml"
    if not path.is_file():
        return DEFAULT_MAX_REGRESSION
    from .recipes import load_recipe

    return load_recipe(path).publish.max_regression


def compare_scores(new: dict[str, float], old: dict[str, float], max_regression: float) -> list[str]:
    """The regressions: results present in both whose weighted F1 fell by more than ``max_regression``."""
    return [f"{key}: weighted F1 {old[key]:.4f} -> {new[key]:.4f} ({new[key] - old[key]:+.4f})"
            for key in sorted(set(new) & set(old)) if old[key] - new[key] > max_regression]


def tag_key(tag: str) -> tuple[int, int, int]:
    m = TAG.match(tag)
    if not m:
        raise PublishError(f"tag {tag!r} is not a release version like v1.2.3")
    return tuple(int(x) for x in m.groups())


# --- the push ------------------------------------------------------------------------------------


def push_release(release_dir, repo_id: str, tag: str, *, dry_run: bool = False, create_pr: bool = False,
                 private: bool = False, allow_regression: bool = False, token: str | None = None,
                 endpoint: str | None = None, max_regression: float | None = None) -> dict:
    """Publish ``release_dir`` as one commit tagged ``tag``; see the module docstring. Returns a summary dict.

    ``max_regression`` defaults to the release's recipe (``publish.max_regression``).
    """
    release_dir = Path(release_dir)
    tag_key(tag)
    scores = check_release(release_dir)
    files = release_files(release_dir)
    plan = [(p.relative_to(release_dir).as_posix(), p.stat().st_size) for p in files]
    if not dry_run and f'"{repo_id}"' not in (release_dir / "README.md").read_text(errors="replace"):
        logger.warning("README.md does not name %s in its usage code: render the card with "
                       "`finsent card %s --repo-id %s` first", repo_id, release_dir, repo_id)
    summary = {"repo_id": repo_id, "tag": None if create_pr else tag, "files": plan,
               "bytes": sum(size for _, size in plan), "scores": scores, "dry_run": dry_run}
    if dry_run:  # nothing leaves the machine: no token lookup, no request
        summary.update(commit=None, url=None, pr_url=None, previous_tag=None, regressions=[], deleted=[])
        return summary

    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = token or get_token()
    if not token:
        raise PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (nothing was uploaded)")
    api = HfApi(endpoint=endpoint, token=token)
    try:
        user = api.whoami()["name"]
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise PublishError(f"the Hub at {api.endpoint} rejected the token (HTTP {status}); "
                           "nothing was uploaded") from None
    except Exception as exc:
        if not _is_transport_error(exc):
            raise
        raise PublishError(f"cannot reach the Hub at {api.endpoint} ({_short(exc)}); nothing was uploaded") from None
    logger.info("publishing %s to %s as %s", release_dir, repo_id, user)

    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        refs = api.list_repo_refs(repo_id)
        head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
        # The tagged commit must hold exactly the release: files an older release left behind go.
        stale = sorted(set(api.list_repo_files(repo_id, revision=head)) - {rel for rel, _ in plan} - KEEP_REMOTE
                       ) if head else []
    except HfHubHTTPError as exc:
        raise PublishError(f"cannot create or read {repo_id}: {_short(exc)}") from None
    tags = {t.name: t.target_commit for t in refs.tags}
    if tag in tags and not create_pr:
        raise PublishError(f"tag {tag} already exists on {repo_id} (commit {tags[tag][:12]}); "
                           "choose a new version")

    previous = max((t for t in tags if TAG.match(t) and tag_key(t) < tag_key(tag)), key=tag_key, default=None)
    regressions = []
    if previous:
        threshold = max_regression if max_regression is not None else release_threshold(release_dir)
        old = headline_scores(_remote_eval_results(api, repo_id, tags[previous]))
        regressions = compare_scores(scores, old, threshold)
        if not set(scores) & set(old):
            logger.warning("the gate found no result of %s to compare with (%s has %s)", tag, previous,
                           ", ".join(sorted(old)) or "no eval results")
        if regressions and not allow_regression:
            raise PublishError(f"release gate: {len(regressions)} result(s) fell more than {threshold} below "
                               f"{previous}:\n  " + "\n  ".join(regressions) +
                               "\nfix the model, or pass --allow-regression to publish anyway")
        for line in regressions:
            logger.warning("publishing despite a regression against %s: %s", previous, line)

    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(release_dir / rel)) for rel, _ in plan]
    operations += [CommitOperationDelete(path_in_repo=rel) for rel in stale]
    message = f"Release {tag}" if not create_pr else f"Release candidate {tag}"
    try:
        commit = api.create_commit(repo_id, operations, commit_message=message, parent_commit=head,
                                   create_pr=create_pr,
                                   commit_description=f"{len(plan)} files from {release_dir.name}")
        if not create_pr:
            api.create_tag(repo_id, tag=tag, revision=commit.oid, tag_message=message)
    except HfHubHTTPError as exc:
        if exc.response is not None and exc.response.status_code == 412:
            raise PublishError(f"{repo_id} changed while publishing (main is no longer {str(head)[:12]}); "
                               "nothing was committed: run the push again") from None
        raise PublishError(f"publishing {repo_id} failed: {_short(exc)}") from None
    except Exception as exc:
        if not _is_transport_error(exc):
            raise
        raise PublishError(f"the connection to {api.endpoint} failed during the upload ({_short(exc)}); "
                           f"{tag} was not created: run the same push again (a commit that did land is "
                           "recognised as unchanged and only tagged)") from None
    summary.update(commit=commit.oid, url=commit.commit_url, pr_url=commit.pr_url, previous_tag=previous,
                   regressions=regressions, deleted=stale)
    return summary


def _remote_eval_results(api, repo_id: str, revision: str) -> dict[str, dict]:
    """The eval results JSONs of a published commit, read from the repo."""
    import tempfile

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        names = [f.path for f in api.list_repo_tree(repo_id, path_in_repo="eval", revision=revision)]
    except RemoteEntryNotFoundError:
        names = []
    results = {}
    # A throw-away cache: the gate must read what the repo holds now, never a stale local copy.
    with tempfile.TemporaryDirectory(prefix="finsent-gate-") as cache:
        for path in names:
            name = path.rsplit("/", 1)[-1]
            if EVAL_NAME.match(name):
                local = hf_hub_download(repo_id, path, revision=revision, endpoint=api.endpoint,
                                        token=api.token, cache_dir=cache)
                results[name] = json.loads(Path(local).read_text())
    return results


def _is_transport_error(exc: BaseException | None) -> bool:
    """A network failure (dropped connection, timeout), possibly wrapped by the client."""
    import httpx2  # huggingface_hub's HTTP client

    while exc is not None:
        if isinstance(exc, (httpx2.TransportError, ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --- command line --------------------------------------------------------------------------------


def register(sub) -> None:
    p = sub.add_parser("push", help="publish a release folder: one commit + a tag on the Hub",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("release_dir", type=Path, help="the release folder (releases/<recipe-name>)")
    p.add_argument("--repo-id", help="owner/name on the Hub (default: the recipe's publish.repo_id)")
    p.add_argument("--tag", help="version tag vX.Y.Z (default: the recipe's publish.tag)")
    p.add_argument("--dry-run", action="store_true", help="print the operations and sizes; send nothing")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead (no tag)")
    p.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    p.add_argument("--allow-regression", action="store_true", help="publish even if the gate finds a regression")
    p.add_argument("--endpoint", help="Hub URL (default: $HF_ENDPOINT or huggingface.co)")
    p.set_defaults(func=_push)


def _push(args) -> int:
    import sys

    repo_id, tag = args.repo_id, args.tag
    if not (repo_id and tag) and (args.release_dir / "reports" / "recipe.yaml").is_file():
        from .recipes import load_recipe

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
        return 2
    print(format_push(out))
    return 0


def format_push(out: dict) -> str:
    """The push (or dry run) as lines a person reads: files, sizes, scores, and what happened."""
    repo_id, tag = out["repo_id"], out["tag"] or "nothing (a pull request is tagged after merging)"
    width = max(len(rel) for rel, _ in out["files"])
    lines = [f"  add {rel:<{width}}  {size:>14,d} B" for rel, size in out["files"]]
    lines += [f"  delete {rel} (left by an older release)" for rel in out["deleted"]]
    lines.append(f"  {len(out['files'])} files, {out['bytes']:,d} bytes; headline weighted F1: "
                 + ", ".join(f"{k} {v:.4f}" for k, v in out["scores"].items()))
    if out["dry_run"]:
        lines.append(f"dry run: nothing sent (would commit to {repo_id} and tag {tag}; the gate against the "
                     "previous tag runs only on a real push)")
    elif out["pr_url"]:
        lines.append(f"opened pull request {out['pr_url']} (commit {out['commit']}); no tag: tag after merging")
    else:
        lines.append(f"published {repo_id} {tag} = commit {out['commit']}")
    return "\n".join(lines)
