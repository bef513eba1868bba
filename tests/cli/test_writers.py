"""Writers never destroy what finsent did not create (prune, finetune, merge, eval, release). Real folders, real
CLI, tiny random models; the release's stage fingerprints are in tests/release/test_release_stamps.py."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from folders import hidden, one_error_line, snapshot, user_folder

from finsent.cli import main
from finsent.core.outputs import MARKER, OutputError, write_marker
from finsent.core.recipes import EvalBenchmark, Recipe
from finsent.evaluation.runs import EvalError, check_runs, run_eval
from finsent.release import Release


def prune_cmd(model, out, *extra) -> list[str]:
    return ["prune", "--model", str(model), "--ratio", "0.4", "--out", str(out), "--no-progress", *extra]


# --- prune: the folder it writes -----------------------------------------------------------------


def test_prune_out_dot_keeps_the_users_file(tiny_llama_dir, tmp_path, monkeypatch, capsys):
    work = tmp_path / "project"
    work.mkdir()
    (work / "thesis.tex").write_text("years of work\n")
    monkeypatch.chdir(work)
    assert main(prune_cmd(tiny_llama_dir, ".")) == 2
    err = one_error_line(capsys.readouterr().err, "prune")
    assert "is the current folder" in err and "nothing was written" in err
    assert snapshot(work) == {"thesis.tex": b"years of work\n"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no temporary sibling either


def test_prune_refuses_a_user_folder_keeps_it_and_replaces_it_with_overwrite(tiny_llama_dir, tmp_path, capsys):
    out = user_folder(tmp_path / "mine")
    before = snapshot(out)
    assert main(prune_cmd(tiny_llama_dir, out)) == 2
    err = one_error_line(capsys.readouterr().err, "prune")
    assert f"{out} already holds files that finsent did not write" in err and "--overwrite" in err
    assert snapshot(out) == before

    assert main(prune_cmd(tiny_llama_dir, out, "--overwrite")) == 0
    assert f"saved {out}" in capsys.readouterr().out
    names = set(snapshot(out))
    assert {"pruning.json", "model.safetensors", "config.json", MARKER} <= names
    assert "notes.txt" not in names and "data/rows.csv" not in names
    assert json.loads((out / "pruning.json").read_text())["intermediate_after"] == 77  # 128 - int(51.2)
    assert hidden(tmp_path) == []


def test_an_eval_failure_mid_run_leaves_the_previous_results(tiny_llama_dir, tmp_path, tweets_csv, monkeypatch):
    import finsent.evaluation.runs
    from finsent.core.classify import FinSentClassifier

    clf = FinSentClassifier.from_pretrained(str(tiny_llama_dir))
    out = tmp_path / "eval"
    bench = [EvalBenchmark("tfns", str(tweets_csv))]
    run_eval(tiny_llama_dir, bench, ["score"], out, classifier=clf, progress=False)
    before = snapshot(out)
    assert set(before) == {"tfns-3-score.json", "tfns-3-score.png", "tfns-3-score.predictions.jsonl", MARKER}

    def broken_plot(result, path):
        raise RuntimeError("plot backend crashed")

    monkeypatch.setattr(finsent.evaluation.runs, "plot_confusion", broken_plot)
    with pytest.raises(RuntimeError, match="plot backend crashed"):
        run_eval(tiny_llama_dir, bench, ["score", "generate"], out, classifier=clf, progress=False)
    assert snapshot(out) == before
    assert hidden(tmp_path) == []


def test_out_pointing_at_a_file_is_a_clear_error(tiny_llama_dir, tmp_path, tweets_csv, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    assert main(prune_cmd(tiny_llama_dir, target)) == 2
    assert f"{target} is a file, not a folder" in one_error_line(capsys.readouterr().err, "prune")
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"tfns:{tweets_csv}", "--out",
                 str(target)]) == 2
    assert f"{target} is a file, not a folder" in one_error_line(capsys.readouterr().err, "eval")
    assert target.read_text() == "keep me\n"
    for inside in (target / "sub", target / "a" / "b"):  # refused before the model loads, not after the work
        assert main(prune_cmd(tmp_path / "no-such-model", inside)) == 2
        assert f"{inside} cannot be created: {target} is a file, not a folder" in one_error_line(
            capsys.readouterr().err, "prune")
    assert target.read_text() == "keep me\n"


def test_finetune_and_merge_refuse_a_user_folder_before_loading_anything(tmp_path, capsys):
    out = user_folder(tmp_path / "mine")
    before = snapshot(out)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\n")
    missing_base = tmp_path / "no-model"  # loading it would fail differently: the folder check comes first
    assert main(["finetune", "--recipe", str(recipe), "--base", str(missing_base), "--out", str(out)]) == 2
    err = one_error_line(capsys.readouterr().err, "finetune")
    assert "already holds files that finsent did not write" in err and "--overwrite" in err

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    assert main(["merge", "--base", str(missing_base), "--adapter", str(adapter), "--out", str(out)]) == 2
    err = one_error_line(capsys.readouterr().err, "merge")
    assert "already holds files that finsent did not write" in err
    assert snapshot(out) == before
    assert main(["merge", "--base", str(missing_base), "--adapter", str(tmp_path / "none"), "--out",
                 str(tmp_path / "m")]) == 2
    assert "is not a LoRA adapter folder" in one_error_line(capsys.readouterr().err, "merge")
    assert not (tmp_path / "m").exists() and hidden(tmp_path) == []


# --- release: names, inputs, the folder it replaces ----------------------------------------------


@pytest.mark.parametrize("name", ["", "..", "../..", "a/b", ".hidden"])
def test_release_with_a_bad_name_creates_nothing(name, tmp_path, monkeypatch, capsys):
    recipe = Recipe(name="ok")
    recipe.name = name
    with pytest.raises(OutputError, match="recipe name"):
        Release(recipe, tmp_path / "runs", tmp_path / "releases")
    assert list(tmp_path.iterdir()) == []

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "bad.yaml").write_text(f"name: {json.dumps(name)}\n")
    monkeypatch.chdir(repo)
    for stage in ("prune", "merge"):
        assert main(["release", "bad.yaml", "--only", stage]) == 2
        err = one_error_line(capsys.readouterr().err, "release")
        assert repr(name) in err and "folder name" in err
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["repo", "repo/bad.yaml"]


def test_release_refuses_folders_that_are_files_or_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(OutputError, match="runs folder .* is a file"):
        Release(Recipe(name="demo"), tmp_path / "runs", tmp_path / "releases")
    inner = tmp_path / "releases" / "demo"
    inner.mkdir(parents=True)
    monkeypatch.chdir(inner)
    with pytest.raises(OutputError, match="release folder .* is the current folder"):
        Release(Recipe(name="demo"), tmp_path / "r", Path(".."))
    assert Release(Recipe(name="demo"), tmp_path / "r", tmp_path / "rel", overwrite=True).overwrite is True


def test_only_merge_with_missing_inputs_leaves_the_release_untouched(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("demo.yaml").write_text("name: demo\nmerge: {dtype: float32}\n")
    release = Path("releases/demo")
    (release / "eval").mkdir(parents=True)
    write_marker(release, "release")  # a release finsent built: replaceable, but only by a merge that can run
    (release / "model.safetensors").write_bytes(b"weights of the last good release")
    (release / "README.md").write_text("# card\n")
    (release / "eval" / "tfns-3-score.json").write_text('{"n": 2388}\n')
    before = snapshot(release)

    assert main(["release", "demo.yaml", "--only", "merge"]) == 2
    assert "no adapter at runs/demo/adapter" in one_error_line(capsys.readouterr().err, "release")
    assert snapshot(release) == before

    adapter = Path("runs/demo/adapter")
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    assert main(["release", "demo.yaml", "--only", "merge"]) == 2  # the pruned base is missing too
    assert "no pruned model at runs/demo/pruned" in one_error_line(capsys.readouterr().err, "release")
    assert snapshot(release) == before
    assert hidden(Path("releases")) == []


def test_release_merge_refuses_a_release_folder_finsent_did_not_write(tmp_path):
    release = Release(Recipe(name="demo"), tmp_path / "runs", tmp_path / "releases")
    (release.pruned_dir).mkdir(parents=True)
    (release.pruned_dir / "config.json").write_text("{}")
    release.adapter_dir.mkdir(parents=True)
    (release.adapter_dir / "adapter_config.json").write_text("{}")
    user_folder(release.release_dir)
    before = snapshot(release.release_dir)
    with pytest.raises(OutputError, match="release folder .* already holds files that finsent did not write"):
        release.merge()
    assert snapshot(release.release_dir) == before


# --- eval: committed results and duplicate benchmarks -----------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.mark.parametrize("with_marker", [False, True], ids=["plain", "written-by-finsent"])
def test_eval_without_out_refuses_a_tracked_results_folder(with_marker, tiny_llama_dir, tmp_path, tweets_csv,
                                                           monkeypatch, capsys):
    repo = tmp_path / "repo"
    results = repo / "eval" / "results" / tiny_llama_dir.name  # the default folder for --model <that folder>
    results.mkdir(parents=True)
    (results / "tfns-3-score.json").write_text('{"n": 2388}\n')
    if with_marker:  # even a folder finsent wrote is refused once its results are committed
        write_marker(results, "eval")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "results")
    before = snapshot(results)
    monkeypatch.chdir(repo)
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"tfns:{tweets_csv}"]) == 2
    err = one_error_line(capsys.readouterr().err, "eval")
    assert f"eval/results/{tiny_llama_dir.name}" in err and "--out DIR" in err and "--overwrite" in err
    if with_marker:
        assert "holds 2 file(s) committed to git" in err  # the result and the marker
    assert snapshot(results) == before
    assert sorted(p.name for p in (repo / "eval" / "results").iterdir()) == [tiny_llama_dir.name]


def test_the_same_benchmark_twice_is_an_error_naming_both(tiny_llama_dir, tmp_path, tweets_csv, capsys):
    other = tmp_path / "other.csv"
    other.write_bytes(tweets_csv.read_bytes())
    out = tmp_path / "out"
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"tfns:{tweets_csv}", "--benchmark",
                 f"tfns:{other}", "--out", str(out)]) == 2
    err = one_error_line(capsys.readouterr().err, "eval")
    assert f"benchmark tfns (3 classes) is given twice (tfns:{tweets_csv} and tfns:{other})" in err
    assert "tfns-3-<mode>.json" in err
    assert not out.exists()
    with pytest.raises(EvalError, match=r"finsent \(3 classes\) is given twice \(finsent "
                                        r"\(data/finsent-headlines/test.jsonl\) and finsent"):  # a file, not the Hub
        check_runs([EvalBenchmark("finsent", None, "3"), EvalBenchmark("finsent", None, "3")], ["score"])
    check_runs([EvalBenchmark("finsent", None, "3"), EvalBenchmark("finsent", None, "7")], ["score", "generate"])


# --- release fingerprints: code and library versions; stamps ---------------------------------------


def test_output_folders_get_ordinary_modes(tmp_path):
    import os

    from finsent.core.outputs import output_dir

    with output_dir(tmp_path / "out", kind="eval") as tmp:
        (tmp / "model.safetensors").write_bytes(b"x")
        (tmp / "model.safetensors").chmod(0o600)  # as transformers' saving leaves it
        (tmp / "sub").mkdir(mode=0o700)
    mask = os.umask(0o022)
    os.umask(mask)
    assert (tmp_path / "out" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~mask
    assert (tmp_path / "out" / "sub").stat().st_mode & 0o777 == 0o777 & ~mask
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~mask
