"""The export stage of ``finsent release`` (``finsent.export.stage``): the recipe's ``export:`` section, GGUF files
and an ONNX graph written into a real (tiny) release folder and scored by llama.cpp and onnxruntime, the manifest
``reports/exports.json``, the push that uploads them in the release's one commit, and the refusals."""

from __future__ import annotations

import pytest
from checkout import REPO
from export_recipe import recipe

from finsent.core.recipes import RecipeError, load_recipe

# --- the recipe section ------------------------------------------------------------------------------------------


def test_recipe_export_section_is_validated(tmp_path, texts):
    # any pruned width may ask for q8_0: the export pads it with zero neurons
    assert recipe(tmp_path, texts, "{gguf: [f16, q8_0]}", round_to=1).export.gguf == ["f16", "q8_0"]
    assert recipe(tmp_path, texts, "{gguf: [f16]}", round_to=64).export.gguf == ["f16"]
    with pytest.raises(RecipeError, match=r"export.gguf\[1\] must be one of f16, q8_0, q4_k_m, got 'q4_k'"):
        recipe(tmp_path, texts, "{gguf: [f16, q4_k]}")
    with pytest.raises(RecipeError, match="export.gguf must be a list without repeats"):
        recipe(tmp_path, texts, "{gguf: [f16, f16]}")
    with pytest.raises(RecipeError, match=r"unknown key\(s\) ggfu in export"):
        recipe(tmp_path, texts, "{ggfu: [f16]}")
    with pytest.raises(RecipeError, match="export.agreement_n must be >= 0"):
        recipe(tmp_path, texts, "{gguf: [f16], agreement_n: -1}")


def test_the_published_recipe_keeps_the_published_width_and_still_ships_q8_0():
    repo = REPO
    published = load_recipe(repo / "build" / "recipes" / "llama-finsent-s.yaml")
    # 4916 neurons a layer as published; q8_0 pads them to 4928, q4_k_m to 5120 (ffn_width) instead of re-pruning
    assert published.export.gguf == ["f16", "q8_0", "q4_k_m"] and published.prune.round_to == 1


# --- the stage on real runtimes ----------------------------------------------------------------------------------
