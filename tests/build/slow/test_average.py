"""Tail averaging of the trained weights (finetune.average_from, trainer.WeightAverage)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from finetune_factory import tiny_recipe, write_finsent
from transformers import TrainerCallback

from finsent.core.recipes import DataSource
from finsent.core.reports import read_report


class Snapshots(TrainerCallback):
    """The trainable weights after every optimizer step, by step."""

    def __init__(self):
        self.at = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.at[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_the_mean_is_of_the_steps_from_the_fraction_on_and_swaps_in_and_out(tmp_path):
    from finsent.build.trainer import WeightAverage

    layer = torch.nn.Linear(2, 1, bias=False)
    average = WeightAverage(layer, 0.5)
    state = SimpleNamespace(max_steps=4, global_step=0, is_world_process_zero=True)
    average.on_train_begin(None, state, None)
    assert average.first_step == 2
    for step, value in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        layer.weight.data.fill_(value)
        state.global_step = step
        average.on_step_end(None, state, None)
    assert average.count == 3 and average.summary() == {"from": 0.5, "first_step": 2, "steps_averaged": 3}
    assert torch.equal(average.mean["weight"], torch.full((1, 2), 3.0))  # (2 + 3 + 4) / 3, exactly
    with average.swapped():
        assert torch.equal(layer.weight, torch.full((1, 2), 3.0))
    assert torch.equal(layer.weight, torch.full((1, 2), 4.0))  # the last weights back after a probe
    average.apply()
    assert torch.equal(layer.weight, torch.full((1, 2), 3.0))

    # saved into the checkpoint folder the Trainer just wrote, and read back by a resumed run
    (tmp_path / "checkpoint-4").mkdir()
    average.on_save(SimpleNamespace(output_dir=str(tmp_path)), state, None)
    resumed = WeightAverage(torch.nn.Linear(2, 1, bias=False), 0.5, str(tmp_path / "checkpoint-4"))
    resumed.on_train_begin(None, state, None)
    assert resumed.count == 3 and torch.equal(resumed.mean["weight"], torch.full((1, 2), 3.0))
    with pytest.raises(Exception, match="averages from step 2 over other weights"):
        WeightAverage(torch.nn.Linear(2, 1, bias=False), 0.75, str(tmp_path / "checkpoint-4")).on_train_begin(
            None, SimpleNamespace(max_steps=8, global_step=4), None)
    (tmp_path / "checkpoint-4" / WeightAverage.FILE).unlink()
    with pytest.raises(Exception, match="has no weight_average.safetensors but the average started at step 2"):
        WeightAverage(layer, 0.5, str(tmp_path / "checkpoint-4")).on_train_begin(None, state, None)


def test_finetune_saves_the_mean_of_the_last_steps_and_a_resume_continues_it(tiny_llama_dir, tmp_path):
    from finsent.build.finetune import run_finetune

    recipe = tiny_recipe(write_finsent(tmp_path / "train.jsonl"), average_from=0.5, lora_dropout=0.0)
    snapshots = Snapshots()
    out = run_finetune(recipe, tiny_llama_dir, tmp_path / "straight", max_steps=4, callbacks=[snapshots])
    report = read_report("training", out / "training.json")
    assert report["weight_average"] == {"from": 0.5, "first_step": 2, "steps_averaged": 3, "dev_last_weights": None}
    from safetensors.torch import load_file

    saved = load_file(str(out / "adapter_model.safetensors"))
    for name, mean in ((n, sum(snapshots.at[s][n] for s in (2, 3, 4)) / 3) for n in snapshots.at[4]):
        key = name.replace(".default", "")  # peft's file drops the adapter's name
        assert torch.allclose(saved[key], mean, atol=1e-7), name
        assert not torch.allclose(saved[key], snapshots.at[4][name], atol=1e-7), name  # not the last weights
    assert (out / "checkpoints" / "checkpoint-4" / "weight_average.safetensors").is_file()

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:  # after checkpoint-2, whose mean holds step 2
                raise RuntimeError("killed at step 3")

    with pytest.raises(RuntimeError, match="killed at step 3"):
        run_finetune(recipe, tiny_llama_dir, tmp_path / "resumed", max_steps=4, callbacks=[Crash()])
    out2 = run_finetune(recipe, tiny_llama_dir, tmp_path / "resumed", resume=True, max_steps=4)
    assert read_report("training", out2 / "training.json")["weight_average"]["steps_averaged"] == 3
    again = load_file(str(out2 / "adapter_model.safetensors"))
    for key, value in saved.items():
        assert torch.allclose(again[key], value, atol=1e-6), key


def test_full_finetune_scores_the_average_beside_the_last_weights(tiny_llama_dir, tmp_path):
    from finsent.build.finetune import FinetuneError, run_finetune

    data = write_finsent(tmp_path / "train.jsonl", repeat=1)
    recipe = tiny_recipe(data, method="full", dev_fraction=0.5, dev_every=2, max_steps=4, average_from=0.25)
    recipe.finetune.data = [DataSource(path=data, schema="finsent", scheme="3")]
    report = read_report("training", run_finetune(recipe, tiny_llama_dir, tmp_path / "full") / "training.json")
    average = report["weight_average"]
    assert average["first_step"] == 1 and average["steps_averaged"] == 4
    curve = report["dev_curve"]
    assert [c["step"] for c in curve] == [2, 4] and [c["average_steps"] for c in curve] == [2, 4]
    assert curve[-1]["average_accuracy"] == report["dev"]["accuracy"]  # the saved model is the average
    assert curve[-1]["accuracy"] == average["dev_last_weights"]["accuracy"]  # and the last weights scored too
    assert average["dev_last_weights"]["n"] == report["dev"]["n"] == 3

    recipe.finetune.fsdp = "full_shard"
    with pytest.raises(FinetuneError, match="average_from averages whole weights, which FSDP shards"):
        run_finetune(recipe, tiny_llama_dir, tmp_path / "fsdp")


def test_recipe_checks_average_from(tmp_path):
    from finsent.core.recipes import RecipeError, load_recipe

    path = tmp_path / "r.yaml"
    for value in ("1.0", "-0.1"):
        path.write_text(f"name: r\nfinetune:\n  average_from: {value}\n")
        with pytest.raises(RecipeError, match=rf"finetune.average_from must be in \[0, 1\) \(or null\), got {value}"):
            load_recipe(path)
    path.write_text("name: r\nfinetune:\n  average_from: 0.5\n")
    assert load_recipe(path).finetune.average_from == 0.5
