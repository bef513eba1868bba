"""LoRA fine-tuning of a (pruned) causal LM on the FinGPT prompt, driven by a recipe's ``finetune`` section.

    finsent finetune --recipe build/recipes/smollm2-135m.yaml --base runs/smollm2-135m/pruned \\
        --out runs/smollm2-135m/adapter [--resume] [--max-steps N]

peft LoRA under transformers' Trainer (progress bar, checkpoints in ``OUT/checkpoints``, ``--resume``),
seeds fixed, CPU or GPU. The base weights are frozen (float32 on CPU; the autocast dtype on GPU),
the LoRA weights stay float32. Loss on the answer tokens by default (``loss: full`` = every token, as
the original notebook); with ``fast_loss`` the vocabulary projection runs only where a label is
learned (see ``finsent.trainer``). Writes the adapter, the tokenizer, ``training.json`` (the shared
contract), ``loss.png`` and ``checkpoints/`` as the folder OUT: built in a temporary sibling and renamed
into place when training is done (``outputs.output_dir``); an OUT that finsent did not write is refused
before anything loads, unless ``--overwrite``. While training, checkpoints go to the hidden sibling
``.OUT.checkpoints`` so that ``--resume`` finds them after a crash; a finished run moves them into OUT.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from functools import partial
from pathlib import Path

from .outputs import MARKER, OutputError, check_name, check_output_dir, is_toolkit_output, output_dir
from .recipes import FinetuneSection, Recipe, load_recipe

WHAT = "adapter output folder"  # names the folder in OutputError messages

logger = logging.getLogger(__name__)


def repo_root(recipe: Recipe) -> Path | None:
    """The repository a recipe lives in (build/recipes/x.yaml -> .): data paths may be relative to it."""
    if not recipe.source:
        return None
    parents = Path(recipe.source).resolve().parents
    return parents[2] if len(parents) > 2 else None


def add_lora(model, f: FinetuneSection):
    """``model`` wrapped with the section's LoRA adapters, kept in float32 whatever the base dtype."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=f.lora_r, lora_alpha=f.lora_alpha, lora_dropout=f.lora_dropout,
                      target_modules=list(f.target_modules), bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return model


def checkpoint_dir(out_dir: Path) -> Path:
    """Where a run of ``out_dir`` keeps its checkpoints while it trains: a hidden sibling that outlives a crash."""
    out_dir = Path(out_dir)
    return out_dir.with_name(f".{out_dir.name}.checkpoints")


def _check_checkpoint_dir(out_dir: Path) -> Path:
    work = checkpoint_dir(out_dir)
    if work.exists() and not (work.is_dir() and is_toolkit_output(work)):
        raise OutputError(f"checkpoint folder {work} exists but finsent did not write it: move it away "
                          "(nothing was written)")
    return work


def _prepare_checkpoints(out_dir: Path, resume: bool) -> Path:
    """The checkpoint folder of this run: emptied for a fresh run; for --resume, the crashed run's checkpoints
    or else a copy of the finished run's ``OUT/checkpoints`` (OUT itself is left as it is until the swap)."""
    work = _check_checkpoint_dir(out_dir)
    if resume and any(work.glob("checkpoint-*")):
        return work
    if work.exists():
        shutil.rmtree(work)
    finished = out_dir / "checkpoints"
    if resume and any(finished.glob("checkpoint-*")):
        shutil.copytree(finished, work)
    work.mkdir(parents=True, exist_ok=True)
    (work / MARKER).write_text(json.dumps({"written_by": "finsent", "what": "training checkpoints"}) + "\n")
    return work


def run_finetune(recipe: Recipe, base_dir: Path, out_dir: Path, resume: bool = False,
                 max_steps: int | None = None, callbacks: list | None = None, overwrite: bool = False) -> Path:
    """Train a LoRA adapter on ``base_dir`` with the recipe's data; returns ``out_dir`` (the adapter folder).

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (e.g. a benchmark's periodic eval).
    ``out_dir`` is checked before anything loads: a folder finsent did not write is refused unless ``overwrite``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments, set_seed

    from .data import EncodedDataset, collate, load_mixture
    from .prompts import PromptEncoder
    from .trainer import FinSentTrainer, ThroughputCallback, autocast_dtype

    f = recipe.finetune
    base_dir, out_dir = Path(base_dir), check_output_dir(out_dir, overwrite=overwrite, what=WHAT)
    _check_checkpoint_dir(out_dir)
    if base_dir.exists() and not (base_dir / "config.json").is_file():
        raise FileNotFoundError(f"base model folder {base_dir} has no config.json")
    if f.share_prefix and not f.fast_loss:
        raise ValueError("finetune.share_prefix needs finetune.fast_loss (it feeds the label-position loss)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if f.threads:
        torch.set_num_threads(f.threads)
    amp = autocast_dtype(f.precision, device)
    if amp is torch.float16 and device == "cpu":
        raise ValueError("finetune.precision fp16 needs a GPU; use auto, bf16 or fp32 on a CPU")
    set_seed(f.seed)

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Frozen base in the autocast dtype wherever autocast runs (a GPU, or a CPU with native bf16): autocast
    # would cast every float32 weight again at every matmul; without autocast, float32.
    base_dtype = amp if amp is not None else torch.float32
    extra = {"attn_implementation": f.attn_implementation} if f.attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=base_dtype, **extra)
    context = getattr(model.config, "max_position_embeddings", None) or f.max_length

    data = load_mixture(f.data, seed=f.seed, skip_bad_rows=f.skip_bad_rows, root=repo_root(recipe))
    encoder = PromptEncoder(tokenizer, max_length=min(f.max_length, context))
    dataset = EncodedDataset(encoder, data.examples, f.loss)
    lengths = dataset.lengths()
    logger.info("%d training rows, %.1f tokens a row on average (max %d)", len(dataset),
                sum(lengths) / len(lengths), max(lengths))

    model = add_lora(model, f)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("LoRA: %d trainable parameters", trainable)

    work = _prepare_checkpoints(out_dir, resume)
    args = TrainingArguments(
        output_dir=str(work),
        per_device_train_batch_size=f.batch_size,
        gradient_accumulation_steps=f.grad_accum,
        num_train_epochs=f.epochs,
        max_steps=max_steps if max_steps is not None else f.max_steps,
        learning_rate=f.learning_rate,
        weight_decay=f.weight_decay,
        # warmup_steps >= 1 is a step count (the original's 1000); a float < 1 is a ratio of the run.
        warmup_steps=f.warmup_steps if f.warmup_steps is not None else f.warmup_ratio,
        lr_scheduler_type="linear",
        logging_steps=f.logging_steps,
        save_steps=f.save_steps,
        save_total_limit=1,
        seed=f.seed,
        data_seed=f.seed,
        bf16=amp is torch.bfloat16,
        fp16=amp is torch.float16,
        use_cpu=device == "cpu",
        report_to="none",
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if f.group_by_length else "random",
        dataloader_num_workers=0,
    )
    trainer = FinSentTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             data_collator=partial(collate, pad_id=tokenizer.pad_token_id), fast_loss=f.fast_loss,
                             share_prefix=f.share_prefix)
    trainer.add_callback(ThroughputCallback(trainer))
    for callback in callbacks or []:
        trainer.add_callback(callback)
    checkpoint = resume and any(work.glob("checkpoint-*"))
    if resume and not checkpoint:
        logger.warning("--resume: no checkpoint in %s or %s, starting from scratch", work, out_dir / "checkpoints")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=True if checkpoint else None)
    seconds = time.perf_counter() - start

    with output_dir(out_dir, overwrite=overwrite, what=WHAT) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        state = trainer.state
        report = {
            "base": str(base_dir),
            "steps": state.global_step,
            "epochs": round(float(state.epoch or 0), 4),
            "learning_rate": f.learning_rate,
            "warmup_steps": args.get_warmup_steps(state.max_steps),
            "effective_batch": f.batch_size * f.grad_accum * max(1, args.world_size),
            "loss": f.loss,
            "fast_loss": f.fast_loss,
            "share_prefix": f.share_prefix,
            "attn_implementation": model.config._attn_implementation,
            "train_loss": round(float(result.training_loss), 5),
            "tokens_per_second": round(trainer.tokens_seen / seconds, 1) if seconds > 0 else None,
            "seconds": round(seconds, 1),
            "peak_memory_mb": round(_peak_memory_mb(device), 1),
            "trainable_params": trainable,
            "rows": len(dataset),
            "tokens_per_row": round(sum(lengths) / len(lengths), 1),
            "max_length": encoder.max_length,
            "data": data.stats,
            "lora": {"r": f.lora_r, "alpha": f.lora_alpha, "dropout": f.lora_dropout,
                     "target_modules": list(f.target_modules)},
            "precision": str(amp).replace("torch.", "") if amp is not None else "float32",
            "device": device,
            "threads": torch.get_num_threads(),
            "seed": f.seed,
            "log": [{k: v for k, v in e.items() if k in ("step", "loss", "learning_rate", "tokens_per_second")}
                    for e in state.log_history if "loss" in e],
        }
        (tmp / "training.json").write_text(json.dumps(report, indent=2) + "\n")
        _plot_loss(report["log"], tmp / "loss.png", recipe.name)
        work.rename(tmp / "checkpoints")  # last: a failure before this keeps them for --resume
    logger.info("adapter saved to %s (%d steps, train loss %.4f, %.0f tokens/s)", out_dir, report["steps"],
                report["train_loss"], report["tokens_per_second"] or 0)
    return out_dir


def _peak_memory_mb(device: str) -> float:
    """GPU: peak allocated by torch; CPU: the process's peak resident set (ru_maxrss, KiB on Linux)."""
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _plot_loss(log: list[dict], path: Path, title: str) -> None:
    """Training loss by step (a PNG beside training.json); skipped without matplotlib or with < 2 points."""
    if len(log) < 2:
        return
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("matplotlib not installed: no loss plot")
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([e["step"] for e in log], [e["loss"] for e in log], marker=".")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{title}: training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- command line ------------------------------------------------------------------------------


def register(sub) -> None:
    p = sub.add_parser("finetune", help="train a LoRA adapter (recipe's finetune section)",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", required=True, help="recipe YAML (build/recipes/...)")
    p.add_argument("--base", help="base model folder (default: the recipe's model.base, e.g. the embedded smollm2)")
    p.add_argument("--out", help="adapter folder to write (default: runs/<recipe name>/adapter); a folder "
                                  "finsent did not write is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even if finsent did not write it (or it holds committed files)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint of an interrupted run (.OUT.checkpoints) or of a "
                        "finished one (OUT/checkpoints)")
    p.add_argument("--max-steps", type=int, help="stop after N optimizer steps (overrides epochs and max_steps)")
    p.add_argument("--skip-bad-rows", action="store_true", help="skip malformed data rows instead of stopping")
    p.set_defaults(func=_finetune)


def _finetune(args) -> int:
    from .models import locate_model

    overrides = {"finetune.skip_bad_rows": True} if args.skip_bad_rows else None
    recipe = load_recipe(args.recipe, overrides)
    out = Path(args.out) if args.out else Path("runs") / check_name(recipe.name, "recipe name") / "adapter"
    check_output_dir(out, overwrite=args.overwrite, what=WHAT)  # before the base model is looked for
    base = Path(args.base) if args.base else Path(locate_model(recipe.model.base))
    adapter = run_finetune(recipe, base, out, resume=args.resume, max_steps=args.max_steps, overwrite=args.overwrite)
    report = json.loads((adapter / "training.json").read_text())
    print(f"adapter: {adapter}  steps {report['steps']}  train loss {report['train_loss']}  "
          f"{report['tokens_per_second']} tokens/s  {report['seconds']} s")
    return 0
