"""finsent release: stage fingerprints, stamps and --set overrides (no model needed)."""

from pathlib import Path

import pytest

from finsent.core.recipes import RecipeError, load_recipe, parse_overrides
from finsent.release import Release, ReleaseError, file_digest

RECIPE = """
name: demo
model: {base: smollm2}
prune: {method: ppm, ratio: 0.4}
finetune:
  data: [{path: DATA, schema: finsent, scheme: 3}]
  max_steps: 3
eval:
  benchmarks: [{name: finsent, path: DATA}]
"""


@pytest.fixture
def recipe_file(tmp_path: Path) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "a", "label": "neutral"}\n')
    path = tmp_path / "demo.yaml"
    path.write_text(RECIPE.replace("DATA", str(data)))
    return path


def test_fingerprints_follow_what_decides_each_stage(recipe_file, tmp_path):
    base = Release(load_recipe(recipe_file), tmp_path / "runs", tmp_path / "rel").fingerprints()
    lr = Release(load_recipe(recipe_file, {"finetune.learning_rate": 1e-4}), tmp_path, tmp_path).fingerprints()
    assert lr["prune"] == base["prune"]
    assert lr["finetune"] != base["finetune"] and lr["merge"] != base["merge"] and lr["eval"] != base["eval"]
    card = Release(load_recipe(recipe_file, {"card.model_name": "Other"}), tmp_path, tmp_path).fingerprints()
    assert card == base  # the card re-renders every run; it decides no model output

    # Editing a local data file changes the fine-tuning fingerprint even with the same recipe.
    data = Path(load_recipe(recipe_file).finetune.data[0].path)
    data.write_text('{"text": "b", "label": "neutral"}\n')
    edited = Release(load_recipe(recipe_file), tmp_path, tmp_path).fingerprints()
    assert edited["prune"] == base["prune"] and edited["finetune"] != base["finetune"]


def test_local_bases_teachers_and_calibration_rows_enter_the_fingerprints(recipe_file, tmp_path):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "model.safetensors").write_bytes(b"weights v1")
    chain = {"model.base": str(teacher), "finetune.distill_from": str(teacher)}

    def fps(**extra):
        return Release(load_recipe(recipe_file, {**chain, **extra}), tmp_path, tmp_path).fingerprints()

    before = fps()
    (teacher / "model.safetensors").write_bytes(b"weights v2")  # the teacher's release was rebuilt
    after, act = fps(), fps(**{"prune.method": "act"})
    assert after["prune"] != before["prune"] and after["finetune"] != before["finetune"]

    # An activation-scored prune reads training rows: editing the data re-runs it (PPM's prune stays, above).
    data = Path(load_recipe(recipe_file).finetune.data[0].path)
    data.write_text('{"text": "c", "label": "neutral"}\n')
    assert fps(**{"prune.method": "act"})["prune"] not in (act["prune"], after["prune"])
    assert fps()["prune"] == after["prune"]


def test_every_teacher_of_an_ensemble_and_the_soups_seeds_enter_the_finetune_fingerprint(recipe_file, tmp_path):
    teachers = [tmp_path / "teacher-a", tmp_path / "teacher-b"]
    for teacher in teachers:
        teacher.mkdir()
        (teacher / "model.safetensors").write_bytes(b"weights v1")
    soup = {"finetune.method": "full", "finetune.soup": "uniform",
            "finetune.distill_from": [str(t) for t in teachers]}

    def fps(**extra):
        return Release(load_recipe(recipe_file, {**soup, **extra}), tmp_path, tmp_path).fingerprints()

    before = fps(**{"finetune.seeds": [1, 2]})
    (teachers[1] / "model.safetensors").write_bytes(b"weights v2")  # the second teacher was rebuilt
    after = fps(**{"finetune.seeds": [1, 2]})
    assert after["prune"] == before["prune"] and after["finetune"] != before["finetune"]
    # one more seed, or another way to average: the stage runs again (its finished members are reused)
    for extra in ({"finetune.seeds": [1, 2, 3]}, {"finetune.seeds": [1, 2], "finetune.soup": "greedy",
                                                  "finetune.dev_fraction": 0.1}):
        other = fps(**extra)
        assert other["prune"] == after["prune"] and other["finetune"] != after["finetune"]


def test_a_recipe_without_training_merges_the_pruned_model_and_builds_something(recipe_file, tmp_path):
    plain = Release(load_recipe(recipe_file, {"finetune.enabled": False}), tmp_path, tmp_path).fingerprints()
    assert "finetune" not in plain
    # Training settings decide nothing there; the prune (and so the merge) still follows the base and the data.
    lr = Release(load_recipe(recipe_file, {"finetune.enabled": False, "finetune.learning_rate": 1e-4}),
                 tmp_path, tmp_path).fingerprints()
    assert lr == plain
    ratio = Release(load_recipe(recipe_file, {"finetune.enabled": False, "prune.ratio": 0.2}),
                    tmp_path, tmp_path).fingerprints()
    assert ratio["prune"] != plain["prune"] and ratio["merge"] != plain["merge"]
    with pytest.raises(RecipeError, match="prune.enabled and finetune.enabled are both false"):
        load_recipe(recipe_file, {"finetune.enabled": False, "prune.enabled": False})


def test_finetune_refuses_a_recipe_that_trains_nothing(recipe_file, tmp_path):
    from finsent.build.finetune import run_finetune

    with pytest.raises(RecipeError, match="finetune.enabled is false"):
        run_finetune(load_recipe(recipe_file, {"finetune.enabled": False}), tmp_path / "base", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_stamps_mark_a_stage_up_to_date_only_with_its_output(recipe_file, tmp_path):
    release = Release(load_recipe(recipe_file), tmp_path / "runs", tmp_path / "rel")
    out = tmp_path / "out.json"
    assert not release.up_to_date("prune", "abc", out)
    release.mark_done("prune", "abc")
    assert not release.up_to_date("prune", "abc", out)  # stamp without output
    out.write_text("{}")
    assert release.up_to_date("prune", "abc", out)
    assert not release.up_to_date("prune", "abd", out)


def test_file_digest_covers_names_and_bytes(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "a.txt").write_bytes(b"1")
    first = file_digest(folder)
    (folder / "a.txt").rename(folder / "b.txt")
    assert file_digest(folder) != first
    (folder / "b.txt").rename(folder / "a.txt")
    assert file_digest(folder) == first


def test_overrides_parse_yaml_values_and_reject_garbage(recipe_file):
    assert parse_overrides(["finetune.max_steps=5", "eval.modes=[score, generate]", "prune.enabled=false"]) == {
        "finetune.max_steps": 5, "eval.modes": ["score", "generate"], "prune.enabled": False,
    }
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        parse_overrides(["finetune.max_steps"])
    with pytest.raises(RecipeError, match="unknown key.*max_stepz"):
        load_recipe(recipe_file, parse_overrides(["finetune.max_stepz=5"]))


def test_push_needs_a_repo_and_space_needs_push(recipe_file, tmp_path):
    release = Release(load_recipe(recipe_file), tmp_path / "runs", tmp_path / "rel")
    with pytest.raises(ReleaseError, match="--repo-id"):
        release.run(push=True)
    with pytest.raises(ReleaseError, match="needs --push"):
        release.run(space_id="me/space")


def test_merge_stage_names_a_missing_or_unusable_adapter_and_writes_nothing(recipe_file, tmp_path):
    from finsent.build.merge import MergeInputError

    release = Release(load_recipe(recipe_file), tmp_path / "runs", tmp_path / "rel")
    with pytest.raises(ReleaseError, match=r"no adapter at .*adapter: run the finetune stage first"):
        release.merge()
    release.adapter_dir.mkdir(parents=True)
    (release.adapter_dir / "notes.txt").write_text("not an adapter")
    release.pruned_dir.mkdir()
    (release.pruned_dir / "config.json").write_text("{}")
    with pytest.raises(MergeInputError, match=r"is not a LoRA adapter folder \(no adapter_config.json\) nor a fully"):
        release.merge()
    assert not (tmp_path / "rel").exists() and (release.adapter_dir / "notes.txt").read_text() == "not an adapter"


def test_speed_texts_outside_the_repository_are_named_never_a_default(recipe_file, tmp_path, capsys):
    """Hub-only benchmarks name no texts file: the release refuses before its first stage, and `finsent bench`
    without --texts is a usage error, instead of reading data beside the checkout."""
    from finsent.cli import main

    hub_only = {"eval.benchmarks": [{"name": "tfns"}]}
    release = Release(load_recipe(recipe_file, hub_only), tmp_path / "runs", tmp_path / "rel")
    with pytest.raises(ReleaseError, match=r"eval.speed is on but no texts are named: set eval.speed_texts"):
        release.run()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "rel").exists()
    quiet = Release(load_recipe(recipe_file, {**hub_only, "eval.speed": False}), tmp_path / "runs", tmp_path / "rel")
    assert quiet.recipe.eval.texts_file() is None and quiet._export_texts() is None
    exporting = Release(load_recipe(recipe_file, {**hub_only, "eval.speed": False, "export.gguf": ["f16"]}),
                        tmp_path / "runs", tmp_path / "rel")
    with pytest.raises(ReleaseError, match=r"an export's agreement check is on but no texts are named"):
        exporting.run()
    assert not (tmp_path / "runs").exists() and not (tmp_path / "rel").exists()
    named = load_recipe(recipe_file, {**hub_only, "eval.speed_texts": str(recipe_file)})
    assert named.eval.texts_file() == str(recipe_file)
    assert load_recipe(recipe_file).eval.texts_file() == load_recipe(recipe_file).eval.benchmarks[0].path

    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--model", "smollm2", "--out", str(tmp_path / "bench")])
    assert exit_.value.code == 2 and "--texts" in capsys.readouterr().err
    assert not (tmp_path / "bench").exists()
