"""The export stage of ``finsent release`` (``finsent.export.stage``): the recipe's ``export:`` section, GGUF files
and an ONNX graph written into a real (tiny) release folder and scored by llama.cpp and onnxruntime, the manifest
``reports/exports.json``, the push that uploads them in the release's one commit, and the refusals."""

from __future__ import annotations

import json

import pytest
from checkout import REPO
from export_recipe import copy, recipe

from finsent.core.recipes import RecipeError, load_recipe
from finsent.export.stage import MANIFEST, run_exports

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


def test_stage_refuses_a_width_q8_0_cannot_pack_and_a_file_it_did_not_write(tiny_release, tmp_path, texts):
    from finsent.core.errors import ExportInputError

    release = copy(tiny_release, tmp_path / "release")
    config = json.loads((release / "config.json").read_text())
    r = recipe(tmp_path, texts, "{gguf: [q8_0], agreement_n: 0}")
    (release / "tiny-Q8_0.gguf").write_bytes(b"mine")
    with pytest.raises(ExportInputError, match="tiny-Q8_0.gguf exists and no exports manifest .* --overwrite"):
        run_exports(r, release)
    assert (release / "tiny-Q8_0.gguf").read_bytes() == b"mine"
    (release / "tiny-Q8_0.gguf").unlink()
    # A base whose own hidden size is no multiple of 32 (here 100) cannot be padded: refused, nothing written.
    (release / "config.json").write_text(json.dumps({**config, "hidden_size": 100}))
    with pytest.raises(ExportInputError, match=r"hidden_size 100.*export --quant f16"):
        run_exports(r, release)
    assert not list(release.glob("*.gguf")) and not (release / MANIFEST).exists()


def test_release_runs_the_stage_and_skips_it_when_up_to_date(tiny_release, tmp_path, texts):
    from finsent.release import STAGES, Release

    assert STAGES.index("eval") < STAGES.index("export") < STAGES.index("card") < STAGES.index("push")
    r = recipe(tmp_path, texts, "{gguf: [f16], agreement_n: 0}")
    release = Release(r, tmp_path / "runs", tmp_path / "releases")
    copy(tiny_release, release.release_dir)
    assert release.run(only="export")["ran"] == ["export"]
    fps = release.fingerprints()
    assert release.up_to_date("export", fps["export"], release.release_dir / MANIFEST) and release._exports_present()
    (release.release_dir / "tiny-F16.gguf").write_bytes(b"truncated")
    assert not release._exports_present()  # a damaged export makes the stage run again
    # The export section decides the export stage only, never the model's stages.
    other = Release(recipe(tmp_path, texts, "{gguf: [f16, q8_0], agreement_n: 0}"), tmp_path / "runs",
                    tmp_path / "releases").fingerprints()
    assert other["merge"] == fps["merge"] and other["eval"] == fps["eval"] and other["export"] != fps["export"]
