"""Full fine-tuning with a dev split (finetune.dev_fraction, finetune.method: full): trains, scores, merges."""

from __future__ import annotations

import json

import torch
from finetune_factory import tiny_recipe, write_finsent

from finsent.core.provenance import file_sha256
from finsent.core.recipes import DataSource
from finsent.core.reports import read_report


def test_full_finetune_with_a_dev_split_trains_scores_and_merges(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from finsent.build.finetune import run_finetune
    from finsent.build.merge import run_merge

    data = write_finsent(tmp_path / "train.jsonl", repeat=1)
    recipe = tiny_recipe(data, method="full", dev_fraction=0.5, dev_every=2, max_steps=4)
    recipe.finetune.data = [DataSource(path=data, schema="finsent", scheme="3")]
    out = run_finetune(recipe, tiny_llama_dir, tmp_path / "full")
    report = read_report("training", out / "training.json")
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert report["method"] == "full" and report["lora"] is None
    assert report["trainable_params"] == sum(p.numel() for p in base.parameters())
    # 6 headlines, 3 labels of 2 (positive 3, negative 2, neutral 1): round(0.5 x n) groups per label held out.
    assert report["dev"]["n"] == 2 + 1 + 0 and report["rows"] == 3
    assert [c["step"] for c in report["dev_curve"]] == [2, 4]
    assert report["dev_curve"][-1]["accuracy"] == report["dev"]["accuracy"]  # same model, same rows
    split = json.loads((out / "dev_split.json").read_text())
    assert split["sources"][0]["sha256"] == file_sha256(data) and len(split["sources"][0]["ids"]) == 3
    assert not (out / "adapter_config.json").exists()
    trained = AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        moved = max(float((a - b).abs().max()) for a, b in zip(trained.parameters(), base.parameters()))
    assert moved > 1e-4  # every weight trained, not an adapter

    recipe.finetune.freeze_embeddings = True
    frozen = read_report("training", run_finetune(recipe, tiny_llama_dir, tmp_path / "frozen") / "training.json")
    embeddings = base.get_input_embeddings().weight.numel()  # tied: the LM head is the same tensor
    assert frozen["trainable_params"] == report["trainable_params"] - embeddings
    assert torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path / "frozen").get_input_embeddings().weight,
                       base.get_input_embeddings().weight)

    merged = run_merge(recipe, tiny_llama_dir, out, tmp_path / "merged")
    reloaded = AutoModelForCausalLM.from_pretrained(merged)
    for a, b in zip(reloaded.parameters(), trained.parameters()):
        assert torch.equal(a, b)  # float32 merge of a full model: the trained weights themselves
