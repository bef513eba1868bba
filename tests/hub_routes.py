"""The request handler of the test Hub (``hub_server.HubServer``): one method per Hub endpoint.

Routes are matched on the raw (still quoted) path, so a revision such as ``refs%2Fpr%2F1`` stays one
segment; the captured groups are unquoted before the handler method gets them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

import yaml
from hub_server import PREFIXES, FileEntry, HubError, HubServer, Repo, git_blob_oid


class _DropConnection(Exception):
    """Raised to close the socket without a response (a simulated network failure)."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_state: HubServer

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    # --- plumbing ----------------------------------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        hub = self.server_state
        parts = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.body_read = False
        with hub.lock:
            hub.requests.append((method, parts.path))
        for hook in list(hub.hooks):
            hook(method, parts.path)
        try:
            for pattern, name in ROUTES:
                if pattern[0] == method and (m := re.fullmatch(pattern[1], parts.path)):
                    return getattr(self, name)(*[unquote(g) if g else g for g in m.groups()])
            raise HubError(404, f"no route for {method} {parts.path}")
        except HubError as exc:
            headers = {"X-Error-Message": exc.message, **exc.headers}
            if exc.code:
                headers["X-Error-Code"] = exc.code
            # An unread request body would be taken for the next request on this kept-alive connection.
            if not self.body_read and method in ("POST", "PUT"):
                self.close_connection = True
                headers["Connection"] = "close"
            self._json({"error": exc.message, **exc.extra}, exc.status, headers)
        except _DropConnection:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _body(self) -> bytes:
        self.body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _inject(self, how: str | None) -> None:
        """Before the work: hang up mid-body ("drop") or answer 500 ("error"); "after" is handled after it."""
        if how == "drop":
            self._drop_mid_body()
        if how == "error":
            self._body()
            raise HubError(500, "Internal Error - We're working hard to fix this as soon as possible!")

    def _drop_mid_body(self) -> None:
        """Read half of the request body, then hang up: the client sees a broken connection."""
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length // 2) if length else self.rfile.readline()
        raise _DropConnection

    def _json(self, payload, status: int = 200, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _user(self, required: bool = True) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else None
        user = self.server_state.tokens.get(token) if token else None
        if token and user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        if required and user is None:
            raise HubError(401, "You must be authenticated to access this resource")
        return user

    def _can_write(self, repo_id: str) -> str:
        user = self._user()
        if repo_id.split("/")[0] not in {user, *self.server_state.orgs}:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return user

    def _readable(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.server_state.repo(repo_id, repo_type)
        if repo.private and repo_id.split("/")[0] not in {self._user(required=False), *self.server_state.orgs}:
            raise HubError(401, f"Repository Not Found for {repo_id} (private)", "RepoNotFound")
        return repo

    def _url(self, repo: Repo) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/{PREFIXES[repo.repo_type]}{repo.repo_id}"

    # --- routes ------------------------------------------------------------------------------------

    def whoami(self):
        user = self._user()
        orgs = [{"name": o, "type": "org"} for o in sorted(self.server_state.orgs)]
        self._json({"type": "user", "name": user, "orgs": orgs,
                    "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def create_repo(self):
        body = json.loads(self._body() or b"{}")
        user = self._user()
        repo_id = f"{body.get('organization') or user}/{body['name']}"
        repo_type = body.get("type") or "model"
        self._can_write(repo_id)
        hub = self.server_state
        with hub.lock:
            if (repo_type, repo_id) in hub.repos:
                existing = hub.repos[(repo_type, repo_id)]
                raise HubError(409, f"You already created this {repo_type} repo", extra={"url": self._url(existing)})
            if repo_type == "space" and not body.get("sdk"):
                raise HubError(400, "a Space needs an sdk")
            private = body.get("visibility") == "private" or bool(body.get("private"))
            repo = hub.create_repo(repo_type, repo_id, private, body.get("sdk"))
        self._json({"url": self._url(repo), "name": repo_id, "id": repo_id})

    def validate_yaml(self):
        content = json.loads(self._body())["content"]
        m = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(m[1]) if m else None
        except yaml.YAMLError as exc:
            return self._json({"errors": [{"message": f"invalid YAML: {exc}"}]}, 400)
        if m and not isinstance(meta, dict):
            return self._json({"errors": [{"message": "metadata must be a mapping"}]}, 400)
        self._json({"errors": [], "warnings": []})

    def repo_info(self, kind, repo_id, rev=None):
        repo = self._readable(kind[:-1], repo_id)
        commit = repo.resolve(rev or "main")
        siblings = [{"rfilename": p, "size": e.size, "blobId": e.git_oid,
                     **({"lfs": {"sha256": e.sha256, "size": e.size, "pointerSize": 134}} if e.lfs else {})}
                    for p, e in sorted(commit.files.items())]
        info = {"id": repo_id, "author": repo_id.split("/")[0], "sha": commit.oid, "private": repo.private,
                "lastModified": commit.date, "siblings": siblings, "tags": [], "downloads": 0, "likes": 0}
        if repo.repo_type == "space":
            info.update(sdk=repo.sdk, runtime={"stage": "BUILDING", "hardware": {"current": None}})
        self._json(info)

    def tree(self, kind, repo_id, rev, sub=None):
        repo = self._readable(kind[:-1], repo_id)
        commit = repo.resolve(rev)
        prefix = (sub.strip("/") + "/") if sub else ""
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        entries, dirs = [], set()
        for path, e in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            if "/" in rest:
                parts = rest.split("/")
                for depth in range(1, len(parts) if recursive else 2):
                    dirs.add(prefix + "/".join(parts[:depth]))
                if not recursive:
                    continue
            entries.append({"type": "file", "path": path, "size": e.size, "oid": e.git_oid,
                            **({"lfs": {"oid": e.sha256, "size": e.size, "pointerSize": 134}} if e.lfs else {})})
        if prefix and not entries and not dirs:
            raise HubError(404, f"{sub} does not exist at {rev}", "EntryNotFound")
        folders = [{"type": "directory", "path": d, "size": 0, "oid": hashlib.sha1(d.encode()).hexdigest()}
                   for d in sorted(dirs)]
        self._json(folders + entries)

    def space_runtime(self, repo_id):
        repo = self._readable("space", repo_id)
        self._json({"stage": "RUNNING", "hardware": {"current": "cpu-basic", "requested": "cpu-basic"},
                    "sdk": repo.sdk, "storage": None, "gcTimeout": None})

    def refs(self, kind, repo_id):
        repo = self._readable(kind[:-1], repo_id)

        def ref(name, full, oid):
            return {"name": name, "ref": full, "targetCommit": oid}

        data = {"branches": [ref(b, f"refs/heads/{b}", o) for b, o in repo.branches.items()],
                "tags": [ref(t, f"refs/tags/{t}", o) for t, o in repo.tags.items()], "converts": []}
        if self.query.get("include_prs"):
            data["pullRequests"] = [ref(f"refs/pr/{i}", f"refs/pr/{i}", o) for i, o in enumerate(repo.prs, 1)]
        self._json(data)

    def preupload(self, kind, repo_id, rev):
        self._can_write(repo_id)
        how = self.server_state._should_fail("preupload")
        self._inject(how)
        repo = self.server_state.repo(repo_id, kind[:-1])
        files = json.loads(self._body())["files"]
        if how == "after":
            raise _DropConnection
        current = repo.resolve(rev).files if not self.query.get("create_pr") or rev in repo.branches else {}
        out = []
        for f in files:
            lfs = self.server_state.is_lfs(f["path"], f["size"], base64.b64decode(f["sample"]))
            have = current.get(f["path"])
            oid = (have.sha256 if have.lfs else have.git_oid) if have else None
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        self._json({"files": out, "commitOid": repo.resolve(rev).oid})

    def lfs_batch(self, prefix, repo_id):
        repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        self._can_write(repo_id)
        self.server_state.repo(repo_id, repo_type)
        body = json.loads(self._body())
        host, port = self.server.server_address[:2]
        objects = []
        for obj in body["objects"]:
            item = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not (self.server_state.blob_dir / obj["oid"]).exists():
                href = f"http://{host}:{port}/lfs-upload/{obj['oid']}?size={obj['size']}"
                item["actions"] = {"upload": {"href": href, "header": {}}}
            objects.append(item)
        self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def lfs_put(self, oid):
        how = self.server_state._should_fail("lfs-put")
        self._inject(how)
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid or len(data) != int(self.query.get("size", len(data))):
            raise HubError(400, f"uploaded content does not match oid {oid} / size {self.query.get('size')}")
        with self.server_state.lock:
            self.server_state.store_blob(data)
        if how == "after":
            raise _DropConnection
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.send_header("ETag", f'"{oid}"')
        self.end_headers()

    def commit(self, kind, repo_id, rev):
        self._can_write(repo_id)
        hub = self.server_state
        how = hub._should_fail("commit")
        self._inject(how)
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = next((x["value"] for x in lines if x["key"] == "header"), None)
        if header is None or not header.get("summary"):
            raise HubError(400, "commit header with a summary is required")
        create_pr = self.query.get("create_pr") == "1"
        with hub.lock:
            repo = hub.repo(repo_id, kind[:-1])
            if rev not in repo.branches and not re.fullmatch(r"refs/pr/\d+", rev):
                raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            head = repo.resolve(rev)
            parent = header.get("parentCommit")
            if parent and parent != head.oid:
                raise HubError(412, f"A commit has happened since {parent}: {rev} is at {head.oid}. "
                                    "Please refresh and try again.")
            files = dict(head.files)
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "file":
                    files[value["path"]] = hub.entry_for(base64.b64decode(value["content"]), value["path"], False)
                elif key == "lfsFile":
                    blob = hub.blob_dir / value["oid"]
                    if not blob.exists():
                        raise HubError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                    data = blob.read_bytes()
                    files[value["path"]] = FileEntry(value["oid"], len(data), git_blob_oid(data), True)
                elif key in ("deletedFile", "deletedFolder"):
                    gone = [p for p in files if p == value["path"] or p.startswith(value["path"].rstrip("/") + "/")]
                    if not gone:
                        raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                    for p in gone:
                        del files[p]
            commit = hub.new_commit(repo, head.oid, files, header["summary"])
            if create_pr:
                repo.prs.append(commit.oid)
                pr_url = f"{self._url(repo)}/discussions/{len(repo.prs)}"
            else:
                repo.branches[rev] = commit.oid
                pr_url = None
        if how == "after":
            raise _DropConnection
        self._json({"success": True, "commitOid": commit.oid, "commitUrl": f"{self._url(repo)}/commit/{commit.oid}",
                    "pullRequestUrl": pr_url})

    def create_tag(self, kind, repo_id, rev):
        self._can_write(repo_id)
        how = self.server_state._should_fail("tag")
        self._inject(how)
        body = json.loads(self._body())
        with self.server_state.lock:
            repo = self.server_state.repo(repo_id, kind[:-1])
            commit = repo.resolve(rev)
            if body["tag"] in repo.tags or body["tag"] in repo.branches:
                raise HubError(409, f"Tag {body['tag']} already exists")
            repo.tags[body["tag"]] = commit.oid
        if how == "after":
            raise _DropConnection
        self._json({"success": True})

    def delete_tag(self, kind, repo_id, tag):
        self._can_write(repo_id)
        with self.server_state.lock:
            repo = self.server_state.repo(repo_id, kind[:-1])
            if repo.tags.pop(tag, None) is None:
                raise HubError(404, f"Invalid rev id: {tag}", "RevisionNotFound")
        self._json({"success": True})

    def resolve(self, prefix, repo_id, rev, path):
        repo_type = {"datasets/": "dataset", "spaces/": "space"}.get(prefix or "", "model")
        repo = self._readable(repo_type, repo_id)
        commit = repo.resolve(rev)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = (self.server_state.blob_dir / entry.sha256).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("X-Repo-Commit", commit.oid)
        self.send_header("ETag", f'"{entry.sha256 if entry.lfs else entry.git_oid}"')
        if entry.lfs:
            self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
            self.send_header("X-Linked-Size", str(entry.size))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)


_REPO = r"([^/]+/[^/]+)"
_KIND = r"(models|datasets|spaces)"
_PFX = r"((?:datasets/|spaces/)?)"
# (method, path regex) -> handler method; groups are passed in order (unquoted).
ROUTES = [
    (("GET", r"/api/whoami-v2"), "whoami"),
    (("POST", r"/api/repos/create"), "create_repo"),
    (("POST", r"/api/validate-yaml"), "validate_yaml"),
    (("GET", rf"/api/{_KIND}/{_REPO}"), "repo_info"),
    (("GET", rf"/api/{_KIND}/{_REPO}/revision/([^/]+)"), "repo_info"),
    (("GET", rf"/api/{_KIND}/{_REPO}/tree/([^/]+)(?:/(.+))?"), "tree"),
    (("GET", rf"/api/{_KIND}/{_REPO}/refs"), "refs"),
    (("GET", rf"/api/spaces/{_REPO}/runtime"), "space_runtime"),
    (("POST", rf"/api/{_KIND}/{_REPO}/preupload/([^/]+)"), "preupload"),
    (("POST", rf"/api/{_KIND}/{_REPO}/commit/([^/]+)"), "commit"),
    (("POST", rf"/api/{_KIND}/{_REPO}/tag/([^/]+)"), "create_tag"),
    (("DELETE", rf"/api/{_KIND}/{_REPO}/tag/([^/]+)"), "delete_tag"),
    (("POST", rf"/{_PFX}{_REPO}\.git/info/lfs/objects/batch"), "lfs_batch"),
    (("PUT", r"/lfs-upload/([0-9a-f]{64})"), "lfs_put"),
    (("HEAD", rf"/{_PFX}{_REPO}/resolve/([^/]+)/(.+)"), "resolve"),
    (("GET", rf"/{_PFX}{_REPO}/resolve/([^/]+)/(.+)"), "resolve"),
]
