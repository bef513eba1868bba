"""Every recipe in build/recipes loads and says what it claims; a typo in any key is an error."""

from __future__ import annotations

import json

import pytest
from checkout import REPO

from finsent.core.recipes import RecipeError, load_recipe

RECIPES = sorted((REPO / "build" / "recipes").glob("*.yaml"))
ALL_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_the_required_recipes_exist():
    names = {p.stem for p in RECIPES}
    assert {"llama-finsent-s", "llama-finsent-s-original", "smollm2-135m"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_its_local_files_exist(path):
    recipe = load_recipe(path)
    assert recipe.name == path.stem
    assert recipe.finetune.data, "a recipe trains on something"
    for item in [*recipe.finetune.data, *recipe.eval.benchmarks]:
        if item.path and not item.path.count("/") == 1:  # local files (not Hub ids owner/name)
            assert (REPO / item.path).is_file(), f"{path.name}: {item.path} is missing"


def test_published_recipe_matches_the_original_model_and_fixes_warmup():
    r = load_recipe(REPO / "build" / "recipes" / "llama-finsent-s.yaml")
    assert (r.model.base, r.model.license) == ("meta-llama/Llama-3.2-1B", "llama3.2")
    assert (r.prune.method, r.prune.ratio) == ("ppm", 0.4)
    assert [(d.path, d.schema) for d in r.finetune.data] == [("FinGPT/fingpt-sentiment-train", "fingpt")]
    f = r.finetune
    assert (f.lora_r, f.lora_alpha, f.lora_dropout, f.target_modules) == (8, 32, 0.1, ALL_MODULES)
    assert (f.epochs, f.learning_rate, f.batch_size * f.grad_accum, f.weight_decay) == (3.0, 3e-4, 256, 0.01)
    steps = -(-76_772 // 256) * 3  # 900 optimizer steps
    assert f.warmup_steps is None and 0 < f.warmup_ratio * steps < steps  # warmup ends inside the run
    assert f.loss == "answer" and r.merge.dtype == "float16"
    assert {(b.name, b.scheme) for b in r.eval.benchmarks} >= {("fpb", "3"), ("fiqa", "3"), ("tfns", "3"),
                                                               ("nwgi", "3")}
    assert all(b.path is None for b in r.eval.benchmarks)  # Hub ids with FinGPT's splits


def test_original_recipe_keeps_the_original_defects():
    r = load_recipe(REPO / "build" / "recipes" / "llama-finsent-s-original.yaml")
    f = r.finetune
    assert (f.loss, f.warmup_steps, f.epochs, f.batch_size, f.grad_accum) == ("full", 1000, 3.0, 16, 16)
    assert f.warmup_steps > -(-76_772 // 256) * 3  # longer than the run, as in the notebook


def test_embedded_recipe_is_offline_and_trains_both_schemes():
    r = load_recipe(REPO / "build" / "recipes" / "smollm2-135m.yaml")
    assert r.model.base == "smollm2"
    assert sorted(d.scheme for d in r.finetune.data) == ["3", "7"]
    assert all(d.schema == "finsent" and (REPO / d.path).is_file() for d in r.finetune.data)
    assert r.finetune.max_steps > 0


def test_unknown_key_fails_and_names_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = (REPO / "build" / "recipes" / "smollm2-135m.yaml").read_text()
    bad.write_text(text.replace("learning_rate:", "learnig_rate:"))
    with pytest.raises(RecipeError, match="unknown key.*learnig_rate.*FinetuneSection"):
        load_recipe(bad)
    bad.write_text(text.replace("schema: finsent, scheme", "schema: finsent, shceme", 1))
    with pytest.raises(RecipeError, match="shceme"):
        load_recipe(bad)


def test_overrides_beat_the_recipe():
    r = load_recipe(REPO / "build" / "recipes" / "smollm2-135m.yaml", {"finetune.max_steps": 5,
                                                                         "finetune.skip_bad_rows": True})
    assert (r.finetune.max_steps, r.finetune.skip_bad_rows) == (5, True)
    with pytest.raises(RecipeError, match="finetune.loss"):
        load_recipe(REPO / "build" / "recipes" / "smollm2-135m.yaml", {"finetune.loss": "half"})


# --- bounds and command-line overrides: one line naming the key, before any work ----------------------------

BASE = "name: t\nfinetune:\n  data: [{path: x.jsonl, schema: fpb}]\n"


@pytest.mark.parametrize("text, message", [
    (BASE + "  batch_size: 99999999999999999999999999\n",
     "finetune.batch_size must be at most 65,536 (rows in a batch), got 99999999999999999999999999"),
    (BASE + "  max_steps: 1000000000\n", "finetune.max_steps must be at most 100,000,000 (optimizer steps)"),
    (BASE + "  max_length: 100000000\n", "finetune.max_length must be at most 1,048,576 (tokens)"),
    (BASE + "  lora_r: 1000000\n", "finetune.lora_r must be at most 65,536 (the LoRA rank)"),
    (BASE + "  seed: 4294967296\n", "finetune.seed must be at most 4,294,967,295 (numpy's seed range)"),
    (BASE + "  epochs: 1e9\n", "finetune.epochs must be at most 10,000 (passes over the data), got 1000000000.0"),
    (BASE.replace("schema: fpb}", "schema: fpb, limit: 1000000000000000000000000000000}"),
     "finetune.data[0].limit must be at most 1,000,000,000 (rows)"),
    (BASE + "eval: {speed_batch_sizes: [1, 1000000]}\n",
     "eval.speed_batch_sizes[1] must be at most 65,536 (rows in a batch), got 1000000"),
    (BASE + "export: {agreement_n: 10000000}\n", "export.agreement_n must be at most 1,000,000 (texts)"),
], ids=lambda v: v.split(" must")[0] if " must" in v else "")
def test_integers_have_upper_bounds(tmp_path, text, message):
    path = tmp_path / "big.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: {message}")


def test_out_of_bounds_recipe_through_the_command_line_is_one_line(tmp_path, capsys):
    from finsent.cli import main

    path = tmp_path / "big.yaml"
    path.write_text(BASE + "  batch_size: 99999999999999999999999999\n")
    assert main(["eval", "--recipe", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"finsent eval: error: {path}: finetune.batch_size must be at most 65,536 (rows in a "
                            "batch), got 99999999999999999999999999\n")


@pytest.mark.parametrize("command", [["release", "RECIPE", "--runs-dir", "TMP"],
                                     ["finetune", "--recipe", "RECIPE", "--out", "TMP/adapter"]])
def test_malformed_set_value_is_one_line_naming_the_override(tmp_path, capsys, command):
    from finsent.cli import main

    recipe = str(REPO / "build" / "recipes" / "smollm2-135m.yaml")
    argv = [word.replace("RECIPE", recipe).replace("TMP", str(tmp_path)) for word in command]
    assert main([*argv, "--set", "finetune.learning_rate=[1,"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"finsent {command[0]}: error: --set finetune.learning_rate: the value '[1,' is not "
                            "valid YAML (while parsing a flow node; expected the node content, but found "
                            "'<stream end>'): write a YAML value (5, 1e-3, [a, b], true) or quote text\n")
    assert not any(tmp_path.iterdir())


SOUP = BASE + "  method: full\n  soup: uniform\n"


@pytest.mark.parametrize("text, message", [
    (SOUP + "  seeds: []\n",
     "finetune.seeds must be a non-empty list of seeds (or null for one run of finetune.seed), got []"),
    (SOUP + "  seeds: [1, 2, 1]\n",
     "finetune.seeds must be a list without repeats (each seed trains one member), got [1, 2, 1]"),
    (SOUP + "  seeds: [1, -2]\n", "finetune.seeds[1] must be >= 0, got -2"),
    (SOUP + "  seeds: [4294967296]\n", "finetune.seeds[0] must be at most 4,294,967,295 (numpy's seed range), got "
                                       "4294967296"),
    (SOUP + "  seeds: 3\n", "finetune.seeds must be a list, got 3"),
    (BASE + "  method: full\n  seeds: [1, 2]\n",
     "finetune.seeds trains 2 models: set finetune.soup to uniform or greedy (how their weights are averaged)"),
    (SOUP, "finetune.soup uniform averages the models of finetune.seeds, which is not set: list the seeds, e.g. "
           "finetune.seeds: [1, 2, 3]"),
    (BASE + "  seeds: [1, 2]\n  soup: uniform\n",
     "finetune.seeds averages whole fine-tuned models: set finetune.method: full (with lora, averaging the A and B "
     "matrices apart is not averaging their updates)"),
    (BASE + "  method: full\n  seeds: [1, 2]\n  soup: greedy\n",
     "finetune.soup greedy picks members by their dev accuracy: set finetune.dev_fraction > 0"),
    (BASE + "  soup: best\n", "finetune.soup must be one of None, uniform, greedy, got 'best'"),
    (BASE + "  distill_from: []\n",
     "finetune.distill_from must be a model folder or Hub id, or a non-empty list of them (or null), got []"),
    (BASE + "  distill_from: [a, a]\n",
     "finetune.distill_from must be a list without repeats (each teacher once), got ['a', 'a']"),
    (BASE + "  distill_from: [a, ' ']\n", "finetune.distill_from[1] must be a model folder or Hub id, got ' '"),
    (BASE + "  distill_from: ' '\n", "finetune.distill_from must be a model folder or Hub id (or null), got ' '"),
], ids=lambda v: "" if v.startswith("name:") else v.split(" must")[0].split(":")[0][:60])
def test_bad_soups_and_ensembles_are_one_line_naming_the_key(tmp_path, text, message):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value) == f"{path}: {message}"


def test_a_soup_and_an_ensemble_load_and_the_soup_holds_out_its_first_seeds_split(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(BASE + "  method: full\n  seeds: [7, 3]\n  soup: greedy\n  dev_fraction: 0.1\n"
                           "  distill_from: [teacher-a, teacher-b]\n")
    f = load_recipe(path).finetune
    assert (f.seeds, f.soup, f.split_seed, f.teachers) == ([7, 3], "greedy", 7, ["teacher-a", "teacher-b"])
    assert load_recipe(path, {"finetune.dev_seed": 5}).finetune.split_seed == 5
    one = load_recipe(path, {"finetune.distill_from": "teacher-a", "finetune.seeds": None, "finetune.soup": None})
    assert (one.finetune.distill_from, one.finetune.teachers, one.finetune.split_seed) == ("teacher-a",
                                                                                           ["teacher-a"], 42)


def test_the_soup_recipe_trains_as_the_run_that_chose_it_and_as_the_direct_recipe_at_two_seeds():
    """smollm2-109m-fingpt-soup.yaml rebuilds the dev run that chose it (its model, prune, finetune and merge
    sections equal that run's recorded recipe) and differs from the direct recipe only in its seeds."""
    recipes = REPO / "build" / "recipes"
    soup = load_recipe(recipes / "smollm2-109m-fingpt-soup.yaml").to_dict()
    run = json.loads((REPO / "build/bench/results/tfns_accuracy-direct-1ep-soup-dev.json").read_text())
    direct = load_recipe(recipes / "smollm2-109m-fingpt-direct.yaml").to_dict()
    for section in ("model", "prune", "finetune", "merge"):
        assert soup[section] == run["recipe_contents"][section], section
    changed = {k: (direct["finetune"][k], v) for k, v in soup["finetune"].items() if direct["finetune"][k] != v}
    assert changed == {"seeds": (None, [42, 43]), "soup": (None, "uniform"), "dev_seed": (None, 42)}
    assert all(soup[s] == direct[s] for s in ("model", "prune", "merge", "eval"))
