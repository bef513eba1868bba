"""Writes the reports and results of a release folder, with fixed numbers, for tests.

The card's golden render and the push tests build their release folders with these, so the values
are deterministic; the model files come from a real model folder (``add_model``), or, for the card,
a sparse stand-in of the published size (``write_weights``). Every report is checked against its one
declaration in ``finsent.core.reports`` before it is written, and may hold no field that is not declared
there: the factory cannot drift from what the writers and the card use. Beside them: the export stage's manifest
with stand-in files (``add_exports``), a copy with another TFNS score (``copy_release``), a real merged release of a
base plus a small LoRA (``merged_release``), and the golden card that ``add_exports(write_reports(...))`` renders.
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import yaml
from checkout import TESTS

from finsent.core.outputs import is_toolkit_output, write_marker
from finsent.core.reports import SCHEMAS, check_report

MODEL_FILES = ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json",
               "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")
BENCH = {  # benchmark -> (dataset, split, n)
    "tfns": ("zeroshot/twitter-financial-news-sentiment", "validation", 2388),
    "fpb": ("../shared/data/fpb/train.jsonl", "train-sample-400", 400),
    "nwgi": ("oliverwang15/news_with_gpt_instructions", "test", 4047),
}
CREATED = "2026-11-24T12:00:00+00:00"
# The card render of ``add_exports(write_reports(...))``: FINSENT_UPDATE_GOLDEN=1 rewrites it (tests/hub/test_card.py).
GOLDEN_CARD = TESTS / "hub" / "golden" / "model_card.md"


def add_model(release: Path, model_dir: Path) -> None:
    """Copy the files of a saved model + tokenizer (those that exist) into the release folder."""
    release.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, release / name)


def pruning_report(hidden=2048, before=8192, after=4916, layers=16, params_before=1235814400,
                   params_after=913770496, bytes_on_disk=3655081984) -> dict:
    return {"method": "ppm", "ratio": 0.4, "round_to": 1, "hidden_size": hidden,
            "intermediate_before": before, "intermediate_after": after,
            "expansion_before": before / hidden * 100, "expansion_after": after / hidden * 100,
            "kept_per_layer": [after] * layers, "params_before": params_before, "params_after": params_after,
            "bytes_on_disk": bytes_on_disk}


def training_report() -> dict:
    return {"steps": 897, "epochs": 3.0, "learning_rate": 3e-4, "warmup_steps": 45, "effective_batch": 256,
            "loss": "answer", "train_loss": 0.2134, "tokens_per_second": 5120.5, "seconds": 2160.0,
            "peak_memory_mb": 14336.0, "trainable_params": 4378112, "rows": 76772,
            "data": [{"path": "FinGPT/fingpt-sentiment-train", "schema": "fingpt", "split": "train", "scheme": "3/7",
                      "weight": 1.0, "rows_read": 76772, "rows_used": 76772}],
            "lora": {"r": 8, "alpha": 32, "dropout": 0.1,
                     "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]},
            "precision": "bf16"}


def build_report(git_commit: str | None = "f3ecb25db19a1894fa278a7e2a1953aadfd8ad37", model_params=913770496) -> dict:
    """reports/build.json as the release's merge stage writes it (``write_reports`` leaves it out: the card and the
    push read none of it; the eval's provenance does)."""
    return {"git_commit": git_commit, "code_sha256": "cd" * 32,
            "versions": {"finsent": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0", "peft": "0.18.0"},
            "model_params": model_params, "created": CREATED}


def eval_result(benchmark: str, scheme: str, mode: str, weighted_f1: float, accuracy: float | None = None,
                model: str = "Llama-FinSent-S") -> dict:
    """One results JSON (shared schema) with a 3-class confusion matrix consistent with its n."""
    dataset, split, n = BENCH[benchmark]
    labels = ["negative", "neutral", "positive"] if scheme == "3" else [
        "strong negative", "moderately negative", "mildly negative", "neutral", "mildly positive",
        "moderately positive", "strong positive"]
    k = len(labels)
    per = n // k
    matrix = [[per if i == j else 0 for j in range(k)] for i in range(k)]
    matrix[-1][-1] += n - per * k
    accuracy = weighted_f1 + 0.01 if accuracy is None else accuracy
    return {
        "model": model, "model_hash": "0123456789abcdef", "benchmark": benchmark, "dataset": dataset,
        "split": split, "data_sha256": "ab" * 32, "scheme": scheme, "mode": mode, "n": n,
        "metrics": {"accuracy": accuracy, "macro_f1": round(weighted_f1 - 0.02, 4), "weighted_f1": weighted_f1,
                    "per_class": {lab: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": per} for lab in labels},
                    "labels": labels, "confusion_matrix": matrix, "unparseable": 0},
        "seconds": 120.5, "items_per_second": round(n / 120.5, 3), "versions": {"torch": "2.13.0"},
        "created": CREATED,
    }


def speed_report() -> dict:
    rows = [
        {"config": "score b16", "dtype": "float32", "threads": 2, "mode": "score", "scheme": "3", "batch_size": 16,
         "items_per_second": 2.5, "p50_ms": 6400.0, "p95_ms": 6900.0, "peak_memory_mb": 4200.0,
         "speedup_vs_card": 10.4},
        {"config": "card generate", "dtype": "float32", "threads": 2, "mode": "generate", "scheme": "3",
         "batch_size": 1,
         "items_per_second": 0.24, "p50_ms": 4150.0, "p95_ms": 4400.0, "peak_memory_mb": 3900.0,
         "speedup_vs_card": 1.0},
    ]
    return {"device": "AMD EPYC", "threads": 2, "memory": "process_rss", "model": "Llama-FinSent-S",
            "shape": "Llama-3.2-1B, GLU 4916", "params": 913770496, "bytes_on_disk": 1827540992, "rows": rows,
            "compute_floor": {"items_per_second": 2.9, "note": "one 30-token forward pass"}}


def pruning_cost_report() -> dict:
    """What build/bench/quality_table.py writes as pruning_cost.json: two runs of a SmolLM2 recipe, 0 and 40 %."""
    row = {"pruned": True, "dev_n": 1318, "finsent_dev": None, "wall_minutes": 74.5, "resumed_from_step": 0,
           "commit": "30cad0b3", "cpu": "Intel Xeon Platinum 8481C"}
    return {"source": "python build/bench/quality_table.py --reference lora-r8-dev", "reference": "lora-r8-dev",
            "recipe": "smollm2-135m-fingpt", "base": "smollm2", "method": "ppm",
            "split": "dev: 0.1 of each training source", "timing": "timed on a shared 2-core machine",
            "cpu": "Intel Xeon Platinum 8481C",
            "rows": [{**row, "run": "lora-r8-noprune", "removed_share": 0.0, "pruned": False, "params": 134515008,
                      "fp16_mb": 269.0, "dev_accuracy": 0.8589, "tfns_dev": 0.8618, "fpb_dev": 0.8512,
                      "seven_class_test": 0.1455, "items_per_second": 21.25},
                     {**row, "run": "lora-r8-dev", "removed_share": 0.4, "params": 102685248, "fp16_mb": 205.4,
                      "dev_accuracy": 0.8467, "tfns_dev": 0.8513, "fpb_dev": 0.8347, "seven_class_test": 0.1402,
                      "items_per_second": None}]}


def write_pruning_cost(folder: Path, plot: bool = True) -> Path:
    """``folder/pruning_cost.json`` (checked) and, if ``plot``, a stand-in ``pruning_cost.png`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pruning_cost.json"
    path.write_text(json.dumps(checked("pruning_cost", pruning_cost_report()), indent=2))
    if plot:
        (folder / "pruning_cost.png").write_bytes(b"\x89PNG\r\n\x1a\npruning cost")
    return path


REFERENCES = {
    "metric": "weighted_f1", "scheme": "3",
    "models": [
        {"name": "FinGPT v3.3 (Llama-2-13B + LoRA)", "source": "AI4Finance-Foundation/FinGPT",
         "note": "reported elsewhere", "weighted_f1": {"fpb": 0.882, "fiqa": 0.874, "tfns": 0.903, "nwgi": 0.643}},
        {"name": "GPT-4", "source": "AI4Finance-Foundation/FinGPT", "note": "reported elsewhere",
         "weighted_f1": {"fpb": 0.833, "fiqa": 0.630, "tfns": 0.808, "nwgi": None}},
    ],
}

RECIPE = {
    "name": "llama-finsent-s",
    "description": "Llama-3.2-1B, 40 % of GLU neurons pruned, LoRA on FinGPT sentiment",
    "model": {"base": "meta-llama/Llama-3.2-1B", "license": "llama3.2"},
    "prune": {"method": "ppm", "ratio": 0.4},
    "finetune": {"data": [{"path": "FinGPT/fingpt-sentiment-train"}]},
    "eval": {"benchmarks": [{"name": "tfns"}, {"name": "nwgi", "scheme": 7}], "modes": ["score", "generate"]},
    "publish": {"repo_id": "alice/Llama-FinSent-S", "tag": "v1.0.0", "max_regression": 0.01},
}


def checked(kind: str, data: dict) -> dict:
    """``data`` if it satisfies the ``kind`` schema and declares every field it holds (top level)."""
    check_report(kind, data, f"release_factory {kind}")
    undeclared = sorted(set(data) - set(SCHEMAS[kind].fields))
    assert not undeclared, f"release_factory {kind}: fields not declared in finsent.core.reports: {undeclared}"
    return data


def write_weights(path: Path, params: int = 913770496, dtype: str = "F16") -> Path:
    """A sparse safetensors file of ``params`` values (one tensor; zeros that take no disk space) with a
    valid header: the size of the published fp16 model without writing 1.8 GB."""
    width = {"F16": 2, "BF16": 2, "F32": 4}[dtype]
    header = json.dumps({"model.weight": {"dtype": dtype, "shape": [params], "data_offsets": [0, width * params]}})
    header += " " * (-len(header) % 8)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(header)) + header.encode())
        fh.truncate(8 + len(header) + width * params)
    return path


def write_reports(release: Path, scores: dict[tuple[str, str, str], float] | None = None,
                  references: bool = True) -> Path:
    """reports/{pruning,training}.json + recipe.yaml, eval/<b>-<s>-<m>.json (+ PNG), speed.json, references,
    and the sparse stand-in weights unless the folder already has weights (``add_model``)."""
    (release / "reports").mkdir(parents=True, exist_ok=True)
    (release / "eval").mkdir(parents=True, exist_ok=True)
    if not is_toolkit_output(release):  # a release folder finsent wrote (its card may be rendered again)
        write_marker(release, "release")
    if not any(release.glob("*.safetensors")):
        write_weights(release / "model.safetensors")
    (release / "reports" / "pruning.json").write_text(json.dumps(checked("pruning", pruning_report()), indent=2))
    (release / "reports" / "training.json").write_text(json.dumps(checked("training", training_report()), indent=2))
    (release / "reports" / "recipe.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    scores = scores if scores is not None else {("tfns", "3", "score"): 0.8512, ("tfns", "3", "generate"): 0.8231,
                                                ("nwgi", "7", "score"): 0.4123, ("fpb", "3", "score"): 0.7845}
    for (bench, scheme, mode), f1 in scores.items():
        stem = f"{bench}-{scheme}-{mode}"
        result = checked("eval", eval_result(bench, scheme, mode, f1))
        (release / "eval" / f"{stem}.json").write_text(json.dumps(result, indent=2))
        (release / "eval" / f"{stem}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + stem.encode())
    (release / "eval" / "speed.json").write_text(json.dumps(checked("speed", speed_report()), indent=2))
    if references:
        (release / "eval" / "references.yaml").write_text(yaml.safe_dump(REFERENCES, sort_keys=False))
    return release


def add_exports(release: Path, onnx: bool = True, agreement=(1.0, 0.995, 1.0)) -> Path:
    """What the export stage leaves (reports/exports.json and the files it lists, here stand-ins: the card reads
    the manifest, never the files' bytes) plus the shipped pipeline, with fixed numbers."""
    from finsent.core.pipeline import pipeline_source

    (release / "finsent_pipeline.py").write_text(pipeline_source().read_text())
    files = [{"format": "gguf", "quant": "f16", "path": "llama-finsent-s-F16.gguf", "bytes": 1_834_000_000},
             {"format": "gguf", "quant": "q8_0", "path": "llama-finsent-s-Q8_0.gguf", "bytes": 975_000_000}]
    if onnx:
        files.append({"format": "onnx", "quant": None, "path": "onnx", "bytes": 3_660_000_000})
    for entry, share in zip(files, agreement):
        entry.update(sha256="0" * 64, agreement=share)
        if entry["format"] == "onnx":
            (release / "onnx").mkdir(exist_ok=True)
            (release / "onnx" / "model.onnx").write_bytes(b"onnx")
        else:
            (release / entry["path"]).write_bytes(b"GGUF")
    manifest = {"weights": {"model.safetensors": "0" * 64}, "files": files, "scheme": "3", "kind": "news",
                "n": 200, "texts": "sent_valid.csv", "device": "CPU AMD EPYC, 2 cores"}
    (release / "reports" / "exports.json").write_text(json.dumps(manifest))
    return release


def merged_release(base: Path, out: Path, dtype: str = "float16", tolerance: float = 1.0) -> Path:
    """A release folder as the merge stage writes it: base + a small non-zero LoRA, merged and checked."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finsent.build.merge import run_merge
    from finsent.core.recipes import Recipe

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"]))
    torch.manual_seed(0)
    for name, weight in lora.named_parameters():
        if "lora_B" in name:
            weight.data.normal_(0, 0.01)
    adapter = out.with_name(out.name + "-adapter")
    lora.save_pretrained(adapter)
    recipe = Recipe(name="export-test")
    recipe.merge.dtype, recipe.merge.tolerance = dtype, tolerance
    return run_merge(recipe, base, adapter, out)


def copy_release(src: Path, dst: Path, tfns_f1: float | None = None) -> Path:
    import shutil

    shutil.copytree(src, dst)
    if tfns_f1 is not None:
        path = dst / "eval" / "tfns-3-score.json"
        result = json.loads(path.read_text())
        result["metrics"]["weighted_f1"] = tfns_f1
        path.write_text(json.dumps(result))
    return dst
