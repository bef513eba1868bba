"""Structured GLU pruning: golden Llama-3.2-1B shapes, optipfair-equal indices on SmolLM2, save/reload."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from checkout import REPO
from transformers import AutoModelForCausalLM

from finsent.build.importance import kept_size, neuron_scores, ratio_for_expansion
from finsent.build.pruning import PruningError, glu_mlps, prune_model, run_prune, select_neurons
from finsent.cli import main
from finsent.core.outputs import MARKER
from finsent.core.recipes import PruneSection

LLAMA_1B_PARAMS = 1_235_814_400
LLAMA_1B_PRUNED40_PARAMS = 913_770_496  # oopere/pruned40-llama-1b


def llama_3_2_1b_config():
    """meta-llama/Llama-3.2-1B's config, written out by hand (no Hub) from its published config.json:
    https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json"""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128_256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, hidden_act="silu",
        max_position_embeddings=131_072, rms_norm_eps=1e-5, tie_word_embeddings=True,
        bos_token_id=128_000, eos_token_id=128_001,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
    )


def meta_model(config):
    with torch.device("meta"):  # shapes only: no memory, no init time
        return AutoModelForCausalLM.from_config(config)


def tiny(model_type: str, **extra):
    """A random 2-layer model of the given architecture (vocab 256), seeded."""
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        model_type, vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128, **extra,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config).eval()


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


IDS = torch.tensor([[1, 17, 42, 99, 3, 250, 7, 8]])


# --- golden Llama-3.2-1B shapes (meta device) ----------------------------------------------------


def test_llama_3_2_1b_40_percent_keeps_4916_per_layer_and_913770496_params():
    model = meta_model(llama_3_2_1b_config())
    report = prune_model(model, method="ppm", ratio=0.4, progress=False)
    assert report["params_before"] == LLAMA_1B_PARAMS
    assert report["params_after"] == LLAMA_1B_PRUNED40_PARAMS
    assert report["kept_per_layer"] == [4916] * 16
    assert model.config.intermediate_size == 4916
    assert (report["expansion_before"], report["expansion_after"]) == (400.0, 240.0390625)
    for mlp in glu_mlps(model):
        assert tuple(mlp.gate_proj.weight.shape) == tuple(mlp.up_proj.weight.shape) == (4916, 2048)
        assert tuple(mlp.down_proj.weight.shape) == (2048, 4916)
        assert (mlp.gate_proj.out_features, mlp.down_proj.in_features) == (4916, 4916)


def test_llama_3_2_1b_expansion_240_is_the_40_percent_prune():
    model = meta_model(llama_3_2_1b_config())
    report = prune_model(model, method="ppm", expansion=240, progress=False)
    assert report["params_after"] == LLAMA_1B_PRUNED40_PARAMS
    assert report["kept_per_layer"] == [4916] * 16


@pytest.mark.parametrize("name", ["llama-finsent-s", "llama-finsent-s-original"])
def test_llama_recipes_prune_to_the_published_shape(name):
    """The recipes' prune sections (run with Hub access) give oopere/pruned40-llama-1b's shape."""

    from finsent.core.recipes import load_recipe

    recipe = load_recipe(REPO / "build" / "recipes" / f"{name}.yaml")
    assert recipe.model.base == "meta-llama/Llama-3.2-1B"
    p = recipe.prune
    report = prune_model(meta_model(llama_3_2_1b_config()), method=p.method, ratio=p.ratio,
                         expansion=p.expansion, round_to=p.round_to, progress=False)
    assert (report["method"], report["params_after"]) == ("ppm", LLAMA_1B_PRUNED40_PARAMS)


def test_llama_3_2_1b_kept_sizes_for_10_to_60_percent():
    kept = [kept_size(8192, 2048, ratio=r / 100) for r in (10, 20, 30, 40, 50, 60)]
    assert kept == [7373, 6554, 5735, 4916, 4096, 3277]


# --- amounts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("intermediate,hidden", [(8192, 2048), (1536, 576), (128, 64), (14336, 4096)])
def test_expansion_and_ratio_agree_for_equivalent_values(intermediate, hidden):
    for pct in range(0, 100, 5):
        ratio = pct / 100
        expansion = (1 - ratio) * intermediate / hidden * 100
        assert kept_size(intermediate, hidden, expansion=expansion) == kept_size(intermediate, hidden, ratio=ratio)
        assert ratio_for_expansion(expansion, intermediate, hidden) == pytest.approx(ratio, abs=1e-12)


def test_ratio_formula_floors_and_keeps_at_least_one():
    assert kept_size(1536, ratio=0.4) == 922  # int(614.4) = 614 removed
    assert kept_size(100, ratio=0.29) == 71  # 0.29 * 100 = 28.999999999999996 in floats: still 29 removed
    assert kept_size(10, ratio=0.999) == 1  # n_prune capped at I - 1
    assert kept_size(8192, ratio=0.0) == 8192


@pytest.mark.parametrize("round_to", [1, 2, 8, 64, 100, 4916, 5000, 9000])
def test_round_to_never_grows_the_layer(round_to):
    for pct in (0, 10, 40, 60, 95):
        plain = kept_size(8192, ratio=pct / 100)
        rounded = kept_size(8192, ratio=pct / 100, round_to=round_to)
        assert 1 <= rounded <= plain
        assert rounded % round_to == 0 or rounded == 1
        assert plain - rounded < round_to  # rounds down to the nearest multiple, not further
    assert kept_size(8192, ratio=0.4, round_to=64) == 4864


def test_bad_amounts_and_methods_are_clear_errors():
    model = tiny("llama")
    with pytest.raises(PruningError, match="exactly one of ratio"):
        prune_model(model, ratio=0.4, expansion=100, progress=False)
    with pytest.raises(PruningError, match=r"\[0, 1\)"):
        prune_model(model, ratio=1.0, progress=False)
    with pytest.raises(PruningError, match="would grow the MLP: it is 200 %"):
        prune_model(model, expansion=250, progress=False)
    with pytest.raises(PruningError, match="unknown importance method 'magnitude'"):
        prune_model(model, method="magnitude", ratio=0.4, progress=False)
    with pytest.raises(PruningError, match="round_to"):
        prune_model(model, ratio=0.4, round_to=0, progress=False)
    assert model.config.intermediate_size == 128  # nothing was touched


# --- behaviour on real computations (tiny random models) -------------------------------------------


def test_ratio_zero_keeps_every_neuron_and_identical_logits():
    model = tiny("llama")
    before = logits(model, IDS)
    report = prune_model(model, ratio=0.0, progress=False)
    assert report["kept_per_layer"] == [128, 128] and report["params_after"] == report["params_before"]
    assert torch.equal(logits(model, IDS), before)


@pytest.mark.parametrize("method", ["ppm", "vow", "l2", "pon"])
def test_pruned_model_equals_original_with_removed_neurons_silenced(method):
    """Slicing is exact: pruned = the full model with the dropped neurons' down_proj columns zeroed."""
    model = tiny("llama", mlp_bias=True)  # biases on gate/up/down: sliced, sliced, kept
    reference = copy.deepcopy(model)
    k = kept_size(128, ratio=0.4)
    with torch.no_grad():
        for mlp in glu_mlps(reference):
            keep = select_neurons(neuron_scores(method, mlp.gate_proj.weight, mlp.up_proj.weight), k)
            dropped = torch.ones(128, dtype=torch.bool)
            dropped[keep] = False
            mlp.down_proj.weight[:, dropped] = 0.0
    prune_model(model, method=method, ratio=0.4, progress=False)
    assert glu_mlps(model)[0].gate_proj.bias.shape == (k,) and glu_mlps(model)[0].down_proj.bias.shape == (64,)
    torch.testing.assert_close(logits(model, IDS), logits(reference, IDS), rtol=0, atol=1e-5)


@pytest.mark.parametrize("model_type", ["qwen2", "mistral", "gemma"])
def test_other_glu_architectures_prune_save_and_reload(model_type, tmp_path):
    model = tiny(model_type)
    report = prune_model(model, ratio=0.5, round_to=8, progress=False)
    assert report["kept_per_layer"] == [64, 64]
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.intermediate_size == 64
    assert torch.equal(logits(reloaded, IDS), logits(model, IDS))


def test_composite_gemma3_prunes_its_language_model_only(tmp_path):
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    config = Gemma3Config(
        text_config={"vocab_size": 300, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
                     "max_position_embeddings": 128, "sliding_window": 16},
        vision_config={"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 28, "patch_size": 14},
        mm_tokens_per_image=4, image_token_index=299, boi_token_index=297, eoi_token_index=298,
    )
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config).eval()
    report = prune_model(model, ratio=0.5, progress=False)
    assert report["kept_per_layer"] == [64, 64] and model.config.text_config.intermediate_size == 64
    assert model.config.vision_config.intermediate_size == 48  # the vision tower is not a GLU decoder: untouched
    assert model.model.vision_tower.encoder.layers[0].mlp.fc1.out_features == 48
    model.save_pretrained(tmp_path)
    reloaded = Gemma3ForConditionalGeneration.from_pretrained(tmp_path).eval()
    ids = torch.tensor([[2, 5, 9, 11]])
    assert torch.equal(logits(reloaded, ids), logits(model, ids))


def test_unsupported_architecture_is_a_clear_error():
    from transformers import GPT2Config, GPT2LMHeadModel, Phi3Config, Phi3ForCausalLM

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=32))
    with pytest.raises(PruningError, match=r"GPT2LMHeadModel \(model_type 'gpt2'\) is not supported.*gate_proj"):
        prune_model(gpt2, ratio=0.4, progress=False)
    phi3 = Phi3ForCausalLM(Phi3Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, pad_token_id=0))
    with pytest.raises(PruningError, match=r"Phi3ForCausalLM.*lacks gate_proj, up_proj"):  # fused gate_up_proj
        prune_model(phi3, ratio=0.4, progress=False)


def test_run_prune_saves_a_folder_plain_from_pretrained_reloads(tiny_llama_dir, tmp_path):
    section = PruneSection(method="vow", ratio=0.3, round_to=4)
    out = run_prune(section, str(tiny_llama_dir), tmp_path / "pruned", progress=False)
    in_memory = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    prune_model(in_memory, method="vow", ratio=0.3, round_to=4, progress=False)
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    assert reloaded.config.intermediate_size == in_memory.config.intermediate_size == 88  # 128 - 38, floor to 4
    assert torch.equal(logits(reloaded, IDS), logits(in_memory, IDS))
    report = json.loads((out / "pruning.json").read_text())
    assert report["bytes_on_disk"] == (out / "model.safetensors").stat().st_size
    assert report["params_after"] == sum(p.numel() for p in reloaded.parameters())
    assert (report["method"], report["intermediate_after"], report["kept_per_layer"]) == ("vow", 88, [88, 88])
    assert (out / "tokenizer.json").is_file() and (out / "pruning.png").is_file()
    assert (out / MARKER).is_file()  # finsent wrote it: a later run may replace it without --overwrite
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_cli_prune_with_recipe_and_flag_overrides(tiny_llama_dir, tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"name: tiny\nmodel:\n  base: {tiny_llama_dir}\nprune:\n  method: ppm\n  ratio: 0.4\n")
    out = tmp_path / "out"
    assert main(["prune", "--recipe", str(recipe), "--method", "l2", "--expansion", "150", "--round-to", "8",
                 "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "pruning.json").read_text())
    assert (report["method"], report["expansion"], report["intermediate_after"]) == ("l2", 150.0, 96)
    assert report["ratio"] == pytest.approx(0.25)


def test_cli_prune_reports_unsupported_architecture_cleanly(smollm2_dir, tmp_path, capsys):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=32)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(smollm2_dir).save_pretrained(folder)  # a loadable folder; only the MLP is wrong
    code = main(["prune", "--model", str(folder), "--ratio", "0.4", "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    assert "GPT2LMHeadModel (model_type 'gpt2') is not supported" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --- the real SmolLM2: optipfair equality, save/reload -------------------------------------------


def test_unreachable_hub_base_is_a_clear_error_and_writes_nothing(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from finsent.core.models import ModelNotAvailableError

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # never touch the network
    with pytest.raises(ModelNotAvailableError, match="finsent-tests/no-such-model.*--model smollm2"):
        run_prune(PruneSection(), "finsent-tests/no-such-model", tmp_path / "pruned", revision="v1", progress=False)
    assert not (tmp_path / "pruned").exists()


def test_run_prune_rejects_a_bad_amount_before_loading_anything(tmp_path):
    bad = PruneSection(method="ppm", ratio=1.5)  # a Hub id that does not exist: loading would fail differently
    with pytest.raises(PruningError, match=r"ratio is the fraction of neurons removed, in \[0, 1\); got 1.5"):
        run_prune(bad, "finsent-tests/no-such-model", tmp_path / "pruned", progress=False)
    with pytest.raises(PruningError, match="unknown importance method 'wanda'"):
        run_prune(PruneSection(method="wanda"), "finsent-tests/no-such-model", tmp_path / "pruned", progress=False)
