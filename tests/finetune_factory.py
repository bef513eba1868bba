"""Tiny fine-tuning inputs for tests: a finsent-schema data file, a recipe that trains a tiny model in a few steps
on 2 threads, a LoRA with non-zero B, one collated batch, a perturbed teacher, a recipe over the shared data, a
stand-in training for model soups and the hand-computed mean of members; the keys every training report holds."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from finsent.build.data import collate, encode_example, load_source
from finsent.core.prompts import PromptEncoder
from finsent.core.recipes import DataSource, Recipe

TRAIN_CONTRACT = {"steps", "epochs", "learning_rate", "warmup_steps", "effective_batch", "loss", "train_loss",
                  "tokens_per_second", "seconds", "peak_memory_mb", "allocator", "trainable_params", "rows", "data",
                  "lora", "precision"}
HEADLINES = [
    ("Orbit Air doubles its dividend after a record year", "strong positive"),
    ("Talon Mining shares sink as the regulator halts its main mine", "strong negative"),
    ("Cobalt Foods will publish results on 4 March", "neutral"),
    ("Vega Retail trims costs slightly; outlook unchanged", "mildly positive"),
    ("Harbor Bank warns of softer loan growth next quarter", "moderately negative"),
    ("$PLMX up 3% as deliveries edge past forecasts", "moderately positive"),
]


def write_finsent(path: Path, repeat: int = 4) -> str:
    from finsent.core.labels import to_coarse

    rows = [{"id": f"t{i}-{j}", "text": text, "label": label, "coarse": to_coarse(label),
             "kind": "tweet" if text.startswith("$") else "news", "topic": "test"}
            for j in range(repeat) for i, (text, label) in enumerate(HEADLINES)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def tiny_recipe(data: str, **finetune) -> Recipe:
    recipe = Recipe(name="tiny")
    recipe.finetune.data = [DataSource(path=data, schema="finsent", scheme="3"),
                            DataSource(path=data, schema="finsent", scheme="7")]
    # fp32: exact comparisons between runs; precision auto would pick bf16 on a CPU with AMX.
    settings = dict(batch_size=4, grad_accum=2, max_steps=3, learning_rate=1e-3, logging_steps=1, save_steps=2,
                    threads=2, precision="fp32")
    settings.update(finetune)
    for key, value in settings.items():
        setattr(recipe.finetune, key, value)
    recipe.merge.dtype = "float32"
    return recipe


def lora_model(model_dir, seed=0):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"]))
    torch.manual_seed(seed)
    for name, p in model.named_parameters():  # non-zero B: the adapter changes the output
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return model


def batch_of(model_dir, tmp_path, loss, repeat=1):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    examples = load_source(DataSource(path=write_finsent(tmp_path / "d.jsonl", repeat), schema="finsent",
                                      scheme="7"))
    encoder = PromptEncoder(tok, max_length=64)
    return collate([encode_example(encoder, ex, loss) for ex in examples], tok.pad_token_id)


def recipe_file(tmp_path, shared_data, first: int = 1000) -> str:
    path = tmp_path / "r.yaml"
    path.write_text(
        f"name: r\nprune:\n  method: ppm\n  ratio: 0.1\n  vocab_first: {first}\n"
        f"finetune:\n  dev_fraction: 0.1\n  seed: 3\n  data:\n"
        f"    - {{path: {shared_data / 'tfns' / 'sent_train.csv'}, schema: tfns, limit: 400}}\n"
        f"    - {{path: {shared_data / 'fpb' / 'train.jsonl'}, schema: fpb, limit: 150}}\n")
    return str(path)


def random_teacher(model_dir, seed: int):
    from transformers import AutoModelForCausalLM

    teacher = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return teacher.eval()


class FakeTraining:
    """Stands in for ``run_finetune`` in a model soup (``soup.run_soup``'s ``train``): member ``seed`` is the base
    plus 0.01 x N(0, 1) noise drawn from that seed on every weight, saved with a training.json whose dev accuracy is
    ``accuracies[seed]``, whose seconds are the seed and whose peak memory is 100 + the seed; ``seeds`` lists the
    members it trained, in order."""

    def __init__(self, accuracies: dict[int, float]):
        self.accuracies, self.seeds = accuracies, []

    def __call__(self, recipe, base_dir, out_dir, **kwargs):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from finsent.core.outputs import output_dir
        from finsent.core.reports import write_report

        seed = recipe.finetune.seed
        self.seeds.append(seed)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
        accuracy = self.accuracies[seed]
        report = {"method": "full", "steps": 2, "epochs": 0.5, "learning_rate": 1e-3, "warmup_steps": 0,
                  "effective_batch": 8, "loss": "answer", "train_loss": float(seed), "tokens_per_second": 10.0 * seed,
                  "seconds": float(seed), "peak_memory_mb": 100.0 + seed, "trainable_params": 1, "rows": 8,
                  "data": [{"path": "d.jsonl"}], "precision": "float32", "lora": None, "seed": seed,
                  "dev": {"n": 4, "accuracy": accuracy, "macro_f1": accuracy, "per_source": {}}}
        with output_dir(out_dir, kind="finetune") as tmp:
            model.save_pretrained(tmp)
            AutoTokenizer.from_pretrained(base_dir).save_pretrained(tmp)
            write_report("training", report, tmp / "training.json")
        return out_dir


def soup_tensors(folder) -> dict:
    """The tensors of a soup's or a member's model.safetensors, by name."""
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / "model.safetensors"))


def mean_of(members: list[dict]) -> dict:
    """The correctly rounded float32 mean of members' tensors (summed in float64), computed here by hand."""
    return {k: (sum(m[k].double() for m in members) / len(members)).float() for k in members[0]}
