"""The dev split (finetune.dev_fraction) and full fine-tuning (finetune.method: full)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from finsent.build.data import Example, load_mixture, load_source
from finsent.build.devsplit import carve, row_id
from finsent.core.recipes import DataSource


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
