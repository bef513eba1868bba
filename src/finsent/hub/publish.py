"""Publish a release folder to the Hugging Face Hub as ONE commit plus a tag, behind a release gate.

    finsent push releases/<recipe-name> --repo-id oopere/Llama-FinSent-S --tag v1.0.0 [--dry-run]

Steps (``push_release``): check the folder (required files, readable safetensors headers, finite eval
scores, a card whose usage code loads ``repo_id``); find a token (``HF_TOKEN`` or the login file,
through huggingface_hub's own lookup) and check it with ``whoami`` before anything is uploaded;
``create_repo(exist_ok=True)``; read main's head, its files and the tags; the gate compares every
headline weighted F1 with the previous tag's (read from the repo) and refuses a drop larger than
``publish.max_regression`` (or any non-finite score) unless ``allow_regression``; then one
``create_commit`` of every file (and the deletion of files an older release left) with
``parent_commit`` = the head read before (a concurrent change makes the commit fail instead of being
overwritten) and ``create_tag`` on it. ``create_pr`` opens a pull request instead, untagged.

What is published: every file of the folder except hidden ones and ``EXCLUDE`` (the per-row
``*.predictions.jsonl`` of ``finsent eval`` hold the benchmarks' gold labels: they stay local, and a
copy an older push left on the Hub is deleted like any file the release no longer has). The GGUF files
and ONNX graph of the export stage go in the same commit, checked first against their manifest
(``export_release.check_exports``: those the recipe asks for, made from the folder's weights, none unlisted).

Failure at each step, and why a re-run is the repair (the chosen design): the Hub offers no way to
move main onto a prepared commit (``create_branch`` cannot overwrite a branch, and there is no
fast-forward or merge of a branch), so a release cannot reach main and its tag in one request.
Instead the push is idempotent and a re-run finishes whatever an earlier one left:

- an upload or ``create_commit`` that fails leaves main as it was (the commit call is atomic on the
  Hub); files already uploaded are not sent again by the re-run;
- a commit that landed although the client saw an error, and a commit whose ``create_tag`` failed
  (tried ``TAG_ATTEMPTS`` times), leave main holding the release untagged: the error says so, with
  the commit id. The re-run sees that main's files are exactly the release (sizes, then git/LFS
  hashes), makes no commit and only creates the tag on that commit;
- a re-run after a complete push finds the tag on a commit holding exactly the release and does
  nothing; the same tag on different files is refused.

``dry_run`` sends nothing but reads the repo (refs, main's files, the previous tag's results): it
lists the files it would add and delete, what it would do (commit and tag, tag only, nothing) and
whether the gate would refuse. ``read_remote=False`` (or ``HF_HUB_OFFLINE``) skips those reads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from finsent.core.errors import FinsentError, UsageError
from finsent.core.models import safetensors_header as read_header
from finsent.core.outputs import release_files
from finsent.core.recipes import load_recipe
from finsent.evaluation.metrics import metric_problems
from finsent.export.stage import ExportsError
from finsent.export.stage import check_exports as check

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model.safetensors", "README.md")
EVAL_NAME = re.compile(r"^(?P<benchmark>[a-z0-9_]+)-(?P<scheme>[37])-(?P<mode>score|generate)\.json$")
TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
DEFAULT_MAX_REGRESSION = 0.01
KEEP_REMOTE = {".gitattributes"}  # files of the repo that a release never replaces or removes
TAG_ATTEMPTS = 3  # create_tag tries before the push reports main as holding an untagged release
TAG_RETRY_SECONDS = 1.0
USAGE_LINE = re.compile(r'^model_id = "(?P<id>[^"]*)"$', re.M)  # the card's usage code (MODEL_CARD.md)


class PublishError(FinsentError, RuntimeError):
    """A release that must not (or cannot) be pushed; the message says why and what to do."""


class UntaggedReleaseError(PublishError):
    """main holds the release's commit (``commit``) but its tag could not be created: run the push again."""

    def __init__(self, message: str, commit: str):
        super().__init__(message)
        self.commit = commit


# --- the release folder --------------------------------------------------------------------------


class RepoIdError(PublishError, UsageError):
    """A Hub repo id that the Hub would refuse."""


def check_repo_id(value, flag: str = "--repo-id") -> str:
    """``value`` if it is a Hub repo id of the form owner/name that the Hub accepts, else RepoIdError.

    The Hub's own rules (``huggingface_hub.utils.validate_repo_id``: letters, digits, '-', '_', '.', no '--' or
    '..', at most 96 characters), checked before any other work, so a bad id never reaches the network.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(value, str) or value.count("/") != 1 or not all(value.split("/")):
        raise RepoIdError(f"{flag} {value!r} is not a Hub repo id: write it as owner/name")
    try:
        validate_repo_id(value)
    except HFValidationError:
        raise RepoIdError(f"{flag} {value!r} is not a Hub repo id the Hub accepts: owner and name use letters, "
                          "digits, '-', '_' and '.', without '--' or '..', not starting or ending with '-' or '.', "
                          "at most 96 characters") from None
    return value


def safetensors_header(path: Path) -> dict:
    """The checked JSON header of a safetensors file (``models.safetensors_header``), else PublishError."""

    return read_header(path, PublishError)


def check_weights(release_dir: Path) -> list[str]:
    """Every published ``*.safetensors`` must have a readable header matching its size; returns their paths."""
    found = [p for p in release_files(release_dir) if p.suffix == ".safetensors"]
    for path in found:
        safetensors_header(path)
    return [p.relative_to(release_dir).as_posix() for p in found]


def headline_scores(results: dict[str, dict]) -> dict[str, float]:
    """``{"tfns-3-score": weighted_f1, ...}`` from eval result JSONs keyed by file name; a missing weighted_f1, or
    any metric of a result that is not finite (NaN, inf) or a score out of [0, 1], is an error naming the file and
    the metric, never a value the gate or the card could show."""

    out = {}
    for name, result in results.items():
        try:
            value = result["metrics"]["weighted_f1"]
        except (KeyError, TypeError):
            raise PublishError(f"eval/{name}: no metrics.weighted_f1 in the result") from None
        for key, bad, problem in metric_problems(result["metrics"], "metrics"):
            raise PublishError(f"eval/{name}: {key} is {bad!r}, {problem}: run `finsent eval` again")
        out[name.removesuffix(".json")] = float(value)
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
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PublishError(f"{path}: not valid JSON ({exc})") from None
    return results


def check_release(release_dir: Path) -> dict[str, float]:
    """Refuse a folder that lacks what a release must hold, or whose weights or scores are broken; return
    its headline scores."""
    if not release_dir.is_dir():
        raise PublishError(f"release folder {release_dir} does not exist")
    missing = [f for f in REQUIRED_FILES if not (release_dir / f).is_file()]
    if missing:
        raise PublishError(f"{release_dir} is not a complete release: missing {', '.join(missing)}")
    check_weights(release_dir)
    check_exports(release_dir)
    return headline_scores(read_eval_results(release_dir))


def check_exports(release_dir: Path) -> None:
    """The GGUF / ONNX exports the stored recipe asks for are there, listed and made from these very weights
    (``export_release.check_exports``): they are then published in the release's one commit like any file."""

    path = release_dir / "reports" / "recipe.yaml"
    recipe = None
    if path.is_file():

        recipe = load_recipe(path)
    try:
        check(release_dir, recipe)
    except ExportsError as exc:
        raise PublishError(str(exc)) from None


def check_card(release_dir: Path, repo_id: str) -> None:
    """A card rendered by ``finsent card`` must load ``repo_id`` in its usage code (not a local folder or
    another repo); a README without that code (written by hand) is only warned about."""
    text = (release_dir / "README.md").read_text(encoding="utf-8", errors="replace")
    named = {m["id"] for m in USAGE_LINE.finditer(text)}
    if not named:
        logger.warning("README.md has no usage code naming %s (not a card rendered by `finsent card`)", repo_id)
    elif named != {repo_id}:
        raise PublishError(f"README.md's usage code loads {', '.join(sorted(named))}, not {repo_id}: render the "
                           f"card for this repo first: `finsent card {release_dir} --repo-id {repo_id}`")


def release_threshold(release_dir: Path) -> float:
    """``publish.max_regression`` of the recipe stored with the release (reports/recipe.yaml)."""
    path = release_dir / "reports" / "recipe.yaml"
    if not path.is_file():
        return DEFAULT_MAX_REGRESSION

    return load_recipe(path).publish.max_regression


def compare_scores(new: dict[str, float], old: dict[str, float], max_regression: float) -> list[str]:
    """The regressions: results present in both whose weighted F1 fell by more than ``max_regression``.
    A new score that is not finite is always a regression (``headline_scores`` refuses one before)."""
    out = []
    for key in sorted(set(new) & set(old)):
        if not math.isfinite(new[key]) or (math.isfinite(old[key]) and old[key] - new[key] > max_regression):
            out.append(f"{key}: weighted F1 {old[key]:.4f} -> {new[key]:.4f} ({new[key] - old[key]:+.4f})")
    return out


def tag_key(tag: str) -> tuple[int, int, int]:
    m = TAG.match(tag)
    if not m:
        raise PublishError(f"tag {tag!r} is not a release version like v1.2.3")
    return tuple(int(x) for x in m.groups())


# --- the repo as it is ---------------------------------------------------------------------------


@dataclass
class Remote:
    """What the repo holds: main's head and files, and the tags (an absent repo: no head, nothing)."""

    head: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # path -> huggingface_hub RepoFile on main


def read_remote(api, repo_id: str) -> Remote:
    """main's head, its files (recursive tree) and the tags; ``Remote()`` if the repo does not exist."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = api.list_repo_refs(repo_id)
    except RepositoryNotFoundError:
        return Remote()
    head = next((b.target_commit for b in refs.branches if b.name == "main"), None)
    return Remote(head, {t.name: t.target_commit for t in refs.tags}, _tree(api, repo_id, head) if head else {})


def _tree(api, repo_id: str, revision: str) -> dict:
    from huggingface_hub.hf_api import RepoFile

    return {f.path: f for f in api.list_repo_tree(repo_id, revision=revision, recursive=True)
            if isinstance(f, RepoFile)}


def _git_blob_oid(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def holds_release(files: dict, release_dir: Path, plan: list[tuple[str, int]]) -> bool:
    """Whether a commit's files (``path -> RepoFile``) are exactly the release: same paths (besides
    ``KEEP_REMOTE``), same sizes, then the same content (LFS sha256, else the git blob id)."""
    if set(files) - KEEP_REMOTE != {rel for rel, _ in plan}:
        return False
    if any(files[rel].size != size for rel, size in plan):
        return False
    for rel, _ in plan:
        remote, local = files[rel], release_dir / rel
        if remote.lfs is not None:
            if remote.lfs.sha256 != _sha256(local):
                return False
        elif remote.blob_id != _git_blob_oid(local):
            return False
    return True


# --- the push ------------------------------------------------------------------------------------


def push_release(release_dir, repo_id: str, tag: str, *, dry_run: bool = False, create_pr: bool = False,
                 private: bool = False, allow_regression: bool = False, token: str | None = None,
                 endpoint: str | None = None, max_regression: float | None = None,
                 read_remote: bool = True) -> dict:
    """Publish ``release_dir`` as one commit tagged ``tag``; see the module docstring. Returns a summary dict:
    ``files`` (path, size), ``deleted``, ``action`` ("commit+tag", "tag": main already held the release,
    "none": already published, "pr"), ``commit``, ``url``, ``pr_url``, ``previous_tag``, ``regressions``;
    a dry run adds ``remote`` (what could not be read, or None) and ``refused`` (why a real push would stop).

    ``max_regression`` defaults to the release's recipe (``publish.max_regression``).
    """
    check_repo_id(repo_id)
    release_dir = Path(release_dir)
    tag_key(tag)
    scores = check_release(release_dir)
    plan = [(p.relative_to(release_dir).as_posix(), p.stat().st_size) for p in release_files(release_dir)]
    summary = {"repo_id": repo_id, "tag": None if create_pr else tag, "files": plan,
               "bytes": sum(size for _, size in plan), "scores": scores, "dry_run": dry_run, "action": None,
               "commit": None, "url": None, "pr_url": None, "previous_tag": None, "regressions": [],
               "deleted": [], "remote": None, "refused": None}
    if dry_run:
        return _dry_run(summary, release_dir, repo_id, tag, create_pr, allow_regression, token, endpoint,
                        max_regression, read_remote)
    check_card(release_dir, repo_id)

    from huggingface_hub import HfApi, get_token
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
        remote = read_remote_or_fail(api, repo_id)
        _plan(summary, api, repo_id, tag, remote, release_dir, create_pr, allow_regression, max_regression)
    except HfHubHTTPError as exc:
        raise PublishError(f"cannot create or read {repo_id}: {_short(exc)}") from None
    if summary["action"] == "none":
        logger.info("%s %s is already published (commit %s): nothing to do", repo_id, tag, summary["commit"])
        return summary
    for line in summary["regressions"]:
        logger.warning("publishing despite a regression against %s: %s", summary["previous_tag"], line)

    if summary["action"] == "tag":  # main already holds exactly this release: a re-run completing a push
        logger.info("main of %s already holds this release (commit %s): only tagging it", repo_id, remote.head)
        _tag(api, repo_id, tag, remote.head, f"Release {tag}")
        summary.update(commit=remote.head, url=f"{api.endpoint}/{repo_id}/commit/{remote.head}")
        return summary

    commit = _commit(api, repo_id, tag, release_dir, summary, remote.head, create_pr)
    summary.update(commit=commit.oid, url=commit.commit_url, pr_url=commit.pr_url)
    if not create_pr:
        _tag(api, repo_id, tag, commit.oid, f"Release {tag}")
    return summary


def read_remote_or_fail(api, repo_id: str) -> Remote:
    remote = read_remote(api, repo_id)
    if remote.head is None:
        raise PublishError(f"{repo_id} has no main branch: nothing was uploaded")
    return remote


def _plan(summary: dict, api, repo_id: str, tag: str, remote: Remote, release_dir: Path, create_pr: bool,
          allow_regression: bool, max_regression: float | None) -> None:
    """Decide what the push does (``summary['action']``), run the gate, fill ``deleted`` and the gate's fields.
    Raises PublishError where the push must stop."""
    plan = summary["files"]
    if tag in remote.tags and not create_pr:
        tagged = remote.tags[tag]
        files = remote.files if tagged == remote.head else _tree(api, repo_id, tagged)
        if holds_release(files, release_dir, plan):
            summary.update(action="none", commit=tagged, url=f"{api.endpoint}/{repo_id}/commit/{tagged}")
            return
        raise PublishError(f"tag {tag} already exists on {repo_id} (commit {tagged[:12]}) with other files; "
                           "choose a new version")
    summary["deleted"] = sorted(set(remote.files) - {rel for rel, _ in plan} - KEEP_REMOTE)
    same = remote.head is not None and holds_release(remote.files, release_dir, plan)
    if same and create_pr:
        raise PublishError(f"main of {repo_id} already holds exactly this release: a pull request would be empty")
    summary["action"] = "pr" if create_pr else "tag" if same else "commit+tag"
    if summary["action"] == "tag":
        summary["commit"] = remote.head

    previous = max((t for t in remote.tags if TAG.match(t) and tag_key(t) < tag_key(tag)), key=tag_key,
                   default=None)
    summary["previous_tag"] = previous
    if not previous:
        return
    threshold = max_regression if max_regression is not None else release_threshold(release_dir)
    old = _remote_scores(api, repo_id, remote.tags[previous])
    scores = summary["scores"]
    summary["regressions"] = regressions = compare_scores(scores, old, threshold)
    if not set(scores) & set(old):
        logger.warning("the gate found no result of %s to compare with (%s has %s)", tag, previous,
                       ", ".join(sorted(old)) or "no eval results")
    if regressions and not allow_regression:
        raise PublishError(f"release gate: {len(regressions)} result(s) fell more than {threshold} below "
                           f"{previous}:\n  " + "\n  ".join(regressions) +
                           "\nfix the model, or pass --allow-regression to publish anyway")


def _remote_scores(api, repo_id: str, revision: str) -> dict[str, float]:
    """Headline scores of a published commit; an unreadable or non-finite one is left out (not comparable)."""
    out = {}
    for name, result in _remote_eval_results(api, repo_id, revision).items():
        try:
            out.update(headline_scores({name: result}))
        except PublishError as exc:
            logger.warning("the gate cannot compare with %s of %s: %s", name, revision[:12], exc)
    return out


def _commit(api, repo_id: str, tag: str, release_dir: Path, summary: dict, head: str, create_pr: bool):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    plan = summary["files"]
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(release_dir / rel)) for rel, _ in plan]
    operations += [CommitOperationDelete(path_in_repo=rel) for rel in summary["deleted"]]
    message = f"Release {tag}" if not create_pr else f"Release candidate {tag}"
    again = ("run the same push again: it completes the release (files already uploaded are not sent again, "
             "and a commit that did land is found and only tagged)")
    try:
        return api.create_commit(repo_id, operations, commit_message=message, parent_commit=head,
                                 create_pr=create_pr,
                                 commit_description=f"{len(plan)} files from {release_dir.name}")
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        if status == 412:
            raise PublishError(f"{repo_id} changed while publishing (main is no longer {str(head)[:12]}); "
                               "nothing was committed: run the push again") from None
        raise PublishError(f"the Hub refused the commit to {repo_id} ({_short(exc)}); {tag} was not created: "
                           + again) from None
    except Exception as exc:
        if not _is_transport_error(exc):
            raise
        raise PublishError(f"the connection to {api.endpoint} failed during the upload ({_short(exc)}); "
                           f"{tag} was not created: " + again) from None


def _tag(api, repo_id: str, tag: str, commit: str, message: str) -> None:
    """``create_tag`` on ``commit``, tried ``TAG_ATTEMPTS`` times; a tag that an attempt created although the
    client saw an error counts as created. Failing that, UntaggedReleaseError (main holds ``commit``)."""
    from huggingface_hub.errors import HfHubHTTPError

    error = None
    for attempt in range(TAG_ATTEMPTS):
        if attempt:
            time.sleep(TAG_RETRY_SECONDS * attempt)
        try:
            api.create_tag(repo_id, tag=tag, revision=commit, tag_message=message)
            return
        except HfHubHTTPError as exc:
            error = _short(exc)
        except Exception as exc:
            if not _is_transport_error(exc):
                raise
            error = _short(exc)
        try:  # an attempt may have landed although its answer was lost
            if read_remote(api, repo_id).tags.get(tag) == commit:
                return
        except Exception as exc:
            if not (_is_transport_error(exc) or isinstance(exc, HfHubHTTPError)):
                raise
        logger.warning("create_tag %s failed (attempt %d of %d): %s", tag, attempt + 1, TAG_ATTEMPTS, error)
    raise UntaggedReleaseError(
        f"main of {repo_id} now holds the release (commit {commit}) but tag {tag} could not be created "
        f"({error}): run the same push again: it finds that commit and only adds the tag", commit)


def _dry_run(summary: dict, release_dir: Path, repo_id: str, tag: str, create_pr: bool, allow_regression: bool,
             token: str | None, endpoint: str | None, max_regression: float | None, read_remote_: bool) -> dict:
    """Everything but the writes: reads the repo (if it can) to list deletions and run the gate."""
    try:
        check_card(release_dir, repo_id)
    except PublishError as exc:
        summary["refused"] = str(exc)
    from huggingface_hub import HfApi, constants, get_token
    from huggingface_hub.errors import HfHubHTTPError

    if not read_remote_ or constants.HF_HUB_OFFLINE:
        summary["remote"] = "the repo was not read (offline): deletions and the gate are unknown"
        return summary
    api = HfApi(endpoint=endpoint, token=token or get_token() or False)
    try:
        remote = read_remote(api, repo_id)
        if remote.head is None:
            summary["remote"] = f"{repo_id} does not exist (or is private to another account): it would be created"
        _plan(summary, api, repo_id, tag, remote, release_dir, create_pr, allow_regression, max_regression)
    except PublishError as exc:
        summary["refused"] = summary["refused"] or str(exc)
    except HfHubHTTPError as exc:
        summary["remote"] = f"cannot read {repo_id} ({_short(exc)}): deletions and the gate are unknown"
    except Exception as exc:
        if not _is_transport_error(exc):
            raise
        summary["remote"] = f"cannot reach {api.endpoint} ({_short(exc)}): deletions and the gate are unknown"
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
                try:
                    results[name] = json.loads(Path(local).read_text())
                except (json.JSONDecodeError, UnicodeDecodeError):
                    logger.warning("the gate cannot read %s of %s (not JSON)", path, revision[:12])
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
