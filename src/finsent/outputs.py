"""Output folders and files that never destroy what the toolkit did not create.

Every writer of a folder (a pruned model, an adapter, a release, an eval run) goes through
``output_dir``: the content is written into a temporary sibling and renamed into place only when
complete, so a crash leaves the old folder untouched. A folder the toolkit wrote carries a marker
file (``MARKER``); an existing folder without it, or one holding files tracked by git (committed
results), is replaced only when the caller passes ``overwrite=True`` (``--overwrite``). The current
directory, its parents, the home folder and the filesystem root are never replaced.
Single files go through ``write_text_atomic`` (temporary sibling + ``os.replace``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UsageError

MARKER = ".finsent-output.json"
# A release, run or benchmark name becomes a folder name: letters, digits, '.', '_' and '-', no leading
# dot (hidden / '..'), at most 96 characters (the Hub's repo-name limit).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


class OutputError(UsageError):
    """An output path the toolkit refuses to write (it would replace someone else's files)."""


def check_name(name, what: str = "name") -> str:
    """``name`` if it is safe as one folder name, else OutputError naming the rule."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name) or ".." in name:
        raise OutputError(f"{what} {name!r} is not a safe folder name: use letters, digits, '.', '_' and '-' "
                          "(starting with a letter or digit, no '..', at most 96 characters)")
    return name


def is_toolkit_output(path: Path) -> bool:
    return (Path(path) / MARKER).is_file()


def tracked_files(path: Path) -> list[str]:
    """Files under ``path`` that git tracks (committed results); [] outside a git work tree."""
    path = Path(path)
    try:
        out = subprocess.run(["git", "ls-files", "--", path.name], cwd=path.parent, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def check_output_dir(path, *, overwrite: bool = False, what: str = "output folder") -> Path:
    """Validate ``path`` as a folder to (re)write; raise OutputError before anything is touched."""
    path = Path(path).expanduser()
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    protected = {cwd, *cwd.parents, Path.home().resolve(), Path(resolved.anchor)}
    if resolved in protected:
        raise OutputError(f"{what} {path} is the current folder, one of its parents or your home folder: "
                          "name a new folder instead (nothing was written)")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder (nothing was written)")
    # The folder is created beside its parent: the nearest existing ancestor must be a writable folder.
    ancestor = next(p for p in (path.absolute().parent, *path.absolute().parent.parents) if p.exists())
    if not ancestor.is_dir():
        raise OutputError(f"{what} {path} cannot be created: {ancestor} is a file, not a folder (nothing was written)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path} cannot be created: {ancestor} is not writable (nothing was written)")
    if path.is_dir() and not overwrite:
        if any(path.iterdir()) and not is_toolkit_output(path):
            raise OutputError(f"{what} {path} already holds files that finsent did not write: "
                              "pass --overwrite to replace it, or choose another folder")
        tracked = tracked_files(path)
        if tracked:
            raise OutputError(f"{what} {path} holds {len(tracked)} file(s) committed to git ({tracked[0]}...): "
                              "pass --overwrite to replace committed results, or choose another folder")
    return path


@contextmanager
def output_dir(path, *, overwrite: bool = False, what: str = "output folder") -> Iterator[Path]:
    """Yield an empty temporary sibling of ``path``; on success it replaces ``path`` in one rename.

    The checks of ``check_output_dir`` run before the work and again before the swap (a folder may
    have appeared meanwhile). On an exception the temporary folder is removed and ``path`` is as it was.
    """
    target = check_output_dir(path, overwrite=overwrite, what=what)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    except OSError as exc:  # e.g. a read-only or virtual filesystem that access() did not reveal
        raise OutputError(f"{what} {path} cannot be created ({exc.strerror or exc}; nothing was written)") from None
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"written_by": "finsent", "time": time.time()}) + "\n")
        _ordinary_modes(tmp)
        check_output_dir(target, overwrite=overwrite, what=what)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ordinary_modes(folder: Path) -> None:
    """Give the folder and everything in it the modes a plain ``mkdir`` / ``open`` would (the umask's): mkdtemp
    makes the folder private, and some writers (transformers' safetensors saving) leave files 0600."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            executable = path.is_dir() or path.stat().st_mode & 0o100
            path.chmod((0o777 if executable else 0o666) & ~mask)


def replace_dir(src: Path, target: Path) -> None:
    """Move the finished folder ``src`` to ``target``; an old ``target`` is moved aside first, then deleted."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        target.rename(old)
    try:
        src.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)  # put the previous folder back: never leave neither
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text_atomic(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary sibling and ``os.replace``."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not a file (nothing was written)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
