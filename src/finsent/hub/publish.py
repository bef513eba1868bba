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
(``export.stage.check_exports``: those the recipe asks for, made from the folder's weights, none unlisted).

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
import time
from dataclasses import dataclass, field
from pathlib import Path

from finsent.core.outputs import release_files
from finsent.core.provenance import file_sha256
from finsent.hub.gate import (
    EVAL_NAME,
    TAG,
    PublishError,
    check_card,
    check_publishable,
    check_repo_id,
    compare_scores,
    headline_scores,
    release_threshold,
    tag_key,
)

logger = logging.getLogger(__name__)

KEEP_REMOTE = {".gitattributes"}  # files of the repo that a release never replaces or removes
TAG_ATTEMPTS = 3  # create_tag tries before the push reports main as holding an untagged release
TAG_RETRY_SECONDS = 1.0


class UntaggedReleaseError(PublishError):
    """main holds the release's commit (``commit``) but its tag could not be created: run the push again."""

    def __init__(self, message: str, commit: str):
        super().__init__(message)
        self.commit = commit


# --- the release folder --------------------------------------------------------------------------


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
            if remote.lfs.sha256 != file_sha256(local):
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
    scores = check_publishable(release_dir)
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


