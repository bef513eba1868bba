"""Release stage fingerprints cover the code and the library versions; a stage's stamp is removed before it runs;
the reports record the commit that built the release; a recipe reads its data from its repository wherever it runs;
the summary lists results."""

from __future__ import annotations

import json

import pytest
from release_factory import write_weights

from finsent import release as release_module
from finsent.core.outputs import MARKER, write_marker
from finsent.core.recipes import load_recipe
from finsent.core.reports import read_report
from finsent.release import Release

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
    monkeypatch.setattr(release_module, "PACKAGE_DIR", package)
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


def test_the_reports_record_the_commit_taken_when_the_run_started_and_the_weights_size(demo, monkeypatch, tmp_path):
    monkeypatch.setattr(release_module, "git_commit", lambda: "c0ffee")
    monkeypatch.setattr(Release, "prune", lambda self: self.pruned_dir)
    demo.run(only="prune")
    monkeypatch.setattr(release_module, "git_commit", lambda: "a commit made while it trained")
    merged = tmp_path / "merged"
    merged.mkdir()
    write_weights(merged / "model.safetensors", params=4096)
    demo._write_reports(merged)
    build = read_report("build", merged / "reports" / "build.json")
    assert {k: build[k] for k in ("git_commit", "code_sha256", "versions", "model_params")} == {
        "git_commit": "c0ffee", "code_sha256": release_module.code_hash(),
        "versions": release_module.build_versions(), "model_params": 4096}
    # A stage called alone, outside ``run``, records the code as it is when it writes the reports.
    Release(demo.recipe, tmp_path / "runs", tmp_path / "releases")._write_reports(merged)
    assert read_report("build", merged / "reports" / "build.json")["git_commit"] == "a commit made while it trained"


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
