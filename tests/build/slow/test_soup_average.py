"""Model soups (finetune.seeds, finetune.soup; finsent.build.soup): with stand-in members, the exact weight means,
the greedy choice by dev scores, the record and the reuse of finished members; then a soup of real trainings."""

from __future__ import annotations

import pytest
import torch
from finetune_factory import FakeTraining, mean_of, soup_tensors, tiny_recipe, write_finsent

from finsent.build import soup as soup_module
from finsent.build.soup import run_soup
from finsent.core.reports import read_report

EMBEDDINGS = "model.embed_tokens.weight"  # tied to the LM head: saved once


def dev_score(accuracy: float) -> dict:
    return {"n": 4, "accuracy": accuracy, "macro_f1": accuracy, "per_source": {}}


def scorer(monkeypatch, seeds_dir, table: dict[tuple, float]) -> list:
    """Replace the soup's dev scorer: a model whose embeddings are the mean of the members (read from
    ``seeds_dir``) of a key of ``table`` scores that accuracy, any other model fails the test; returns the list of
    the soups scored, in order."""
    scored = []

    def score_model(model, tokenizer, dev, batch_size=32):
        assert dev, "the soup is scored on the members' dev rows"
        weights = model.get_input_embeddings().weight
        for seeds, accuracy in table.items():
            members = [soup_tensors(seeds_dir / f"seed-{s}") for s in seeds]
            if torch.equal(weights, mean_of(members)[EMBEDDINGS]):
                scored.append(seeds)
                return dev_score(accuracy)
        raise AssertionError("scored weights that are no soup of the table")

    monkeypatch.setattr(soup_module, "score_model", score_model)
    return scored


def test_uniform_soup_is_the_mean_and_a_rerun_trains_only_what_changed(tiny_llama_dir, tmp_path, monkeypatch):
    data = write_finsent(tmp_path / "train.jsonl", 2)
    recipe = tiny_recipe(data, method="full", seeds=[1, 2], soup="uniform", dev_fraction=0.5)
    fake = FakeTraining({1: 0.5, 2: 0.75, 3: 0.625})
    seeds, out = tmp_path / "run" / "seeds", tmp_path / "run" / "adapter"
    scored = scorer(monkeypatch, seeds, {(1, 2): 0.875, (1, 2, 3): 0.8})
    run_soup(recipe, tiny_llama_dir, out, fake)
    assert fake.seeds == [1, 2] and scored == [(1, 2)]
    one, two = soup_tensors(seeds / "seed-1"), soup_tensors(seeds / "seed-2")
    soup = soup_tensors(out)
    assert soup.keys() == one.keys() and EMBEDDINGS in soup
    for key in soup:
        assert torch.equal(soup[key], (one[key] + two[key]) / 2), key  # float32 (a + b) / 2: exact
        assert not torch.equal(soup[key], one[key]), key
    report = read_report("training", out / "training.json")
    assert report["soup"]["members"] == [
        {"seed": 1, "folder": str(seeds / "seed-1"), "reused": False, "dev": dev_score(0.5), "train_loss": 1.0,
         "steps": 2, "seconds": 1.0, "peak_memory_mb": 101.0},
        {"seed": 2, "folder": str(seeds / "seed-2"), "reused": False, "dev": dev_score(0.75), "train_loss": 2.0,
         "steps": 2, "seconds": 2.0, "peak_memory_mb": 102.0}]
    assert (report["soup"]["method"], report["soup"]["chosen"], report["soup"]["trials"]) == ("uniform", [1, 2], [])
    assert report["dev"] == dev_score(0.875) and report["soup"]["dev_accuracy"] == 0.875
    assert (report["train_loss"], report["tokens_per_second"], report["peak_memory_mb"]) == (1.5, 15.0, 102.0)
    assert report["seed"] is None and report["seconds"] >= 3.0  # both members' training and the averaging
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "tokenizer.json", "model.safetensors", "training.json"} <= names
    assert "member.json" not in names and (seeds / "seed-1" / "member.json").is_file()

    # One more seed trains only the new member; the soup is the mean of the three (summed in float64).
    before = (seeds / "seed-1" / "training.json").read_bytes()
    recipe.finetune.seeds = [1, 2, 3]
    run_soup(recipe, tiny_llama_dir, out, fake)
    assert fake.seeds == [1, 2, 3] and scored == [(1, 2), (1, 2, 3)]
    assert (seeds / "seed-1" / "training.json").read_bytes() == before
    members = [soup_tensors(seeds / f"seed-{s}") for s in (1, 2, 3)]
    soup = soup_tensors(out)
    assert all(torch.equal(soup[k], v) for k, v in mean_of(members).items())
    report = read_report("training", out / "training.json")
    assert [m["reused"] for m in report["soup"]["members"]] == [True, True, False]
    assert report["dev"]["accuracy"] == 0.8

    # Another setting makes other members: every seed trains again.
    recipe.finetune.learning_rate = 2e-3
    run_soup(recipe, tiny_llama_dir, out, fake)
    assert fake.seeds == [1, 2, 3, 1, 2, 3]


@pytest.mark.parametrize("accuracies, table, trials, chosen", [
    # best first (2), then 3 (0.6) and 1 (0.5): 3 raises the soup, 1 lowers it
    ({1: 0.5, 2: 0.7, 3: 0.6}, {(2, 3): 0.72, (2, 3, 1): 0.69},
     [{"seeds": [2, 3], "dev_accuracy": 0.72, "kept": True}, {"seeds": [2, 3, 1], "dev_accuracy": 0.69, "kept": False}],
     [2, 3]),
    # 1 and 3 tie at 0.6: the order of seeds decides; a soup that ties keeps the member
    ({1: 0.6, 2: 0.7, 3: 0.6}, {(2, 1): 0.7, (2, 1, 3): 0.65},
     [{"seeds": [2, 1], "dev_accuracy": 0.7, "kept": True}, {"seeds": [2, 1, 3], "dev_accuracy": 0.65, "kept": False}],
     [2, 1]),
    # nothing helps: the best member alone, scored by its own training.json
    ({1: 0.5, 2: 0.7, 3: 0.6}, {(2, 3): 0.6, (2, 1): 0.65},
     [{"seeds": [2, 3], "dev_accuracy": 0.6, "kept": False}, {"seeds": [2, 1], "dev_accuracy": 0.65, "kept": False}],
     [2]),
], ids=["one-left-out", "ties-kept", "best-alone"])
def test_greedy_soup_adds_members_by_dev_accuracy_while_the_soup_does_not_drop(tiny_llama_dir, tmp_path, monkeypatch,
                                                                               accuracies, table, trials, chosen):
    data = write_finsent(tmp_path / "train.jsonl", 2)
    recipe = tiny_recipe(data, method="full", seeds=[1, 2, 3], soup="greedy", dev_fraction=0.5)
    scored = scorer(monkeypatch, tmp_path / "seeds", table)
    fake = FakeTraining(accuracies)
    run_soup(recipe, tiny_llama_dir, tmp_path / "adapter", fake)
    assert fake.seeds == [1, 2, 3] and scored == [tuple(t["seeds"]) for t in trials]
    report = read_report("training", tmp_path / "adapter" / "training.json")
    assert report["soup"]["trials"] == trials and report["soup"]["chosen"] == chosen
    # the soup's dev score: the last member kept's trial, else the best member's own
    expected = [t["dev_accuracy"] for t in trials if t["kept"]][-1:] or [max(accuracies.values())]
    assert report["dev"]["accuracy"] == report["soup"]["dev_accuracy"] == expected[0]
    assert [m["dev"]["accuracy"] for m in report["soup"]["members"]] == [accuracies[s] for s in (1, 2, 3)]
    members = [soup_tensors(tmp_path / "seeds" / f"seed-{s}") for s in chosen]
    soup = soup_tensors(tmp_path / "adapter")
    assert all(torch.equal(soup[k], v) for k, v in mean_of(members).items())


SOUP_RECIPE = """name: tiny
finetune:
  data: [{path: DATA, schema: finsent, scheme: "3"}]
  method: full
  seeds: [1, 2]
  soup: uniform
  dev_fraction: 0.5
  batch_size: 4
  grad_accum: 2
  learning_rate: 1.0e-3
  max_steps: 2
  logging_steps: 1
  save_steps: 2
  threads: 2
  precision: fp32
merge: {dtype: float32}
"""


def test_finsent_finetune_trains_a_soup_and_a_greedy_rerun_trains_only_the_new_seed(tiny_llama_dir, tmp_path, capsys):
    """Real trainings: each member a complete fine-tuning output on the same dev rows, the soup their mean, merged
    as a full model; the command line takes the recipe's seeds; one more seed re-uses the finished members."""
    from finsent.build.finetune import run_finetune
    from finsent.build.merge import run_merge
    from finsent.cli import main
    from finsent.core.recipes import load_recipe

    path = tmp_path / "tiny.yaml"
    # 24 training rows against 8 a step: each seed's steps see other rows, so the members' weights differ by more
    # than the rounding of one summation order (with 6 rows every step saw them all).
    path.write_text(SOUP_RECIPE.replace("DATA", write_finsent(tmp_path / "train.jsonl", 8)))
    out = tmp_path / "adapter"
    assert main(["finetune", "--recipe", str(path), "--base", str(tiny_llama_dir), "--out", str(out)]) == 0
    assert "uniform soup of seeds [1, 2]: dev accuracy" in capsys.readouterr().out
    seeds = tmp_path / "seeds"
    members = [read_report("training", seeds / f"seed-{s}" / "training.json") for s in (1, 2)]
    assert [m["seed"] for m in members] == [1, 2] and all(m["steps"] == 2 and m["dev"]["n"] > 0 for m in members)
    split = [(seeds / f"seed-{s}" / "dev_split.json").read_text() for s in (1, 2)]
    assert split[0] == split[1] and '"seed": 1' in split[0]  # one dev split, the first seed's
    one, two = soup_tensors(seeds / "seed-1"), soup_tensors(seeds / "seed-2")
    assert any(not torch.equal(one[k], two[k]) for k in one)  # the seed chose each step's rows
    soup = soup_tensors(out)
    assert all(torch.equal(soup[k], (one[k] + two[k]) / 2) for k in one)
    report = read_report("training", out / "training.json")
    assert [m["dev"] for m in report["soup"]["members"]] == [m["dev"] for m in members]
    assert report["dev"]["n"] == members[0]["dev"]["n"] and (out / "dev_split.json").read_text() == split[0]

    merged = run_merge(load_recipe(path), tiny_llama_dir, out, tmp_path / "merged")
    assert all(torch.equal(soup_tensors(merged)[k], v) for k, v in soup.items())  # float32: the soup itself

    before = (seeds / "seed-1" / "training.json").read_bytes()
    greedy = load_recipe(path, {"finetune.seeds": [1, 2, 3], "finetune.soup": "greedy"})
    run_finetune(greedy, tiny_llama_dir, out)
    report = read_report("training", out / "training.json")
    assert [m["reused"] for m in report["soup"]["members"]] == [True, True, False]
    assert (seeds / "seed-1" / "training.json").read_bytes() == before
    accuracies = [m["dev"]["accuracy"] for m in report["soup"]["members"]]
    assert report["soup"]["chosen"][0] == [1, 2, 3][accuracies.index(max(accuracies))]
    assert len(report["soup"]["trials"]) == 2
