"""The dev split (finetune.dev_fraction) and full fine-tuning (finetune.method: full)."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
import torch
from test_finetune import tiny_recipe, write_finsent

from finsent.build.data import Example, load_mixture, load_source
from finsent.build.devsplit import carve, row_id
from finsent.core.provenance import file_sha256
from finsent.core.recipes import DataSource
from finsent.core.reports import read_report


def ex(text: str, label: str) -> Example:
    return Example("instr", text, label, "3", "test", "news")


def test_carve_is_stratified_seeded_and_keeps_duplicates_together():
    rows = [ex(f"up {i}", "positive") for i in range(40)] + [ex(f"down {i}", "negative") for i in range(20)]
    rows += [ex("up 3", "positive"), ex("down 7", "negative")]  # duplicated texts
    train, dev = carve(rows, 0.25, seed=1, source="a.csv")
    assert Counter(e.answer for e in dev) - Counter({"positive": 1, "negative": 1}) <= Counter(
        {"positive": 10, "negative": 5})
    assert len({row_id(e.text) for e in dev if e.answer == "positive"}) == 10  # round(0.25 x 40 groups)
    assert len({row_id(e.text) for e in dev if e.answer == "negative"}) == 5
    assert not {e.text for e in train} & {e.text for e in dev}  # a duplicate never straddles the split
    assert len(train) + len(dev) == len(rows)
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)  # the file's row order does not matter, the seed and source do
    assert {e.text for e in carve(shuffled, 0.25, 1, "a.csv")[1]} == {e.text for e in dev}
    assert {e.text for e in carve(rows, 0.25, 2, "a.csv")[1]} != {e.text for e in dev}
    assert carve(rows, 0.0, 1, "a.csv") == (rows, [])


def test_dev_split_of_the_real_training_files(shared_data):
    tfns = DataSource(path=str(shared_data / "tfns" / "sent_train.csv"), schema="tfns")
    fpb = DataSource(path=str(shared_data / "fpb" / "train.jsonl"), schema="fpb")
    mix = load_mixture([tfns, fpb], seed=42, dev_fraction=0.1)
    for src, stats in zip((tfns, fpb), mix.stats):
        rows = load_source(src)
        groups = {}
        for e in rows:
            groups.setdefault(row_id(e.text), e.answer)
        held = mix.dev[src.path]
        per_label = Counter(groups[row_id(e.text)] for e in {row_id(e.text): e for e in held}.values())
        assert per_label == {label: round(0.1 * n) for label, n in Counter(groups.values()).items()}
        assert stats["rows_dev"] == len(held) and stats["rows_used"] == stats["rows_read"] - len(held)
    trained = {row_id(e.text) for e in mix.examples}
    assert not trained & {row_id(e.text) for rows in mix.dev.values() for e in rows}
    assert len(mix.examples) == 9543 + 3634 - sum(len(r) for r in mix.dev.values())
    assert {e.kind for e in mix.dev[tfns.path]} == {"tweet"} and {e.kind for e in mix.dev[fpb.path]} == {"news"}


def test_dev_seed_fixes_the_split_while_seed_moves_the_training_order(shared_data):
    from finsent.build.data import training_data
    from finsent.core.recipes import FinetuneSection

    sources = [DataSource(path=str(shared_data / "tfns" / "sent_train.csv"), schema="tfns"),
               DataSource(path=str(shared_data / "fpb" / "train.jsonl"), schema="fpb")]

    def texts(rows):
        return [e.text for e in rows]

    base = training_data(FinetuneSection(data=sources, dev_fraction=0.1, seed=42))
    other = training_data(FinetuneSection(data=sources, dev_fraction=0.1, seed=7, dev_seed=42))
    alone = training_data(FinetuneSection(data=sources, dev_fraction=0.1, seed=7))
    for src in sources:
        assert texts(other.dev[src.path]) == texts(base.dev[src.path])  # the same held-out rows, same order
        assert set(texts(alone.dev[src.path])) != set(texts(base.dev[src.path]))  # seed alone moves the split
    assert sorted(texts(other.examples)) == sorted(texts(base.examples))  # the same training rows ...
    assert texts(other.examples) != texts(base.examples)  # ... in seed 7's order
    assert texts(other.examples) != texts(alone.examples)
    assert FinetuneSection(seed=7).split_seed == 7 and FinetuneSection(seed=7, dev_seed=42).split_seed == 42


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


def test_recipe_checks_method_and_dev_fraction(tmp_path):
    from finsent.core.recipes import RecipeError, load_recipe

    path = tmp_path / "r.yaml"
    path.write_text("name: r\nfinetune:\n  method: qlora\n")
    with pytest.raises(RecipeError, match="finetune.method must be one of lora, full, got 'qlora'"):
        load_recipe(path)
    path.write_text("name: r\nfinetune:\n  dev_fraction: 0.9\n")
    with pytest.raises(RecipeError, match=r"finetune.dev_fraction must be in \[0, 0.5\], got 0.9"):
        load_recipe(path)
    path.write_text("name: r\nfinetune:\n  dev_seed: -1\n")
    with pytest.raises(RecipeError, match=r"finetune.dev_seed must be >= 0 \(or null\), got -1"):
        load_recipe(path)
