"""Activation-scored pruning (prune.method act): exact norms, cut order, calibration rows, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from finsent.build.importance import activation_norms
from finsent.build.pruning import PruningError, calibration_texts, glu_mlps, prune_model, run_prune, texts_sha256
from finsent.core.recipes import PruneSection, RecipeError, load_recipe

TEXTS = ["Instruction: What is the sentiment of this news?\nInput: Profit rose 12 % in Q3.\nAnswer: positive\n",
         "Shares fell.", "Nokia and Ericsson sign a patent deal worth EUR 1.2 billion, both said on Monday."]


def manual_norms(model, tokenizer, texts):
    """||act(gate x) * up x||_2 per neuron, one text at a time, read at each MLP's input: the definition."""
    sums = [torch.zeros(m.down_proj.in_features) for m in glu_mlps(model)]
    inputs = {}
    handles = [m.register_forward_pre_hook(lambda mod, args, i=i: inputs.__setitem__(i, args[0]))
               for i, m in enumerate(glu_mlps(model))]
    with torch.no_grad():
        for text in texts:
            model(input_ids=torch.tensor([tokenizer(text)["input_ids"]]))
            for i, mlp in enumerate(glu_mlps(model)):
                x = inputs[i][0]  # [T, H]
                h = mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)  # [T, I]
                sums[i] += h.square().sum(0)
    for handle in handles:
        handle.remove()
    return [s.sqrt() for s in sums]


def test_activation_norms_match_the_definition_and_ignore_padding(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    expected = manual_norms(model, tokenizer, TEXTS)
    one_by_one = activation_norms(model, tokenizer, TEXTS, glu_mlps(model), batch_size=1, progress=False)
    padded = activation_norms(model, tokenizer, TEXTS, glu_mlps(model), batch_size=3, progress=False)
    for want, a, b in zip(expected, one_by_one, padded, strict=True):
        assert a.shape == (128,) and want.min() > 0
        torch.testing.assert_close(a, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, want, rtol=1e-4, atol=1e-5)  # padded rows: masked, not counted


def test_act_cuts_the_neurons_that_add_nothing_on_the_calibration_text(tiny_llama_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    silent = torch.arange(0, 128, 3)[:40]  # 40 neurons whose down_proj column is zero: they never reach the output
    with torch.no_grad():
        for mlp in glu_mlps(model):
            mlp.down_proj.weight[:, silent] = 0.0
            mlp.gate_proj.weight[silent] *= 10  # the widest weight ranges: PPM would keep them all
    ppm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    ppm.load_state_dict(model.state_dict())
    before = model(input_ids=torch.tensor([tokenizer(TEXTS[0])["input_ids"]])).logits
    gates = [mlp.gate_proj.weight.detach().clone() for mlp in glu_mlps(model)]
    report = prune_model(model, method="act", ratio=40 / 128, progress=False, tokenizer=tokenizer,
                         calibration=TEXTS)
    prune_model(ppm, method="ppm", ratio=40 / 128, progress=False)
    kept = sorted(set(range(128)) - set(silent.tolist()))
    for mlp, gate in zip(glu_mlps(model), gates, strict=True):  # exactly the live neurons stay, in order
        assert mlp.down_proj.weight.shape == (64, 88)
        assert torch.equal(mlp.gate_proj.weight, gate[kept])
    after = model(input_ids=torch.tensor([tokenizer(TEXTS[0])["input_ids"]])).logits
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert report["calibration"] == {"texts": 3, "sha256": texts_sha256(TEXTS)}
    assert report["method"] == "act" and report["kept_per_layer"] == [88, 88] and len(kept) == 88
    assert glu_mlps(ppm)[0].down_proj.weight.abs().sum(0).eq(0).sum() > 0  # PPM kept silent neurons instead


def test_act_without_calibration_is_refused(tiny_llama_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    with pytest.raises(PruningError, match="scores neurons by their activations: it needs calibration texts"):
        prune_model(model, method="act", ratio=0.3, progress=False)
    with pytest.raises(PruningError, match="'act' needs calibration texts: prune with a recipe"):
        run_prune(PruneSection(method="act", ratio=0.3), str(tiny_llama_dir), tmp_path / "p", progress=False)
    assert not (tmp_path / "p").exists()


def recipe_file(tmp_path, rows: int, calibration_rows: int = 8) -> str:
    data = tmp_path / "fpb.jsonl"
    labels = ["negative", "neutral", "positive"]
    data.write_text("".join(json.dumps({"sentence": f"Company {i} reports quarter number {i}.",
                                        "label": labels[i % 3]}) + "\n" for i in range(rows)))
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\nprune:\n  method: act\n  ratio: 0.3\n  calibration_rows: {calibration_rows}\n"
                    f"finetune:\n  dev_fraction: 0.2\n  seed: 7\n  data:\n    - {{path: {data}, schema: fpb}}\n")
    return str(path)


def test_calibration_rows_come_from_training_rows_never_dev_rows(tmp_path):
    from finsent.build.data import load_mixture

    recipe = load_recipe(recipe_file(tmp_path, 60))
    texts = calibration_texts(recipe)
    assert len(texts) == 8 and len(set(texts)) == 8 and texts == calibration_texts(recipe)  # seeded
    f = recipe.finetune
    dev = load_mixture(f.data, seed=f.seed, dev_fraction=f.dev_fraction).dev
    dev_inputs = {e.text for rows in dev.values() for e in rows}
    assert len(dev_inputs) == 12
    assert all("Answer: " in t and t.split("Input: ")[1].split("\nAnswer:")[0] not in dev_inputs for t in texts)
    recipe.prune.method = "ppm"
    assert calibration_texts(recipe) is None  # weight-only scores read no data


def test_recipe_checks_calibration(tmp_path):
    with pytest.raises(RecipeError, match="prune.calibration_rows must be >= 1, got 0"):
        load_recipe(recipe_file(tmp_path, 10, calibration_rows=0))
    (tmp_path / "empty.yaml").write_text("name: e\nprune:\n  method: act\n  ratio: 0.3\n")
    with pytest.raises(RecipeError, match="prune.method act draws its calibration rows from finetune.data"):
        load_recipe(tmp_path / "empty.yaml")
