"""Writers never destroy what finsent did not create (prune, finetune, merge, eval, release), and release
stage fingerprints cover the code and library versions. Real folders, real CLI, tiny random models."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from folders import hidden, one_error_line, snapshot, user_folder

from finsent import release as release_module
from finsent.build.pruning import run_prune
from finsent.cli import main
from finsent.core.outputs import MARKER, OutputError, write_marker
from finsent.core.recipes import EvalBenchmark, PruneSection, Recipe, load_recipe
from finsent.evaluation.runs import EvalError, check_runs, run_eval
from finsent.release import Release

TWEETS = [("$ACME guidance cut, shares slide", 0), ("$BOLT beats on revenue, raises outlook", 1),
          ("$CRUX to present at conference on Tuesday", 2), ("$DYNA downgraded to sell", 0)]


def prune_cmd(model, out, *extra) -> list[str]:
    return ["prune", "--model", str(model), "--ratio", "0.4", "--out", str(out), "--no-progress", *extra]


@pytest.fixture
def tweets_csv(tmp_path) -> Path:
    path = tmp_path / "tweets.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *TWEETS])
    return path


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


@pytest.fixture
def demo(tmp_path) -> Release:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "a", "label": "neutral"}\n')
    recipe = tmp_path / "demo.yaml"
    recipe.write_text(f"name: demo\nfinetune:\n  data: [{{path: {data}, schema: finsent, scheme: 3}}]\n")
    return Release(load_recipe(recipe), tmp_path / "runs", tmp_path / "releases")


def test_fingerprints_change_with_the_code_and_the_library_versions(demo, monkeypatch):
    base = demo.fingerprints()
    assert base == demo.fingerprints()  # deterministic
    real_versions = release_module.build_versions()
    assert set(real_versions) == {"finsent", "torch", "transformers", "peft"} and all(real_versions.values())

    monkeypatch.setattr(release_module, "code_hash", lambda: "0" * 64)
    edited = demo.fingerprints()
    assert all(edited[stage] != base[stage] for stage in base)
    monkeypatch.undo()

    for library in ("torch", "transformers", "peft", "finsent"):
        monkeypatch.setattr(release_module, "build_versions", lambda lib=library: {**real_versions, lib: "0.0.1"})
        upgraded = demo.fingerprints()
        assert all(upgraded[stage] != base[stage] for stage in base), library
        monkeypatch.undo()
    assert demo.fingerprints() == base


def test_code_hash_covers_every_py_file_of_the_package(tmp_path, monkeypatch):
    package = tmp_path / "finsent"
    (package / "metrics").mkdir(parents=True)
    (package / "release.py").write_text("x = 1\n")
    (package / "metrics" / "m.py").write_text("y = 2\n")
    monkeypatch.setattr(release_module, "__file__", str(package / "release.py"))
    first = release_module.code_hash()
    (package / "notes.txt").write_text("not code\n")
    assert release_module.code_hash() == first
    (package / "metrics" / "m.py").write_text("y = 3\n")
    assert release_module.code_hash() != first
    monkeypatch.undo()
    assert release_module.code_hash() == release_module.code_hash() != first


def test_a_release_built_by_older_code_is_not_up_to_date(demo, monkeypatch):
    output = demo.pruned_dir / "pruning.json"
    output.parent.mkdir(parents=True)
    output.write_text("{}")
    demo.mark_done("prune", demo.fingerprints()["prune"])
    assert demo.up_to_date("prune", demo.fingerprints()["prune"], output)
    monkeypatch.setattr(release_module, "code_hash", lambda: "newer code")
    assert not demo.up_to_date("prune", demo.fingerprints()["prune"], output)


def test_a_stage_stamp_is_removed_before_the_stage_runs(demo, monkeypatch):
    output = demo.pruned_dir / "pruning.json"
    output.parent.mkdir(parents=True)
    output.write_text("{}")
    write_marker(demo.pruned_dir, "pruned")  # an earlier prune's output
    demo.mark_done("prune", "an older fingerprint")
    stamp = demo.stamps / "prune.json"
    seen = []

    def crashing_prune(self):
        seen.append(stamp.exists())
        raise RuntimeError("killed mid-stage")

    monkeypatch.setattr(Release, "prune", crashing_prune)
    with pytest.raises(RuntimeError, match="killed mid-stage"):
        demo.run(only="prune")
    assert seen == [False] and not stamp.exists()

    monkeypatch.setattr(Release, "prune", lambda self: seen.append(stamp.exists()) or self.pruned_dir)
    demo.run(only="prune")
    assert seen == [False, False]
    assert json.loads(stamp.read_text())["fingerprint"] == demo.fingerprints()["prune"]
    assert demo.up_to_date("prune", demo.fingerprints()["prune"], output)


def test_a_recipe_reads_its_data_from_its_repository_wherever_it_runs(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "build" / "recipes").mkdir(parents=True)
    (repo / "data").mkdir()
    (repo / "data" / "rows.jsonl").write_text('{"text": "a", "label": "neutral"}\n')
    recipe = repo / "build" / "recipes" / "r.yaml"
    recipe.write_text("name: r\nfinetune:\n  data: [{path: data/rows.jsonl, schema: finsent}, "
                      "{path: FinGPT/fingpt-sentiment-train}]\neval:\n  benchmarks: [{name: finsent, "
                      "path: data/rows.jsonl}]\n  speed_texts: data/rows.jsonl\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = load_recipe(recipe)
    anchored = str(repo / "data" / "rows.jsonl")
    assert [s.path for s in r.finetune.data] == [anchored, "FinGPT/fingpt-sentiment-train"]  # a Hub id stays
    assert (r.eval.benchmarks[0].path, r.eval.speed_texts) == (anchored, anchored)
    # The finetune fingerprint hashes the file's contents from any folder, so an edit is seen.
    before = Release(r, tmp_path / "runs", tmp_path / "releases").fingerprints()["finetune"]
    (repo / "data" / "rows.jsonl").write_text('{"text": "b", "label": "neutral"}\n')
    assert Release(r, tmp_path / "runs", tmp_path / "releases").fingerprints()["finetune"] != before
    monkeypatch.chdir(repo)  # from the repository's root, paths stay as written
    assert load_recipe(recipe).finetune.data[0].path == "data/rows.jsonl"


def test_the_release_summary_lists_results_not_the_output_marker(demo):
    eval_dir = demo.release_dir / "eval"
    eval_dir.mkdir(parents=True)
    (eval_dir / MARKER).write_text("{}\n")
    (eval_dir / "finsent-3-score.json").write_text(json.dumps(
        {"n": 4, "metrics": {"accuracy": 0.5, "macro_f1": 0.4, "weighted_f1": 0.45}}))
    assert [s["run"] for s in demo.summary()["scores"]] == ["finsent-3-score"]


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
