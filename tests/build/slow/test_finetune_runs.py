"""Fine-tuning and merging as they run: the stage writes its adapter and report and resumes, an interrupted run
keeps its checkpoints, bf16, the command line, merges checked, and the real SmolLM2 pruned, tuned and merged."""

from __future__ import annotations

import json

import pytest
import torch
from checkout import REPO
from finetune_factory import TRAIN_CONTRACT, lora_model, tiny_recipe, write_finsent

from finsent.core.outputs import MARKER
from finsent.core.recipes import Recipe, load_recipe
from finsent.core.reports import read_report


def test_finetune_writes_adapter_and_report_and_resumes(tiny_llama_dir, tmp_path):
    from finsent.build.finetune import run_finetune

    recipe = tiny_recipe(write_finsent(tmp_path / "train.jsonl"))
    out = run_finetune(recipe, tiny_llama_dir, tmp_path / "adapter", max_steps=2)
    report = json.loads((out / "training.json").read_text())
    assert TRAIN_CONTRACT <= set(report)
    assert report["steps"] == 2 and report["rows"] == 48 and report["effective_batch"] == 8
    assert read_report("training", out / "training.json") == report  # the schema release and card read
    assert report["processes"] == 1 and report["fsdp"] is None and report["resumed_from_step"] is None
    assert report["loss"] == "answer" and report["precision"] == "float32"
    # r=8 on q,k,v,o (64x64, 64x32 twice, 64x64) and gate/up/down (64x128) in 2 layers.
    per_layer = 8 * ((64 + 64) * 2 + (64 + 32) * 2 + (64 + 128) * 3)
    assert report["trainable_params"] == 2 * per_layer
    assert [s["rows_used"] for s in report["data"]] == [24, 24]
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert (out / "checkpoints" / "checkpoint-2").is_dir()
    assert (out / MARKER).is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "train.jsonl"]
    resumed = run_finetune(recipe, tiny_llama_dir, tmp_path / "adapter", resume=True, max_steps=4)
    again = json.loads((resumed / "training.json").read_text())
    assert again["steps"] == 4 and again["resumed_from_step"] == 2
    assert [e["step"] for e in again["log"]][-2:] == [3, 4]  # continued, not restarted


def test_an_interrupted_finetune_keeps_its_checkpoints_for_resume_and_writes_no_adapter(tiny_llama_dir, tmp_path):
    from transformers import TrainerCallback

    from finsent.build.finetune import checkpoint_dir, run_finetune

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:  # after checkpoint-2 was saved
                raise RuntimeError("killed at step 3")

    recipe = tiny_recipe(write_finsent(tmp_path / "train.jsonl"))
    out = tmp_path / "adapter"
    with pytest.raises(RuntimeError, match="killed at step 3"):
        run_finetune(recipe, tiny_llama_dir, out, max_steps=4, callbacks=[Crash()])
    work = checkpoint_dir(out)
    assert not out.exists() and work == tmp_path / ".adapter.checkpoints"
    assert (work / "checkpoint-2").is_dir() and (work / MARKER).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".adapter.checkpoints", "train.jsonl"]  # no temp folder

    class Steps(TrainerCallback):
        ran: list = []

        def on_step_end(self, args, state, control, **kwargs):
            self.ran.append(state.global_step)

    resumed = run_finetune(recipe, tiny_llama_dir, out, resume=True, max_steps=4, callbacks=[Steps()])
    report = json.loads((resumed / "training.json").read_text())
    assert report["steps"] == 4 and Steps.ran == [3, 4]  # continued from checkpoint-2, not restarted
    assert [e["step"] for e in report["log"]] == [1, 2, 3, 4]
    assert (out / "checkpoints" / "checkpoint-4").is_dir() and not work.exists()


def test_finetune_with_a_shared_prefix_learns_the_same_adapter(tiny_llama_dir, tmp_path):
    from safetensors.torch import load_file

    from finsent.build.finetune import run_finetune

    data = write_finsent(tmp_path / "train.jsonl")
    weights = []
    for share in (False, True):  # no dropout, so both runs see exactly the same loss and gradients
        # Batches of 8 rows hold at most 4 distinct instructions (3/7 classes x tweet/news): always shared.
        recipe = tiny_recipe(data, share_prefix=share, lora_dropout=0.0, batch_size=8, grad_accum=1)
        out = run_finetune(recipe, tiny_llama_dir, tmp_path / f"adapter-{share}", max_steps=3)
        assert json.loads((out / "training.json").read_text())["share_prefix"] is share
        weights.append(load_file(out / "adapter_model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=1e-3, atol=1e-5)
    assert any(float(w.abs().max()) > 0 for name, w in weights[1].items() if "lora_B" in name)  # it did learn
    with pytest.raises(ValueError, match="share_prefix needs finetune.fast_loss"):
        run_finetune(tiny_recipe(data, share_prefix=True, fast_loss=False), tiny_llama_dir, tmp_path / "x")


def test_finetune_in_bf16_with_eager_attention(tiny_llama_dir, tmp_path):
    """bf16 autocast over a bf16 frozen base, eager attention: runs, reports both, keeps float32 adapters."""
    from safetensors.torch import load_file

    from finsent.build.finetune import run_finetune

    recipe = tiny_recipe(write_finsent(tmp_path / "train.jsonl"), precision="bf16", attn_implementation="eager",
                         share_prefix=True, lora_dropout=0.0)
    out = run_finetune(recipe, tiny_llama_dir, tmp_path / "adapter", max_steps=3)
    report = json.loads((out / "training.json").read_text())
    assert report["precision"] == "bfloat16" and report["attn_implementation"] == "eager"
    assert report["steps"] == 3 and all(e["loss"] > 0 for e in report["log"])
    weights = load_file(out / "adapter_model.safetensors")
    assert {w.dtype for w in weights.values()} == {torch.float32}
    assert any(float(w.abs().max()) > 0 for name, w in weights.items() if "lora_B" in name)  # it did learn
    recipe.finetune.attn_implementation = "no-such-kernel"
    with pytest.raises(ValueError, match="no-such-kernel"):
        run_finetune(recipe, tiny_llama_dir, tmp_path / "bad", max_steps=1)


def test_finetune_command_line(tiny_llama_dir, tmp_path, capsys):
    from finsent.cli import main

    data = write_finsent(tmp_path / "train.jsonl", 1)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: r\nfinetune:\n  data:\n    - {{path: {data}, schema: finsent, scheme: 3}}\n"
                      "  batch_size: 2\n  grad_accum: 1\n  logging_steps: 1\n")
    assert main(["finetune", "--recipe", str(recipe), "--base", str(tiny_llama_dir), "--out",
                 str(tmp_path / "a"), "--max-steps", "1"]) == 0
    assert "steps 1" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": "very good", "coarse": "positive", "kind": "news"}\n')
    recipe.write_text(f"name: r\nfinetune:\n  data:\n    - {{path: {bad}, schema: finsent}}\n")
    assert main(["finetune", "--recipe", str(recipe), "--base", str(tiny_llama_dir), "--out",
                 str(tmp_path / "b")]) == 2
    assert f"{bad}: line 1: unknown 7-class label 'very good'" in capsys.readouterr().err


def test_merge_reproduces_adapter_and_rejects_a_corrupted_merge(tiny_llama_dir, tmp_path, monkeypatch):
    from peft.tuners.lora import layer as lora_layer
    from transformers import AutoModelForCausalLM

    from finsent.build.merge import MergeError, probe_batch, probe_logits, run_merge

    adapter = tmp_path / "adapter"
    lora_model(tiny_llama_dir).save_pretrained(adapter)
    recipe = Recipe(name="tiny")
    recipe.merge.dtype, recipe.merge.tolerance = "float32", 1e-4
    out = run_merge(recipe, tiny_llama_dir, adapter, tmp_path / "merged")
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    from transformers import AutoTokenizer

    ids, mask = probe_batch(AutoTokenizer.from_pretrained(out))
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert float((probe_logits(merged, ids, mask) - probe_logits(base, ids, mask)).abs().max()) > 1e-3
    checked = json.loads((adapter / "merge.json").read_text())
    assert checked["max_abs_logprob_diff_top10"] <= 1e-4 and checked["argmax_agreement"] == 1.0

    # A merge that silently skips the adapter's weights must be caught, and nothing left behind.
    monkeypatch.setattr(lora_layer.Linear, "merge", lambda self, *a, **k: None)
    with pytest.raises(MergeError, match=r"max \|log-prob difference\| .* exceeds merge.tolerance"):
        run_merge(recipe, tiny_llama_dir, adapter, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()  # nothing left behind: not even a folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nor a temporary sibling
    # ... and a failed merge over an earlier good one keeps the earlier one, byte for byte.
    good = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(MergeError, match="exceeds merge.tolerance"):
        run_merge(recipe, tiny_llama_dir, adapter, out)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == good


def test_prune_finetune_merge_reload_on_real_smollm2(smollm2_dir, tmp_path):
    """The build stages chained on the real model: trim and prune 12.5 %, a few LoRA steps, fp16 merge, classify."""
    from finsent.build.finetune import run_finetune
    from finsent.build.merge import run_merge
    from finsent.build.pruning import run_prune, vocab_rows
    from finsent.core.classify import FinSentClassifier

    recipe = load_recipe(REPO / "build" / "recipes" / "smollm2-135m.yaml")
    pruned = run_prune(recipe.prune, str(smollm2_dir), tmp_path / "pruned", progress=False, vocab=vocab_rows(recipe))
    report = json.loads((pruned / "pruning.json").read_text())
    assert (report["intermediate_after"], report["vocab"]["after"]) == (1344, 10_616)
    assert report["params_after"] == 102_364_992
    for src in recipe.finetune.data:
        src.limit = 32
    recipe.finetune.batch_size, recipe.finetune.grad_accum, recipe.finetune.logging_steps = 8, 1, 1
    adapter = run_finetune(recipe, pruned, tmp_path / "adapter", max_steps=3)
    report = json.loads((adapter / "training.json").read_text())
    # LoRA r8 on the pruned SmolLM2 (hidden 576, 3 KV heads x 64, GLU 1344), 30 layers.
    per_layer = 8 * ((576 + 576) * 2 + (576 + 192) * 2 + (576 + 1344) * 3)
    assert report["trainable_params"] == 30 * per_layer == 2_304_000
    assert report["steps"] == 3 and report["rows"] == 64 and report["loss"] == "answer"
    merged = run_merge(recipe, pruned, adapter, tmp_path / "release")
    assert json.loads((merged / "config.json").read_text())["intermediate_size"] == 1344
    merge_report = json.loads((adapter / "merge.json").read_text())
    assert merge_report["dtype"] == "float16" and merge_report["max_abs_logprob_diff_top10"] <= recipe.merge.tolerance
    from safetensors import safe_open

    with safe_open(merged / "model.safetensors", "pt") as weights:
        assert {weights.get_slice(k).get_dtype() for k in weights.keys()} == {"F16"}
        assert not any("lora" in k for k in weights.keys())
    clf = FinSentClassifier.from_pretrained(str(merged))
    pred = clf.classify("Orbit Air doubles its dividend after a record year", "7")
    assert pred.label in pred.probs and sum(pred.probs.values()) == pytest.approx(1.0, abs=1e-4)
