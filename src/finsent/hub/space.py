"""The Gradio Space: serve the demo locally, or assemble it and deploy it to the Hub in one commit.

    finsent space serve [--model M] [--port 7860]              # space/app.py on any model folder or Hub id
    finsent space deploy --repo-id you/finsent-demo [--model oopere/Llama-FinSent-S] [--dry-run]

A deployed Space is self-contained: ``app.py``, ``requirements.txt`` (inference only), ``README.md``
(front matter with ``models:`` set to ``--model``, which the app loads) and a ``finsent/`` folder
holding ``finsent/__init__.py`` and the inference core ``finsent/core`` whole, so the Space imports exactly
the code path the evaluation used without installing this project.
"""

from __future__ import annotations

import ast
import errno
import logging
import shutil
import socket
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from finsent.core.errors import FinsentError, UsageError
from finsent.core.models import PUBLISHED_MODEL
from finsent.core.outputs import upload_files
from finsent.core.paths import PACKAGE_DIR, REPO_ROOT
from finsent.hub.gate import check_repo_id

logger = logging.getLogger(__name__)

SPACE_DIR = REPO_ROOT / "space"  # the repository's space/ folder (source checkout)
# The Space ships finsent/__init__.py and the inference core (finsent/core) whole: nothing that pulls training
# dependencies.
SPACE_FILES = ("app.py", "requirements.txt")  # copied as they are; README.md is rewritten


class SpaceDeployError(FinsentError, RuntimeError):
    """The Space cannot be assembled or uploaded; the message says what to fix."""


class ServeAddressError(UsageError, OSError):
    """``finsent space serve`` cannot listen on the address asked for; the message names it and what to do."""


@dataclass
class Deployment:
    repo_id: str
    model: str
    files: list[str]
    commit: str | None = None  # commit id on the Hub (None for a dry run)
    url: str | None = None
    deleted: list[str] = field(default_factory=list)  # stale files the commit removed

    def to_dict(self) -> dict:
        return asdict(self)


def space_source(source: str | Path | None = None) -> Path:
    """The folder holding app.py / README.md / requirements.txt (default: the repository's space/)."""
    folder = Path(source) if source else SPACE_DIR
    missing = [name for name in (*SPACE_FILES, "README.md") if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} is not a Space source folder: missing {', '.join(missing)} "
                                "(run from a llama-finsent checkout, or pass --space-dir)")
    return folder


def check_hub_id(value: str, flag: str = "--model") -> str:
    """A Hub id is owner/name; a local folder cannot be a Space's model (the Space cannot see it)."""

    parts = value.split("/")
    if len(parts) != 2 or not all(parts) or value.startswith((".", "~")) or Path(value).exists():
        why = ": a Space downloads its model from the Hub, it cannot see a local folder" if flag == "--model" else ""
        raise SpaceDeployError(f"{flag} {value!r} must be a Hub id (owner/name){why}")
    return check_repo_id(value, flag)


def assemble_space(out_dir: str | Path, model: str = PUBLISHED_MODEL, source: str | Path | None = None) -> list[str]:
    """Write the deployable Space into ``out_dir``; return its files (relative, sorted)."""
    from huggingface_hub import SpaceCard

    src, out = space_source(source), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in SPACE_FILES:
        shutil.copy2(src / name, out / name)
    card = SpaceCard((src / "README.md").read_text(encoding="utf-8"))
    card.data.models = [check_hub_id(model)]
    (out / "README.md").write_text(str(card), encoding="utf-8")
    package = out / "finsent"
    package.mkdir(exist_ok=True)
    shutil.copy2(PACKAGE_DIR / "__init__.py", package / "__init__.py")
    shutil.copytree(PACKAGE_DIR / "core", package / "core", ignore=shutil.ignore_patterns("__pycache__"),
                    dirs_exist_ok=True)
    check_self_contained(out)

    return [p.relative_to(out).as_posix() for p in upload_files(out)]


def check_self_contained(folder: Path) -> None:
    """Every ``finsent`` module that app.py or the copied package imports must be in the copy: the Space installs
    no finsent, it runs the copied inference core."""
    package = folder / "finsent"
    for path in [folder / "app.py", *sorted(package.rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "finsent":
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names if a.name.split(".")[0] == "finsent"]
            else:
                continue
            for module in modules:
                parts = module.split(".")[1:]
                found = package.joinpath(*parts)
                if not (found.with_suffix(".py").is_file() or (found / "__init__.py").is_file()) \
                        and not _is_attribute(module, package):
                    raise SpaceDeployError(f"{path.relative_to(folder)} imports {module}, which is not in the "
                                           "inference core the Space ships (finsent.core)")


def _is_attribute(module: str, package: Path) -> bool:
    """Whether ``a.b.name`` names something defined in the copied module ``a.b`` rather than a module."""
    parent = package.joinpath(*module.split(".")[1:-1])
    return parent.with_suffix(".py").is_file() or (parent / "__init__.py").is_file()


def deploy_space(repo_id: str, model: str = PUBLISHED_MODEL, *, source: str | Path | None = None,
                 token: str | None = None, endpoint: str | None = None, private: bool = False,
                 dry_run: bool = False) -> Deployment:
    """Assemble the Space, create its repo (sdk gradio) and upload every file in ONE commit.

    Files of an earlier deployment that the new one no longer has are deleted in the same commit,
    so the Space is exactly the assembled folder. ``dry_run`` assembles and lists, touching nothing.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_token

    check_hub_id(repo_id, "--repo-id")
    with tempfile.TemporaryDirectory(prefix="finsent-space-") as tmp:
        files = assemble_space(tmp, model, source)
        result = Deployment(repo_id, model, files)
        if dry_run:
            return result
        token = token or get_token()
        if not token:
            raise SpaceDeployError("no Hugging Face token: set HF_TOKEN (or run `hf auth login`) with write "
                                   f"access to {repo_id.split('/')[0]}")
        api = HfApi(endpoint=endpoint, token=token)
        repo = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        existing = api.list_repo_files(repo_id, repo_type="space")
        result.deleted = sorted(p for p in existing if p not in files and p != ".gitattributes")
        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(Path(tmp) / p)) for p in files]
        operations += [CommitOperationDelete(path_in_repo=p) for p in result.deleted]
        logger.info("uploading %d files to Space %s (%d stale files removed)", len(files), repo_id,
                    len(result.deleted))
        info = api.create_commit(repo_id, operations, repo_type="space",
                                 commit_message=f"Deploy the Llama-FinSent-S demo ({model})")
        result.commit, result.url = info.oid, str(repo)
    return result


def load_app(source: str | Path | None = None):
    """Import space/app.py as a module (it is a plain file, not part of the package)."""
    import importlib.util

    path = space_source(source) / "app.py"
    spec = importlib.util.spec_from_file_location("finsent_space_app", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- command line ------------------------------------------------------------------------------


def busy_port(host: str, port: int) -> ServeAddressError:
    return ServeAddressError(f"port {port} on {host} is already in use (another server, or an earlier "
                             f"`finsent space serve`?): stop it, or pass another port with --port")


def check_address(host: str, port: int) -> None:
    """Refuse, before the model loads, an address the server could not listen on (busy port, unknown host).

    Binds as uvicorn will (SO_REUSEADDR, so a port left in TIME_WAIT passes); a server that took the port
    since is caught at launch (``_serve``).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise ServeAddressError(f"cannot listen on --host {host!r}: {exc.strerror}: pass an address of this "
                                "machine (127.0.0.1, or 0.0.0.0 to share on a network)") from None
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise busy_port(host, port) from None
            raise ServeAddressError(f"cannot listen on {host}:{port}: {exc.strerror}: pass another --host or "
                                    "--port") from None


