"""Every recipe in build/recipes loads and says what it claims; a typo in any key is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from finsent.recipes import RecipeError, load_recipe

REPO = Path(__file__).resolve().parents[1]
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
