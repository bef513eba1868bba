"""Vocabulary trimming (prune.vocab_first) on the real SmolLM2 and real TFNS / FPB rows."""

from __future__ import annotations

import pytest
from finetune_factory import recipe_file

from finsent.build.pruning import PruningError, run_prune
from finsent.core.recipes import PruneSection, RecipeError, load_recipe


def test_vocab_trimming_refusals(tmp_path, shared_data, tiny_llama_dir):
    path = recipe_file(tmp_path, shared_data, first=-1)
    with pytest.raises(RecipeError, match=r"prune.vocab_first must be >= 0 \(or null: keep the vocabulary\), got -1"):
        load_recipe(path)
    (tmp_path / "empty.yaml").write_text("name: e\nprune:\n  ratio: 0.3\n  vocab_first: 100\n")
    with pytest.raises(RecipeError, match="prune.vocab_first keeps the tokens of finetune.data, which is empty"):
        load_recipe(tmp_path / "empty.yaml")
    with pytest.raises(PruningError, match="prune.vocab_first keeps the tokens of the training data"):
        run_prune(PruneSection(vocab_first=100), str(tiny_llama_dir), tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()
