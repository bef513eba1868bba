"""Output folders and files that never destroy what the toolkit did not create.

Every writer of a folder (a pruned model, an adapter, a release, an eval run) goes through
``output_dir``: the content is written into a temporary sibling and renamed into place only when
complete, so a crash leaves the old folder untouched. A folder the toolkit wrote carries a marker
file (``MARKER``) naming its kind (``KINDS``). Without ``overwrite=True`` (``--overwrite``) a writer
replaces only a folder of its own kind: a folder without a marker, one of another kind, or one
holding files tracked by git (committed results) is refused. Never replaced, whatever the flags:
the current directory, its parents, the home folder, the filesystem root, and the model folder the
command reads (``reads``).
Single files go through ``write_text_atomic`` (temporary sibling + ``os.replace``). Temporary
siblings carry the writer's process id, so the next writer of the same target removes those left by
a killed process (``sweep_temporaries``).
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
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

from finsent.core.errors import UsageError

MARKER = ".finsent-output.json"
# The kinds of folder finsent writes, as messages name them. A command replaces only its own kind.
KINDS = {
    "release": "release folder",  # a merged model: `finsent merge`, the release's merge stage
    "pruned": "pruned model folder",  # `finsent prune`, the release's prune stage
    "finetune": "fine-tuning output folder",  # `finsent finetune`: an adapter, or a whole model (full)
    "checkpoints": "training checkpoint folder",
    "eval": "eval folder",  # `finsent eval`, the release's eval stage
    "onnx": "ONNX export folder",
    "run": "run folder",  # runs/<recipe-name>: the release's working folders
    "cache": "cache folder",
}
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


def read_marker(path: Path) -> dict | None:
    """The marker of a folder finsent wrote ({} when unreadable), or None when it has none."""
    marker = Path(path) / MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_marker(folder: Path, kind: str, **fields) -> None:
    """Mark ``folder`` as finsent's output of ``kind`` (plus ``fields``, e.g. the hashes of files written later)."""
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    data = {"written_by": "finsent", "kind": kind, "time": time.time(), **fields}
    write_text_atomic(Path(folder) / MARKER, json.dumps(data, sort_keys=True) + "\n")


def record_written_file(folder: Path, name: str) -> None:
    """Note in ``folder``'s marker the SHA-256 of ``folder/name`` as finsent just wrote it, so a later writer can
    tell a hand edit (``edited_by_hand``). A folder without a marker (not finsent's) records nothing."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None:
        return
    marker.setdefault("files", {})[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    write_text_atomic(folder / MARKER, json.dumps(marker, sort_keys=True) + "\n")


def edited_by_hand(folder: Path, name: str) -> bool:
    """Whether ``folder/name`` exists and differs from what finsent last wrote there (or was never written by it)."""
    path = Path(folder) / name
    if not path.is_file():
        return False
    recorded = ((read_marker(folder) or {}).get("files") or {}).get(name)
    return recorded != hashlib.sha256(path.read_bytes()).hexdigest()


def upload_files(folder: Path, skip=lambda rel: False) -> list[Path]:
    """The files of ``folder`` that may be uploaded, sorted: regular files that live inside it.

    The one rule of every uploader (``finsent push``, the Space deploy): the walk never follows links, and a
    link (to a file or a folder, inside or outside), a FIFO or a device anywhere in ``folder`` is refused with
    an OutputError naming it, before anything is sent. ``skip(rel)`` drops release-relative paths (hidden
    files, local bookkeeping) from the list and from the check.
    """
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise OutputError(f"{folder} is not a folder (a link to one is not followed): nothing was uploaded")
    files, refused = [], []
    for root, dirs, names in os.walk(folder, followlinks=False):
        for name in sorted(dirs + names):
            path = Path(root) / name
            rel = path.relative_to(folder).as_posix()
            if skip(rel):
                if name in dirs:
                    dirs.remove(name)
                continue
            if path.is_symlink():
                refused.append(f"{rel} -> {os.readlink(path)}")
            elif name in names:
                if path.is_file():  # not a link (checked above): a regular file
                    files.append(path)
                else:
                    refused.append(f"{rel} (not a regular file)")
    if refused:
        raise OutputError(f"{folder} holds {len(refused)} link(s) or special file(s), which are never uploaded: "
                          f"{', '.join(refused[:5])}{' ...' if len(refused) > 5 else ''}: replace each with the "
                          "file itself or remove it (nothing was uploaded)")
    return sorted(files)


def _reads_refusal(path: Path, resolved: Path, reads, what: str) -> str | None:
    """Why ``path`` may not be written by a command that reads ``reads`` (local folders or files), or None."""
    for source in reads:
        if source is None or str(source) == "" or not Path(source).expanduser().exists():
            continue  # a Hub id or a name: nothing local to protect
        source_path = Path(source).expanduser().resolve()
        if resolved == source_path or resolved in source_path.parents:
            return (f"{what} {path} is, or holds, {source}, which this command reads: "
                    "write to another folder (nothing was written)")
    return None


def _kind_refusal(path: Path, kind: str, what: str) -> str | None:
    """Why the existing, non-empty folder ``path`` is not finsent's output of ``kind``, or None."""
    marker = read_marker(path)
    if marker is None:
        return (f"{what} {path} already holds files that finsent did not write: "
                "pass --overwrite to replace it, or choose another folder")
    found = marker.get("kind")
    if found == kind:
        return None
    name = KINDS.get(found) if isinstance(found, str) else None
    was = f"a finsent {name}" if name else "a finsent folder of unrecorded kind (an older version wrote it)"
    wanted = KINDS[kind]
    article = "an" if wanted[0].lower() in "aeiou" else "a"
    return (f"{what} {path} is {was}, not {article} {wanted}: pass --overwrite to replace it, "
            "or choose another folder (nothing was written)")


def tracked_files(path: Path) -> list[str]:
    """Files under ``path`` that git tracks (committed results); [] outside a git work tree."""
    path = Path(path)
    try:
        out = subprocess.run(["git", "ls-files", "--", path.name], cwd=path.parent, capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def check_output_dir(path, *, kind: str, overwrite: bool = False, what: str | None = None, reads=()) -> Path:
    """Validate ``path`` as a folder of ``kind`` to (re)write; raise OutputError before anything is touched.

    ``reads``: the local paths (or Hub ids, ignored) the command reads; ``path`` may be neither one of them
    nor a folder holding one, even with ``overwrite``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown output kind {kind!r}")
    what = what or KINDS[kind]
    path = Path(path).expanduser()
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    protected = {cwd, *cwd.parents, Path.home().resolve(), Path(resolved.anchor)}
    if resolved in protected:
        raise OutputError(f"{what} {path} is the current folder, one of its parents or your home folder: "
                          "name a new folder instead (nothing was written)")
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder (nothing was written)")
    refusal = _reads_refusal(path, resolved, reads, what)
    if refusal:
        raise OutputError(refusal)
    # The folder is created beside its parent: the nearest existing ancestor must be a writable folder.
    ancestor = next(p for p in (path.absolute().parent, *path.absolute().parent.parents) if p.exists())
    if not ancestor.is_dir():
        raise OutputError(f"{what} {path} cannot be created: {ancestor} is a file, not a folder (nothing was written)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path} cannot be created: {ancestor} is not writable (nothing was written)")
    if path.is_dir() and not overwrite:
        refusal = _kind_refusal(path, kind, what) if any(path.iterdir()) else None
        if refusal:
            raise OutputError(refusal)
        tracked = tracked_files(path)
        if tracked:
            raise OutputError(f"{what} {path} holds {len(tracked)} file(s) committed to git ({tracked[0]}...): "
                              "pass --overwrite to replace committed results, or choose another folder")
    return path


def check_report_files(folder, names: tuple[str, ...], ours, *, overwrite: bool = False, reads=(),
                       what: str = "output folder") -> Path:
    """Validate ``folder`` as a place to add the report files ``names`` to (other files there are left alone).

    Never a file, nor what the command reads (or a folder holding it), even with ``overwrite``. Without it, when
    one of ``names`` exists, ``ours(folder)`` must say the report there is finsent's own of this kind (a
    same-named file of someone else's is never replaced). Raises OutputError before anything is touched.
    """
    path = Path(folder).expanduser()
    if path.exists() and not path.is_dir():
        raise OutputError(f"{what} {path} is a file, not a folder (nothing was written)")
    refusal = _reads_refusal(path, path.resolve(), reads, what)
    if refusal:
        raise OutputError(refusal)
    existing = [name for name in names if (path / name).exists()]
    if existing and not overwrite and not ours(path):
        raise OutputError(f"{what} {path} holds {', '.join(existing)} that finsent did not write: pass --overwrite "
                          "to replace them, or choose another folder (nothing was written)")
    return path


@contextmanager
def output_dir(path, *, kind: str, overwrite: bool = False, what: str | None = None, reads=()) -> Iterator[Path]:
    """Yield an empty temporary sibling of ``path``; on success it replaces ``path`` in one rename.

    The checks of ``check_output_dir`` run before the work and again before the swap (a folder may
    have appeared meanwhile). On an exception the temporary folder is removed and ``path`` is as it was.
    The finished folder's marker records ``kind``.
    """
    target = check_output_dir(path, kind=kind, overwrite=overwrite, what=what, reads=reads)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        sweep_temporaries(target)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=temporary_prefix(target)))
    except OSError as exc:  # e.g. a read-only or virtual filesystem that access() did not reveal
        what = what or KINDS[kind]
        raise OutputError(f"{what} {path} cannot be created ({exc.strerror or exc}; nothing was written)") from None
    try:
        yield tmp
        write_marker(tmp, kind)
        _ordinary_modes(tmp)
        check_output_dir(target, kind=kind, overwrite=overwrite, what=what, reads=reads)
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def temporary_prefix(target: Path) -> str:
    """The name start of a temporary sibling of ``target``: hidden, and tagged with this process's id."""
    return f".{Path(target).name}.tmp-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_temporaries(target: Path) -> list[Path]:
    """Remove the temporary siblings of ``target`` whose writer is gone (killed mid-write); return them.

    A sibling tagged with a live process id is another writer at work and stays. An untagged one
    (``.NAME.tmp-XXXX``, the naming before process ids) has no owner to ask and is removed.
    """
    target = Path(target)
    removed = []
    start = f".{target.name}.tmp-"
    for path in target.parent.glob(f"{glob.escape(start)}*") if target.parent.is_dir() else []:
        pid = re.match(r"(\d+)-", path.name[len(start):])
        if pid and (int(pid.group(1)) == os.getpid() or _alive(int(pid.group(1)))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def temporary_file(target: Path, suffix: str = "") -> str:
    """A new, empty temporary sibling file of ``target`` (stale ones swept first); the caller renames or removes it."""
    target = Path(target)
    sweep_temporaries(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=temporary_prefix(target), suffix=suffix)
    os.close(fd)
    return tmp


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
    tmp = temporary_file(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# Files of a release folder that are never published: per-row predictions carry the benchmarks' gold
# labels (the benchmarks' data, not ours).
EXCLUDE = ("*.predictions.jsonl",)


def excluded(rel: str) -> bool:
    """Whether a release-relative path is never published (hidden, or matching ``EXCLUDE``)."""
    parts = rel.split("/")
    return any(part.startswith(".") for part in parts) or any(fnmatch.fnmatch(parts[-1], p) for p in EXCLUDE)


def release_files(release_dir: Path) -> list[Path]:
    """Every file that is published, sorted: the regular files inside the folder (``outputs.upload_files``: a link
    is refused, never followed); hidden files and folders (.cache, .git...) and ``EXCLUDE`` are not published."""
    return upload_files(Path(release_dir), skip=excluded)
