"""Knowledge distillation (finetune.distill_from): the blended loss, exactly, and the stage that uses it; an ensemble
of teachers (a list): the KL from the mean of their distributions."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from finetune_factory import batch_of, random_teacher, tiny_recipe, write_finsent

from finsent.build.trainer import Distill, reference_loss, token_loss


def test_distilled_loss_is_the_blend_of_answer_loss_and_teacher_kl(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    student = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    teacher = random_teacher(tiny_llama_dir, seed=3)
    batch = batch_of(tiny_llama_dir, tmp_path, "answer")
    args = (batch["input_ids"], batch["attention_mask"], batch["labels"])
    ce, n = reference_loss(student, *args)

    # The same sum computed by hand from both models' full [B, T, V] logits at the labelled positions.
    keep = batch["labels"][:, 1:] != -100
    with torch.no_grad():
        s_logits = student(input_ids=args[0], attention_mask=args[1]).logits[:, :-1][keep]
        t_logits = teacher(input_ids=args[0], attention_mask=args[1]).logits[:, :-1][keep]
    t = 2.0
    p_teacher = F.softmax(t_logits / t, -1)
    kl = float((p_teacher * (p_teacher.log() - F.log_softmax(s_logits / t, -1))).sum())
    blended, count = token_loss(student, *args, distill=Distill(teacher, alpha=0.3, temperature=t))
    assert count == n
    assert blended.item() == pytest.approx(0.7 * float(ce) + 0.3 * t * t * kl, rel=1e-5)

    # A teacher identical to the student adds nothing: the loss is (1 - alpha) x cross-entropy, and the
    # gradients are (1 - alpha) x the plain ones.
    twin = copy.deepcopy(student).eval()
    student.zero_grad()
    plain, _ = token_loss(student, *args)
    plain.backward()
    grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    same, _ = token_loss(student, *args, distill=Distill(twin, alpha=0.5, temperature=1.0))
    same.backward()
    assert float(same) == pytest.approx(0.5 * float(plain), rel=1e-5)
    for g, p in zip(grads, student.parameters()):
        torch.testing.assert_close(p.grad, 0.5 * g, rtol=1e-4, atol=1e-7)


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


def test_an_ensemble_teacher_distills_the_mean_of_its_distributions_and_one_in_a_list_is_unchanged(tiny_llama_dir,
                                                                                                  tmp_path):
    from transformers import AutoModelForCausalLM

    student = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32)
    teachers = [random_teacher(tiny_llama_dir, seed=3), random_teacher(tiny_llama_dir, seed=4)]
    batch = batch_of(tiny_llama_dir, tmp_path, "answer")
    args = (batch["input_ids"], batch["attention_mask"], batch["labels"])
    ce, n = reference_loss(student, *args)

    # By hand from the three models' full [B, T, V] logits at the labelled positions, in float64.
    keep = batch["labels"][:, 1:] != -100
    with torch.no_grad():
        s_logits, *t_logits = (m(input_ids=args[0], attention_mask=args[1]).logits[:, :-1][keep].double()
                               for m in (student, *teachers))
    t = 2.0
    mixture = sum(F.softmax(z / t, -1) for z in t_logits) / 2
    kl = float((mixture * (mixture.log() - F.log_softmax(s_logits / t, -1))).sum())
    blended, count = token_loss(student, *args, distill=Distill(teachers, alpha=0.3, temperature=t))
    assert count == n
    assert blended.item() == pytest.approx(0.7 * float(ce) + 0.3 * t * t * kl, rel=1e-5)

    # [teacher] is the single teacher, bit for bit: the loss and every gradient.
    grads = {}
    for name, teacher in (("alone", teachers[0]), ("listed", [teachers[0]])):
        student.zero_grad()
        loss, _ = token_loss(student, *args, distill=Distill(teacher, alpha=0.3, temperature=t))
        loss.backward()
        grads[name] = (loss.detach(), [p.grad.clone() for p in student.parameters()])
    assert torch.equal(grads["alone"][0], grads["listed"][0])
    assert all(torch.equal(a, b) for a, b in zip(grads["alone"][1], grads["listed"][1]))


def test_finetune_distills_from_a_list_of_teacher_folders(tiny_llama_dir, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from finsent.build.finetune import FinetuneError, run_finetune

    folders = []
    for seed in (5, 6):
        folders.append(str(tmp_path / f"teacher-{seed}"))
        random_teacher(tiny_llama_dir, seed=seed).save_pretrained(folders[-1])
    data = write_finsent(tmp_path / "train.jsonl")
    settings = dict(distill_alpha=0.5, distill_temperature=2.0)
    losses = {}
    for name, source in (("one", folders[0]), ("listed", folders[:1]), ("both", folders)):
        out = run_finetune(tiny_recipe(data, distill_from=source, **settings), tiny_llama_dir, tmp_path / name,
                           max_steps=2)
        report = json.loads((out / "training.json").read_text())
        assert report["distill"] == {"from": source, "alpha": 0.5, "temperature": 2.0}
        losses[name] = report["train_loss"]
    assert losses["listed"] == losses["one"] != losses["both"]

    other = tmp_path / "other"
    LlamaForCausalLM(LlamaConfig(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2)).save_pretrained(other)
    with pytest.raises(FinetuneError) as err:
        run_finetune(tiny_recipe(data, distill_from=[folders[0], str(other)]), tiny_llama_dir, tmp_path / "bad",
                     max_steps=1)
    assert str(err.value) == (f"finetune.distill_from[1] {other}: its vocabulary has 1000 tokens, the student's "
                              "49152: distillation needs the same tokenizer or a trimmed copy of it")
    assert not (tmp_path / "bad").exists()
