"""Knowledge distillation (finetune.distill_from): the stage that trains with it, and its refusal of another
vocabulary."""

from __future__ import annotations

import json

import pytest
from finetune_factory import random_teacher, tiny_recipe, write_finsent


def test_finetune_distills_from_a_teacher_folder_and_refuses_another_vocabulary(tiny_llama_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from finsent.build.finetune import FinetuneError, run_finetune

    teacher_dir = tmp_path / "teacher"
    random_teacher(tiny_llama_dir, seed=5).save_pretrained(teacher_dir)
    recipe = tiny_recipe(write_finsent(tmp_path / "train.jsonl"), distill_from=str(teacher_dir),
                         distill_alpha=0.5, distill_temperature=2.0)
    out = run_finetune(recipe, tiny_llama_dir, tmp_path / "adapter", max_steps=2)
    report = json.loads((out / "training.json").read_text())
    assert report["distill"] == {"from": str(teacher_dir), "alpha": 0.5, "temperature": 2.0}
    plain = run_finetune(tiny_recipe(str(tmp_path / "train.jsonl")), tiny_llama_dir, tmp_path / "plain", max_steps=2)
    assert json.loads((plain / "training.json").read_text())["train_loss"] != report["train_loss"]

    other = tmp_path / "other"
    LlamaForCausalLM(LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(other)
    recipe.finetune.distill_from = str(other)
    with pytest.raises(FinetuneError, match="its vocabulary has 1000 tokens, the student's 49152"):
        run_finetune(recipe, tiny_llama_dir, tmp_path / "bad", max_steps=1)
    assert not (tmp_path / "bad").exists() and not (tmp_path / ".bad.checkpoints").exists()  # refused first
