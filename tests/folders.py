"""Helpers of the tests that check what a command leaves on disk: snapshots, user folders, one-line errors."""

from __future__ import annotations

from pathlib import Path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file below ``folder`` (relative name -> bytes): equal snapshots mean nothing was touched."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def hidden(folder: Path) -> list[str]:
    """Temporary siblings (.NAME.tmp-*, .NAME.old-*) left in ``folder``."""
    return sorted(p.name for p in Path(folder).iterdir() if p.name.startswith("."))


def user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("my notes\n")
    (path / "data").mkdir()
    (path / "data" / "rows.csv").write_bytes(b"text,label\nx,1\n")
    return path


def one_error_line(err: str, command: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err  # one line, no traceback
    assert err.startswith(f"finsent {command}: error: "), err
    return err
