"""Writers that run a command to the end never destroy what finsent did not create: prune replaces its own folder,
a failure mid-write keeps the old one, eval --overwrite replaces committed results."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from folders import hidden, snapshot

from finsent.build.pruning import run_prune
from finsent.cli import main
from finsent.core.outputs import MARKER
from finsent.core.recipes import PruneSection


def prune_cmd(model, out, *extra) -> list[str]:
    return ["prune", "--model", str(model), "--ratio", "0.4", "--out", str(out), "--no-progress", *extra]


# --- prune: the folder it writes -----------------------------------------------------------------


def test_prune_replaces_its_own_folder_without_overwrite(tiny_llama_dir, tmp_path):
    out = tmp_path / "pruned"
    assert main(prune_cmd(tiny_llama_dir, out)) == 0
    assert (out / MARKER).is_file()
    (out / "stale.txt").write_text("from an older run\n")
    assert main(["prune", "--model", str(tiny_llama_dir), "--ratio", "0.5", "--out", str(out), "--no-progress"]) == 0
    assert not (out / "stale.txt").exists()  # replaced whole, not merged into
    assert json.loads((out / "pruning.json").read_text())["intermediate_after"] == 64
    assert hidden(tmp_path) == []


def test_a_failure_mid_write_leaves_the_old_folder_and_no_temporary_sibling(tiny_llama_dir, tmp_path, monkeypatch):
    import finsent.build.pruning

    out = run_prune(PruneSection(ratio=0.4), str(tiny_llama_dir), tmp_path / "pruned", progress=False)
    before = snapshot(out)

    def disk_full(report, path):
        (path.parent / "half-written.bin").write_bytes(b"\0" * 10)
        raise OSError("No space left on device")

    monkeypatch.setattr(finsent.build.pruning, "_plot", disk_full)  # fails after the weights are saved
    with pytest.raises(OSError, match="No space left"):
        run_prune(PruneSection(ratio=0.5), str(tiny_llama_dir), tmp_path / "pruned", progress=False)
    assert snapshot(out) == before
    with pytest.raises(OSError, match="No space left"):
        run_prune(PruneSection(ratio=0.5), str(tiny_llama_dir), tmp_path / "fresh", progress=False)
    assert not (tmp_path / "fresh").exists()
    assert hidden(tmp_path) == []


# --- release: names, inputs, the folder it replaces ----------------------------------------------


# --- eval: committed results and duplicate benchmarks -----------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo, check=True,
                   capture_output=True)


def test_eval_with_overwrite_replaces_committed_results(tiny_llama_dir, tmp_path, tweets_csv, monkeypatch):
    repo = tmp_path / "repo"
    results = repo / "eval" / "results" / tiny_llama_dir.name
    results.mkdir(parents=True)
    (results / "old.json").write_text('{"n": 2388}\n')
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "results")
    monkeypatch.chdir(repo)
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"tfns:{tweets_csv}", "--overwrite"]) == 0
    assert sorted(p.name for p in results.iterdir()) == [MARKER, "summary.md", "tfns-3-score.json", "tfns-3-score.png",
                                                        "tfns-3-score.predictions.jsonl"]
    assert json.loads((results / "tfns-3-score.json").read_text())["n"] == 4


# --- release fingerprints: code and library versions; stamps ---------------------------------------
