"""Where a result came from: the CPU, its vector and matrix extensions, and the code's commit.

Every results JSON the toolkit and its benchmarks write records these (speed, exports, runtimes, accuracy runs),
so a figure names the machine it was measured on and the code that can rebuild it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from finsent.core.paths import REPO_ROOT as REPO


def _cpuinfo_field(name: str) -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.split(":", 1)[0].strip() == name)
    except (OSError, StopIteration):
        return None


def cpu_name() -> str:
    """``CPU <model name> (family F, model M), <n> cores`` (Linux's /proc/cpuinfo; elsewhere what ``platform``
    knows). Virtual machines often name only the brand ("AMD EPYC"): the family tells the generations apart
    (AMD's 25 is Zen 3 or Zen 4, 26 is Zen 5), and their speeds differ."""
    name = _cpuinfo_field("model name") or platform.processor() or platform.machine()
    family, model = _cpuinfo_field("cpu family"), _cpuinfo_field("model")
    if family and model:
        name += f" (family {family}, model {model})"
    return f"CPU {name}, {os.cpu_count()} cores"


def cpu_flags() -> list[str]:
    """The CPU's vector and matrix extensions that decide the kernels (AVX2, AVX-512 BF16 / VNNI, AMX, FMA)."""
    flags = (_cpuinfo_field("flags") or "").split()
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))


def git_commit() -> str | None:
    """HEAD of the finsent checkout, with ``+dirty`` when tracked files differ from it (the result is then not
    rebuildable from the commit alone); None for an installed package, which has no checkout."""
    if not (REPO / ".git").exists():
        return None

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=30,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "") if head else None


HASH_BLOCK = 1 << 22  # bytes read at a time: 4 MiB


def file_sha256(path) -> str | None:
    """SHA-256 (hex) of a local file's bytes, read in ``HASH_BLOCK`` pieces; None when ``path`` names no file (a
    Hub id, a dataset name). The one file hash of the toolkit: results, stamps, exports and the push compare them."""
    path = Path(path)
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def source_hash(root) -> str:
    """SHA-256 (hex) of the ``.py`` files under ``root``, relative names and bytes in name order: the code that
    built something (``finsent release``'s stage fingerprints, a model soup's members)."""
    root = Path(root)
    digest = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        digest.update(f.relative_to(root).as_posix().encode() + b"\0")
        digest.update(f.read_bytes() + b"\0")
    return digest.hexdigest()


def library_versions(names) -> dict[str, str | None]:
    """``{distribution: installed version}`` for each name (None: not installed): the libraries a result depends on."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions
