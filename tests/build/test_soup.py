"""Model soups (finetune.seeds, finetune.soup): the refusals, before anything is trained or written."""

from __future__ import annotations

import pytest
from finetune_factory import FakeTraining, tiny_recipe, write_finsent

from finsent.build.soup import SoupError, run_soup


def test_a_soup_is_refused_under_torchrun_over_its_members_and_with_lora(tmp_path, monkeypatch):
    from finsent.build.finetune import run_finetune
    from finsent.core.recipes import RecipeError

    data = write_finsent(tmp_path / "train.jsonl", 1)
    recipe = tiny_recipe(data, method="full", seeds=[1, 2], soup="uniform")
    with pytest.raises(SoupError) as err:
        run_soup(recipe, tmp_path / "base", tmp_path / "seeds", FakeTraining({}))
    assert str(err.value) == (f"{tmp_path / 'seeds'}: a soup's members go to seeds/ beside its output folder, so "
                              "inside this one: name the output folder otherwise (e.g. adapter)")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SoupError) as err:
        run_soup(recipe, tmp_path / "base", tmp_path / "adapter", FakeTraining({}))
    assert str(err.value) == ("finetune.seeds trains its 2 members one after another in one process: run finsent "
                              "finetune without torchrun/accelerate launch, or train each seed as its own run "
                              "(--set finetune.seed=S)")
    monkeypatch.delenv("WORLD_SIZE")
    recipe.finetune.method = "lora"
    with pytest.raises(RecipeError) as err:
        run_finetune(recipe, tmp_path / "base", tmp_path / "adapter")
    assert str(err.value) == ("recipe 'tiny': finetune.seeds averages whole fine-tuned models: set finetune.method: "
                              "full (with lora, averaging the A and B matrices apart is not averaging their updates)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.jsonl"]
