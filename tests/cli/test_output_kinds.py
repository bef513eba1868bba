"""A command replaces only its own kind of folder, never the model folder it reads; a hand-edited card survives;
a refused stage keeps its stamp; a killed writer's temporary file is removed by the next one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from checkout import REPO
from folders import one_error_line, snapshot

from finsent.cli import main
from finsent.core.outputs import OutputError, sweep_temporaries, write_marker
from finsent.core.recipes import Recipe
from finsent.release import Release

HEADLINES = REPO / "data" / "finsent-headlines" / "test.jsonl"


def test_eval_into_the_release_it_reads_is_refused_and_the_release_kept(rel, capsys):
    before = snapshot(rel)
    argv = ["eval", "--model", str(rel), "--benchmark", f"finsent:{HEADLINES}", "--limit", "4", "--out", str(rel)]
    assert main(argv) == 2
    err = one_error_line(capsys.readouterr().err, "eval")
    assert "which this command reads" in err and str(rel) in err
    assert main([*argv, "--overwrite"]) == 2  # never, even with --overwrite
    capsys.readouterr()
    assert snapshot(rel) == before


def test_prune_into_the_release_it_reads_is_refused(rel, capsys):
    before = snapshot(rel)
    assert main(["prune", "--model", str(rel), "--ratio", "0.1", "--out", str(rel), "--no-progress"]) == 2
    assert "which this command reads" in one_error_line(capsys.readouterr().err, "prune")
    assert snapshot(rel) == before


def test_a_hand_edited_card_is_kept_unless_overwrite(rel, capsys):
    assert main(["card", str(rel)]) == 0
    capsys.readouterr()
    card = (rel / "README.md").read_text()
    assert main(["card", str(rel)]) == 0  # finsent's own card: rendered again without a word
    capsys.readouterr()
    edited = card + "\n## Maintainer's note\nAdded by hand.\n"
    (rel / "README.md").write_text(edited)
    assert main(["card", str(rel)]) == 2
    err = one_error_line(capsys.readouterr().err, "card")
    assert "README.md is not the card finsent wrote" in err and "--overwrite" in err
    assert (rel / "README.md").read_text() == edited
    assert main(["card", str(rel), "--overwrite"]) == 0
    assert (rel / "README.md").read_text() == card


def test_a_refused_stage_keeps_its_stamp(tmp_path, tiny_llama_dir):
    recipe = Recipe(name="demo")
    recipe.finetune.enabled = False
    release = Release(recipe, tmp_path / "runs", tmp_path / "releases")
    shutil.copytree(tiny_llama_dir, release.pruned_dir)
    write_marker(release.pruned_dir, "pruned")
    release.release_dir.mkdir(parents=True)
    (release.release_dir / "notes.txt").write_text("a folder finsent did not write\n")
    release.mark_done("merge", "the fingerprint of the last merge")
    stamp = (release.stamps / "merge.json").read_bytes()
    with pytest.raises(OutputError, match="already holds files that finsent did not write"):
        release.run(only="merge")
    assert (release.stamps / "merge.json").read_bytes() == stamp
    assert sorted(p.name for p in release.release_dir.iterdir()) == ["notes.txt"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sweep_removes_stale_temporary_folders_and_keeps_its_own(tmp_path):
    target = tmp_path / "out"
    stale = tmp_path / f".out.tmp-{_dead_pid()}-x"
    (stale / "sub").mkdir(parents=True)
    mine = tmp_path / f".out.tmp-{os.getpid()}-y"
    mine.mkdir()
    assert sweep_temporaries(target) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [mine.name]
