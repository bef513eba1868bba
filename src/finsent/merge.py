"""Merge a LoRA adapter into its base and save the plain model that is published, checked against the adapter.

    finsent merge --base runs/smollm2-135m/pruned --adapter runs/smollm2-135m/adapter \\
        --out releases/smollm2-135m [--dtype float16]

``merge_and_unload`` folds B @ A x alpha / r into every target weight; the result is cast to the
recipe's dtype (``merge.dtype``) and saved as safetensors with the tokenizer and the base's
generation config. Then the saved folder is loaded back and its next-token log-probabilities on a few
FinGPT prompts are compared with the unmerged adapter model's (float32), on the reference's 10 most
likely tokens at every position (the ones label scoring and generation read; raw logits over the whole
49k-256k vocabulary differ by up to ~0.5 in float16 from rounding alone). If the largest |difference|
exceeds ``merge.tolerance`` the written weights are removed and ``MergeError`` says by how much.
Measured on SmolLM2 pruned 40 %: float32 merge 2e-4 (logits), float16 0.09, bfloat16 0.51.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from .errors import FinsentError
from .recipes import Recipe, load_recipe

logger = logging.getLogger(__name__)

DTYPES = ("float32", "float16", "bfloat16")
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


def probe_batch(tokenizer, max_length: int = 512):
    """Right-padded ids and mask [P, T] of the probe prompts, built by the classifier's prompt code."""
    import torch

    from .prompts import PromptEncoder, instruction

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
              dtype: str | None = None) -> Path:
    """Merge ``adapter_dir`` into ``base_dir``, save it in ``out_dir`` (other files there are kept), check it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    name = dtype or recipe.merge.dtype
    if name not in DTYPES:
        raise MergeError(f"merge dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} is not a LoRA adapter folder: it has no adapter_config.json")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).to(device)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    ids, mask = probe_batch(tokenizer)
    expected = probe_logits(model, ids, mask)  # the adapter model, float32: the reference
    merged = model.merge_and_unload().to(getattr(torch, name))
    try:
        merged.generation_config = GenerationConfig.from_pretrained(base_dir)
    except OSError:
        logger.info("%s has no generation_config.json: keeping the model's default", base_dir)

    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob("model*.safetensors*"):  # an older save's shards would be loaded too
        stale.unlink()
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
    if not diff <= recipe.merge.tolerance:  # also catches NaN
        for written in [*out_dir.glob("model*.safetensors*"), out_dir / "config.json"]:
            written.unlink(missing_ok=True)
        raise MergeError(
            f"merged model disagrees with the adapter model: max |log-prob difference| {diff:.4g} (top-{TOP_K} "
            f"tokens, {report['probe_tokens']} probe positions) exceeds merge.tolerance {recipe.merge.tolerance} "
            f"({name}); the merged weights were not kept"
        )
    logger.info("merged %s + %s -> %s (%s, max |log-prob diff| %.4g <= %g)", base_dir, adapter_dir, out_dir,
                name, diff, recipe.merge.tolerance)
    (adapter_dir / "merge.json").write_text(json.dumps(report, indent=2) + "\n")
    return out_dir


# --- command line ------------------------------------------------------------------------------


def register(sub) -> None:
    p = sub.add_parser("merge", help="fold a LoRA adapter into its base and save it (checked)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the base model folder the adapter was trained on")
    p.add_argument("--adapter", required=True, help="the LoRA adapter folder (finsent finetune's output)")
    p.add_argument("--out", required=True, help="folder to write the merged model into")
    p.add_argument("--recipe", help="recipe YAML for merge.dtype / merge.tolerance (default: their defaults)")
    p.add_argument("--dtype", choices=DTYPES, help="dtype of the saved weights (default: the recipe's, float16)")
    p.add_argument("--tolerance", type=float,
                   help="max |log-prob difference| on the top-10 tokens allowed (default: the recipe's)")
    p.set_defaults(func=_merge)


def _merge(args) -> int:
    import sys

    from .recipes import Recipe

    recipe = load_recipe(args.recipe) if args.recipe else Recipe(name="merge")
    if args.tolerance is not None:
        recipe.merge.tolerance = args.tolerance
    try:
        out = run_merge(recipe, Path(args.base), Path(args.adapter), Path(args.out), dtype=args.dtype)
    except MergeError as exc:
        print(f"finsent merge: error: {exc}", file=sys.stderr)
        return 2
    report = json.loads((Path(args.adapter) / "merge.json").read_text())
    print(f"merged model: {out}  ({report['dtype']}, max |log-prob diff| {report['max_abs_logprob_diff_top10']}, "
          f"{report['bytes_on_disk']} bytes)")
    return 0
