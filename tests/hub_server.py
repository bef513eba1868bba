"""A small Hugging Face Hub-compatible HTTP server for tests, on loopback only.

It speaks the part of the Hub protocol that ``huggingface_hub`` 2.x uses with ``HF_HUB_DISABLE_XET=1``
(as that client sends it: ``hf_api.py``, ``_commit_api.py`` and ``lfs.py`` of huggingface_hub,
https://github.com/huggingface/huggingface_hub), so tests drive the real client against it:

    with HubServer(tmp_path) as hub:
        api = HfApi(endpoint=hub.url, token=hub.token)
        api.create_repo("alice/model", exist_ok=True)
        ...
        hub.fail_next("commit")          # drop the connection in the middle of the next commit call
        hub.fail_next("tag", how="after")  # create the tag, then hang up before answering
        hub.requests                     # [(method, path), ...] every request seen, for assertions

Repositories are real commit graphs: files are content-addressed blobs on disk (``root/blobs/<sha256>``),
each commit holds its parent and a full tree ``{path: FileEntry}``, branches / tags / PR refs point at
commit ids. Model, dataset and Space repos are supported (URL prefixes ``""``, ``datasets/``, ``spaces/``).

The HTTP side is ``hub_routes.py``. Endpoints: whoami-v2, repos/create, validate-yaml, repo info
(+ /revision/{rev}), tree, refs, Space runtime, preupload, LFS batch + PUT, ndjson commit
(``parentCommit`` checked, ``create_pr``), tag create/delete, resolve (HEAD/GET). Errors carry the
``X-Error-Code`` header that the client maps to its exception types.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path

PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
# Paths the Hub stores in LFS by default (its initial .gitattributes); anything over 10 MB too.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".png", ".jpg", ".zip", ".gz")
LFS_MIN_SIZE = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None,
                 extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}  # more JSON fields of the error body


@dataclass(frozen=True)
class FileEntry:
    sha256: str  # content address of the blob
    size: int
    git_oid: str  # git blob sha1 of the content (what the Hub reports for regular files)
    lfs: bool


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, FileEntry]
    title: str
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    sdk: str | None = None
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prs: list[str] = field(default_factory=list)  # index n-1 = head of refs/pr/n

    def resolve(self, rev: str) -> Commit:
        if rev in self.branches:
            return self.commits[self.branches[rev]]
        if rev in self.tags:
            return self.commits[self.tags[rev]]
        m = re.fullmatch(r"refs/pr/(\d+)", rev)
        if m and 0 < int(m[1]) <= len(self.prs):
            return self.commits[self.prs[int(m[1]) - 1]]
        if rev in self.commits:
            return self.commits[rev]
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    """The server plus its state. Use as a context manager; ``url``, ``token``, ``user``, ``requests``."""

    def __init__(self, root: str | Path, users: dict[str, str] | None = None, orgs: tuple[str, ...] = ()):
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.blob_dir.mkdir(parents=True, exist_ok=True)
        self.user = "alice"
        self.token = "hf_test_" + secrets.token_hex(8)
        self.tokens = {self.token: self.user} if users is None else {t: u for u, t in users.items()}
        self.orgs = set(orgs)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._failures: dict[str, int] = {}
        self.hooks: list = []  # callables (method, path) run before each request is handled
        self._httpd: ThreadingHTTPServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> HubServer:
        """Serve on a free loopback port. The client is switched to the classic LFS upload path while the
        server runs (it cannot speak Xet); ``HF_HUB_DISABLE_XET`` is read at import, so the constant is set."""
        from huggingface_hub import constants

        self._xet_before = constants.HF_HUB_DISABLE_XET
        constants.HF_HUB_DISABLE_XET = True
        from hub_routes import Handler as _Handler

        hub = self

        class Handler(_Handler):
            server_state = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # loopback only, free port
        self._httpd.daemon_threads = True
        # a short poll: stop() waits up to one interval for the loop to see the shutdown (0.5 s by default, each test)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="hub-server",
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
            from huggingface_hub import constants

            constants.HF_HUB_DISABLE_XET = self._xet_before

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # --- test controls -----------------------------------------------------------------------------

    def fail_next(self, what: str, times: int = 1, how: str = "drop") -> None:
        """Make the next ``times`` requests of a kind fail: ``how`` = "drop" hangs up half-way through the
        request body (nothing is done), "error" answers HTTP 500 (nothing is done), "after" does the work,
        then hangs up without answering (the client sees a failure that in fact succeeded)."""
        if what not in ("commit", "lfs-put", "preupload", "tag"):
            raise ValueError(f"cannot inject a failure into {what!r}")
        if how not in ("drop", "error", "after"):
            raise ValueError(f"unknown failure {how!r}: drop, error or after")
        self._failures[what] = (times, how)

    def _should_fail(self, what: str) -> str | None:
        """The failure to inject into this request of kind ``what`` ("drop", "error", "after"), or None."""
        with self.lock:
            left, how = self._failures.get(what, (0, None))
            if left:
                self._failures[what] = (left - 1, how)
            return how if left else None

    def commit_files(self, repo_id: str, files: dict[str, bytes], title: str = "direct commit",
                     repo_type: str = "model", branch: str = "main") -> str:
        """Commit straight into the server's state (someone else pushing); returns the new commit id."""
        with self.lock:
            repo = self.repo(repo_id, repo_type)
            head = repo.resolve(branch)
            tree = {**head.files, **{p: self.entry_for(d, p, p.endswith(LFS_SUFFIXES)) for p, d in files.items()}}
            commit = self.new_commit(repo, head.oid, tree, title)
            repo.branches[branch] = commit.oid
            return commit.oid

    def requests_matching(self, pattern: str) -> list[tuple[str, str]]:
        return [r for r in self.requests if re.search(pattern, f"{r[0]} {r[1]}")]

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        try:
            return self.repos[(repo_type, repo_id)]
        except KeyError:
            raise HubError(404, f"Repository Not Found for url: {repo_type} {repo_id}", "RepoNotFound") from None

    def read_file(self, repo_id: str, path: str, revision: str = "main", repo_type: str = "model") -> bytes:
        entry = self.repo(repo_id, repo_type).resolve(revision).files[path]
        return (self.blob_dir / entry.sha256).read_bytes()

    # --- state changes (called by the handler under the lock) --------------------------------------

    def store_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.blob_dir / sha
        if not path.exists():
            tmp = path.with_suffix(".tmp" + secrets.token_hex(4))
            tmp.write_bytes(data)
            tmp.rename(path)  # a blob is either complete or absent
        return sha

    def entry_for(self, data: bytes, path: str, lfs: bool) -> FileEntry:
        return FileEntry(self.store_blob(data), len(data), git_blob_oid(data), lfs)

    def new_commit(self, repo: Repo, parent: str | None, files: dict[str, FileEntry], title: str) -> Commit:
        date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        body = json.dumps([parent, {p: e.sha256 for p, e in sorted(files.items())}, title, date, secrets.token_hex(4)])
        commit = Commit(hashlib.sha1(body.encode()).hexdigest(), parent, files, title, date)
        repo.commits[commit.oid] = commit
        return commit

    def create_repo(self, repo_type: str, repo_id: str, private: bool, sdk: str | None) -> Repo:
        repo = Repo(repo_type, repo_id, private, sdk)
        first = self.new_commit(repo, None, {".gitattributes": self.entry_for(GITATTRIBUTES, ".gitattributes", False)},
                                "initial commit")
        repo.branches["main"] = first.oid
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def is_lfs(self, path: str, size: int, sample: bytes) -> bool:
        return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE or b"\0" in sample
