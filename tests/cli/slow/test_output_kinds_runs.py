"""A command replaces only its own kind of folder, and the next GGUF export removes what a killed one left (real
commands on the tiny random Llama)."""

from __future__ import annotations

import subprocess
import sys

from checkout import REPO
from folders import one_error_line, snapshot

from finsent.cli import main
from finsent.core.outputs import MARKER, read_marker

HEADLINES = REPO / "data" / "finsent-headlines" / "test.jsonl"


def test_a_command_replaces_only_its_own_kind(rel, tiny_llama_dir, tmp_path, capsys):
    before = snapshot(rel)
    assert main(["prune", "--model", str(tiny_llama_dir), "--ratio", "0.1", "--out", str(rel), "--no-progress"]) == 2
    err = one_error_line(capsys.readouterr().err, "prune")
    assert f"{rel} is a finsent release folder, not a pruned model folder: pass --overwrite" in err
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"finsent:{HEADLINES}", "--limit", "4",
                 "--out", str(rel)]) == 2
    assert "is a finsent release folder, not an eval folder" in one_error_line(capsys.readouterr().err, "eval")
    assert snapshot(rel) == before

    # Its own kind: a second prune replaces the first without --overwrite.
    out = tmp_path / "pruned"
    for _ in range(2):
        assert main(["prune", "--model", str(tiny_llama_dir), "--ratio", "0.1", "--out", str(out),
                     "--no-progress"]) == 0
    assert read_marker(out)["kind"] == "pruned"
    capsys.readouterr()
    # An older finsent's marker names no kind: refused too, since nothing says what the folder is.
    (out / MARKER).write_text("{}")
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"finsent:{HEADLINES}", "--limit", "4",
                 "--out", str(out)]) == 2
    assert "of unrecorded kind" in one_error_line(capsys.readouterr().err, "eval")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_gguf_export_removes_what_a_killed_one_left(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "m.gguf"
    killed = [tmp_path / ".m.gguf.tmp-k2j4x9", tmp_path / f".m.gguf.tmp-{_dead_pid()}-a81b"]
    killed.append(tmp_path / f"{killed[1].name}.f16")
    live = tmp_path / ".m.gguf.tmp-1-zz"  # pid 1 is alive: another writer at work
    for path in [*killed, live]:
        path.write_bytes(b"half a GGUF")
    other = tmp_path / ".other.gguf.tmp-k2j4x9"  # another target's: not this writer's to remove
    other.write_bytes(b"x")
    assert main(["export", str(tiny_llama_dir), "--format", "gguf", "--quant", "f16", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"GGUF"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live.name, other.name])
