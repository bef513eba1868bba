"""Merge a LoRA adapter into its base and save the plain model that is published, checked against the adapter.

    finsent merge --base runs/smollm2-135m/pruned --adapter runs/smollm2-135m/adapter \\
        --out releases/smollm2-135m [--dtype float16]

``merge_and_unload`` folds B @ A x alpha / r into every target weight; the result is cast to the
recipe's dtype (``merge.dtype``) and saved as safetensors with the tokenizer and the base's
generation config. Then the saved folder is loaded back and its next-token log-probabilities on a few
FinGPT prompts are compared with the unmerged adapter model's (float32), on the reference's 10 most
likely tokens at every position (the ones label scoring and generation read; raw logits over the whole
49k-256k vocabulary differ by up to ~0.5 in float16 from rounding alone). If the largest |difference|
exceeds ``merge.tolerance`` nothing is kept and ``MergeError`` says by how much. The folder is built
in a temporary sibling of ``--out`` and renamed into place only when checked (``outputs.output_dir``);
an existing ``--out`` that finsent did not write is refused unless ``--overwrite``.
A merge that passes records the difference in ``ADAPTER/merge.json``. A recipe's tolerance must sit above the
rounding of its dtype (bfloat16 rounds more coarsely than float16, float32 hardly at all).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from finsent.core.errors import FinsentError, UsageError
from finsent.core.outputs import check_output_dir, output_dir, write_text_atomic
from finsent.core.pipeline import add_pipeline
from finsent.core.prompts import PromptEncoder, instruction
from finsent.core.recipe_values import MERGE_DTYPES
from finsent.core.recipes import Recipe

logger = logging.getLogger(__name__)

DTYPES = MERGE_DTYPES
# Probe texts written for this check (not from any dataset): both kinds, both schemes.
PROBES = [
    ("3", "news", "Northwind Freight lifts its annual profit forecast after record quarterly shipments."),
    ("3", "tweet", "$ACME down 9% premarket as the CEO resigns amid an accounting review"),
    ("7", "news", "The utility keeps its dividend unchanged and reaffirms guidance for the year."),
    ("7", "tweet", "Regulators fine Lakeside Bank $2bn over money-laundering failures"),
]
TOP_K = 10  # compare log-probs on the reference's k most likely next tokens at each position


class MergeError(FinsentError, RuntimeError):
    """The merged model does not reproduce the adapter model (or cannot be written)."""


class MergeInputError(UsageError, FileNotFoundError):
    """A merge input (the adapter or its base) is missing or is not what it should be."""


WHAT = "merge output folder"


def probe_batch(tokenizer, max_length: int = 512):
    """Right-padded ids and mask [P, T] of the probe prompts, built by the classifier's prompt code."""
    import torch


    encoder = PromptEncoder(tokenizer, max_length=max_length)
    rows = [encoder.encode(instruction(scheme, kind), text).ids for scheme, kind, text in PROBES]
    width = max(map(len, rows))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return ids, mask


def probe_logits(model, ids, mask):
    """float32 logits at the real (non-pad) positions: [n_real_tokens, V]."""
    import torch

    dev = next(model.parameters()).device
    with torch.inference_mode():
        logits = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), use_cache=False).logits
    return logits.float().cpu()[mask.bool()]


def disagreement(expected, actual, k: int = TOP_K) -> float:
    """max |log-prob difference| over ``expected``'s top-k tokens at every position; inputs [N, V] logits."""
    ref, got = expected.float().log_softmax(-1), actual.float().log_softmax(-1)
    top = ref.topk(min(k, ref.shape[-1]), dim=-1).indices
    return float((got.gather(1, top) - ref.gather(1, top)).abs().max())


def run_merge(recipe: Recipe, base_dir: Path, adapter_dir: Path, out_dir: Path,
              dtype: str | None = None, overwrite: bool = False) -> Path:
    """Merge ``adapter_dir`` into ``base_dir``, check it and save it as the folder ``out_dir``.

    Inputs and ``out_dir`` are checked before any model is loaded; the folder is written in a temporary
    sibling and replaces ``out_dir`` only once the check passed. A folder finsent did not write is
    refused unless ``overwrite``.
    """
    name = check_merge_inputs(recipe, base_dir, adapter_dir, dtype)
    reads = [base_dir, adapter_dir]
    out_dir = check_output_dir(out_dir, kind="release", overwrite=overwrite, what=WHAT, reads=reads)
    with output_dir(out_dir, kind="release", overwrite=overwrite, what=WHAT, reads=reads) as tmp:
        merge_into(recipe, base_dir, adapter_dir, tmp, dtype=name)
    logger.info("merged model saved to %s", out_dir)
    return out_dir


def check_merge_inputs(recipe: Recipe, base_dir, adapter_dir, dtype: str | None = None) -> str:
    """The merge dtype, once the dtype, the adapter and a local base folder are known to be usable."""
    name = dtype or recipe.merge.dtype
    if name not in DTYPES:
        raise MergeError(f"merge dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    base_dir = Path(base_dir)
    if adapter_dir is not None and not (Path(adapter_dir) / "adapter_config.json").is_file() \
            and not is_full_model(adapter_dir):
        raise MergeInputError(f"{adapter_dir} is not a LoRA adapter folder (no adapter_config.json) nor a fully "
                              "fine-tuned model (no config.json and weights)")
    if base_dir.exists() and not (base_dir / "config.json").is_file():
        raise MergeInputError(f"base model folder {base_dir} has no config.json")
    return name


def is_full_model(folder: Path) -> bool:
    """Whether ``folder`` holds a whole fine-tuned model (``finetune.method: full``) rather than a LoRA adapter."""
    folder = Path(folder)
    return (not (folder / "adapter_config.json").is_file() and (folder / "config.json").is_file()
            and any(folder.glob("*.safetensors")))


def merge_into(recipe: Recipe, base_dir: Path, adapter_dir: Path | None, folder: Path,
               dtype: str | None = None) -> Path:
    """Merge, save into the (new, empty) ``folder`` and check the saved weights; MergeError if they disagree.

    ``folder`` is a temporary folder of ``outputs.output_dir``: on an error its caller discards it whole.
    ``adapter_dir`` None (a recipe without training): ``base_dir`` itself is cast and checked the same way.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    name = check_merge_inputs(recipe, base_dir, adapter_dir, dtype)
    base_dir, out_dir = Path(base_dir), Path(folder)
    untrained = adapter_dir is None
    # No adapter: the base is the model (nothing to fold in), as for a fully fine-tuned one.
    adapter_dir = base_dir if untrained else Path(adapter_dir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    ids, mask = probe_batch(tokenizer)
    if is_full_model(adapter_dir):  # full fine-tuning or none: the float32 model itself is the reference
        model = AutoModelForCausalLM.from_pretrained(adapter_dir, dtype=torch.float32).to(device).eval()
        expected = probe_logits(model, ids, mask)
        merged = model.to(getattr(torch, name))
    else:
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device)
        model = PeftModel.from_pretrained(base, adapter_dir).eval()
        expected = probe_logits(model, ids, mask)  # the adapter model, float32: the reference
        merged = model.merge_and_unload().to(getattr(torch, name))
    try:
        merged.generation_config = GenerationConfig.from_pretrained(base_dir)
    except OSError:
        logger.info("%s has no generation_config.json: keeping the model's default", base_dir)

    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)

    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=getattr(torch, name)).to(device).eval()
    actual = probe_logits(reloaded, ids, mask)
    diff = disagreement(expected, actual)
    size = sum(p.stat().st_size for p in out_dir.glob("*.safetensors"))
    report = {"dtype": name, "max_abs_logprob_diff_top10": round(diff, 6), "tolerance": recipe.merge.tolerance,
              "max_abs_logit_diff": round(float((actual - expected).abs().max()), 6),
              "argmax_agreement": round(float((actual.argmax(-1) == expected.argmax(-1)).float().mean()), 4),
              "probe_tokens": int(mask.sum()), "bytes_on_disk": size}
    if not diff <= recipe.merge.tolerance:  # also catches NaN; the caller discards the folder
        raise MergeError(
            f"merged model disagrees with the adapter model: max |log-prob difference| {diff:.4g} (top-{TOP_K} "
            f"tokens, {report['probe_tokens']} probe positions) exceeds merge.tolerance {recipe.merge.tolerance} "
            f"({name}); the merged weights were not kept"
        )
    logger.info("merged %s + %s (%s, max |log-prob diff| %.4g <= %g)", base_dir, adapter_dir, name, diff,
                recipe.merge.tolerance)
    # Beside the adapter (the release copies it into reports/); never into a base folder it only read.
    report_dir = out_dir / "reports" if untrained else adapter_dir
    report_dir.mkdir(exist_ok=True)
    write_text_atomic(report_dir / "merge.json", json.dumps(report, indent=2) + "\n")
    # Plain transformers: ship the custom pipeline (finsent_pipeline.py, registered in config.json's
    # custom_pipelines), so pipeline("text-classification", model=folder, trust_remote_code=True) works.

    add_pipeline(out_dir)
    return out_dir


# --- command line ------------------------------------------------------------------------------


