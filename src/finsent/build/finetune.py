"""Fine-tuning of a (pruned) causal LM on the FinGPT prompt, driven by a recipe's ``finetune`` section.

``method: lora`` (default) trains LoRA adapters on the frozen base; ``method: full`` trains every weight
(``freeze_embeddings`` keeps the embedding matrix out). ``dev_fraction`` holds a dev split out of the training
files and scores it after training (``finsent.build.devsplit``); ``distill_from`` adds a teacher's distribution to
the loss (``trainer.Distill``); ``seeds`` trains one model per seed and writes their weight average
(``finsent.build.soup``).

    finsent finetune --recipe build/recipes/smollm2-135m.yaml --base runs/smollm2-135m/pruned \\
        --out runs/smollm2-135m/adapter [--resume] [--max-steps N]

peft LoRA under transformers' Trainer (progress bar, checkpoints in ``OUT/checkpoints``, ``--resume``),
seeds fixed, CPU or GPU. The base weights are frozen (float32 on CPU; the autocast dtype on GPU),
the LoRA weights stay float32. Loss on the answer tokens by default (``loss: full`` = every token, as
the original notebook); with ``fast_loss`` the vocabulary projection runs only where a label is
learned (see ``finsent.build.trainer``). Writes the adapter, the tokenizer, ``training.json`` (the shared
contract), ``loss.png`` and ``checkpoints/`` as the folder OUT: built in a temporary sibling and renamed
into place when training is done (``outputs.output_dir``); an OUT that finsent did not write is refused
before anything loads, unless ``--overwrite``. While training, checkpoints go to the hidden sibling
``.OUT.checkpoints`` so that ``--resume`` finds them after a crash; a finished run moves them into OUT.

Many devices: launched by ``torchrun --nproc_per_node N -m finsent.cli finetune ...`` (or ``accelerate
launch``), every process trains on its share of each batch (DDP: the Trainer's own distributed mode; gloo
on CPUs, NCCL on GPUs), so one optimizer step sees ``batch_size x grad_accum x N`` rows (``effective_batch``
in training.json) and the loss curve is a single process's on that global batch
(``tests/build/slow/test_distributed.py``). Rank 0 alone prepares the checkpoint folder, writes OUT (adapter,
training.json, loss.png, the checkpoints' model and optimizer; each rank adds its own RNG state to a
checkpoint, as the Trainer does) and logs; the others wait for it and raise if it failed. OUT and its
checkpoints must be on storage that every process sees (one machine, or a shared filesystem).
``finetune.fsdp`` shards the model with FSDP instead of replicating it, for bases too big for one device.
``finsent release`` is for one process (``require_single_process`` is its check): launch this command
distributed, then ``finsent release RECIPE --only merge`` (and ``--only eval``, ...) in one process.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
from functools import partial
from pathlib import Path

from finsent.build.allocator import allocator_name
from finsent.build.data import EncodedDataset, collate, training_data
from finsent.build.devsplit import score_model, split_record
from finsent.build.distributed import (
    DistributedError,
    barrier,
    end_process_group,
    fsdp_arguments,
    launch_world,
    on_rank0,
)
from finsent.build.soup import run_soup
from finsent.build.vocab import VocabError, token_map, trim_model
from finsent.core.errors import UsageError
from finsent.core.models import locate_model
from finsent.core.outputs import (
    OutputError,
    check_output_dir,
    is_toolkit_output,
    output_dir,
    write_marker,
    write_text_atomic,
)
from finsent.core.prompts import PromptEncoder
from finsent.core.recipes import FinetuneSection, Recipe, RecipeError, check_recipe
from finsent.core.reports import write_report

WHAT = "adapter output folder"  # names the folder in OutputError messages

logger = logging.getLogger(__name__)


class FinetuneError(UsageError, ValueError):
    """Settings that cannot train (share_prefix without fast_loss, fp16 on a CPU, FSDP in one process...)."""


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
    write_marker(work, "checkpoints")
    return work


def run_finetune(recipe: Recipe, base_dir: Path, out_dir: Path, resume: bool = False,
                 max_steps: int | None = None, callbacks: list | None = None, overwrite: bool = False) -> Path:
    """Train a LoRA adapter on ``base_dir`` with the recipe's data; returns ``out_dir`` (the adapter folder).

    ``callbacks`` are extra ``transformers.TrainerCallback`` objects (e.g. a benchmark's periodic eval).
    ``out_dir`` is checked before anything loads: a folder finsent did not write is refused unless ``overwrite``.
    """
    import torch
    from transformers import set_seed

    from finsent.build.trainer import FinSentTrainer

    f = recipe.finetune
    _check_settings(recipe)
    if f.seeds:  # a model soup: this function once per seed, then the members' weight average
        return run_soup(recipe, base_dir, out_dir, run_finetune, resume=resume, max_steps=max_steps,
                        callbacks=callbacks, overwrite=overwrite)
    base_dir = Path(base_dir)
    out_dir = check_output_dir(out_dir, kind="finetune", overwrite=overwrite, what=WHAT, reads=[base_dir])
    _check_checkpoint_dir(out_dir)
    base = locate_model(str(base_dir))  # a folder with a loadable config.json, or a Hub id; else a FinsentError
    rank, world = launch_world()
    if world > 1 and rank != 0:
        logging.getLogger("finsent").setLevel(logging.WARNING)  # rank 0 tells the story
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if f.threads:
        torch.set_num_threads(f.threads)
    amp = _autocast(f, device, world)
    set_seed(f.seed)

    work = checkpoint_dir(out_dir)
    args = _training_arguments(f, work, max_steps, amp, device, world)
    if args.world_size != world:  # the launcher's variables and the Trainer's process group disagree
        raise DistributedError(f"WORLD_SIZE={world} but the Trainer runs {args.world_size} processes")

    tokenizer, model = _load_base(f, base, amp)
    context = getattr(model.config, "max_position_embeddings", None) or f.max_length

    data = training_data(f)
    encoder = PromptEncoder(tokenizer, max_length=min(f.max_length, context))
    dataset = EncodedDataset(encoder, data.examples, f.loss)
    lengths = dataset.lengths()
    logger.info("%d training rows, %.1f tokens a row on average (max %d)", len(dataset),
                sum(lengths) / len(lengths), max(lengths))

    if f.method == "lora":
        model = add_lora(model, f)
    elif f.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
        model.get_output_embeddings().weight.requires_grad_(False)  # the same tensor when tied
    if f.activation_checkpointing == "mlp":
        from finsent.build.trainer import checkpoint_mlps

        logger.info("activation checkpointing: %d MLPs recomputed in the backward", checkpoint_mlps(model))
    distill = load_teacher(f, model, tokenizer, amp or torch.float32, device)  # computes in the autocast dtype
    trainable = _log_setup(f, model, data, world)

    barrier(world)  # every rank has checked OUT before rank 0 touches the checkpoint folder
    on_rank0(world, rank, lambda: _prepare_checkpoints(out_dir, resume), "prepared the checkpoint folder")
    barrier(world)
    trainer = FinSentTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             data_collator=partial(collate, pad_id=tokenizer.pad_token_id), fast_loss=f.fast_loss,
                             share_prefix=f.share_prefix, distill=distill, pass_tokens=f.pass_tokens)
    if f.fsdp and not trainer.is_fsdp_enabled and rank == 0:  # accelerate shards on GPUs only; CPUs run DDP
        logger.warning("finetune.fsdp %r: FSDP is not available on %s, training with DDP (every process holds the "
                       "whole model)", f.fsdp, device)
    checkpoints, average, dev_probe = _add_callbacks(trainer, f, model, tokenizer, data.dev, world, work, resume,
                                                     out_dir, callbacks)
    resumed_from = _step_of(checkpoints[-1]) if checkpoints else None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(checkpoints[-1]) if checkpoints else None)
    seconds = time.perf_counter() - start
    tokens = trainer.global_tokens_seen()  # collective: every rank
    # FSDP: the LoRA weights are sharded; gathering them is a collective too (rank 0 then saves them).
    state_dict = trainer.accelerator.get_state_dict(trainer.model_wrapped) if trainer.is_fsdp_enabled else None

    dev_last = None
    if average is not None:
        # the last weights' dev score first: the run itself then says what averaging gained
        dev_last = score_model(model, tokenizer, data.dev) if data.dev and rank == 0 else None
        average.apply()
    dev = score_model(model, tokenizer, data.dev) if data.dev and rank == 0 else None
    report = _training_report(f, base_dir, trainer, args, result, seconds, tokens, model, dataset, lengths,
                              encoder, data, dev, distill, dev_probe, average, dev_last, amp, device, resumed_from,
                              trainable)

    def write() -> None:
        with output_dir(out_dir, kind="finetune", overwrite=overwrite, what=WHAT, reads=[base_dir]) as tmp:
            model.save_pretrained(tmp, state_dict=state_dict)  # LoRA: the adapter; full: the whole model
            tokenizer.save_pretrained(tmp)
            if data.dev:
                write_text_atomic(tmp / "dev_split.json",
                                  json.dumps(split_record(f.dev_fraction, f.split_seed, data.dev), indent=1) + "\n")
            write_report("training", report, tmp / "training.json")
            _plot_loss(report["log"], tmp / "loss.png", recipe.name)
            work.rename(tmp / "checkpoints")  # last: a failure before this keeps them for --resume

    on_rank0(world, rank, write, f"wrote {out_dir}")
    end_process_group(world)
    logger.info("adapter saved to %s (%d steps, train loss %.4f, %.0f tokens/s)", out_dir, report["steps"],
                report["train_loss"], report["tokens_per_second"] or 0)
    return out_dir


def _autocast(f: FinetuneSection, device: str, world: int):
    """The dtype autocast computes in (None: float32), once the precision and sharding can run here."""
    import torch

    from finsent.build.trainer import autocast_dtype

    amp = autocast_dtype(f.precision, device)
    if amp is torch.float16 and device == "cpu":
        raise FinetuneError("finetune.precision fp16 needs a GPU; use auto, bf16 or fp32 on a CPU")
    if f.fsdp and world < 2:
        raise FinetuneError(f"finetune.fsdp {f.fsdp!r} shards the model over several processes: launch with "
                            "torchrun --nproc_per_node N (or accelerate launch), or set finetune.fsdp: null")
    return amp


def _log_setup(f: FinetuneSection, model, data, world: int) -> int:
    """Say what is trained, on which rows, by how many processes; return the number of trainable weights."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("%s: %d trainable parameters", "LoRA" if f.method == "lora" else "full fine-tuning", trainable)
    if data.dev:
        logger.info("dev split: %d rows held out of training (%s of each source, seed %d)",
                    sum(map(len, data.dev.values())), f.dev_fraction, f.split_seed)
    if world > 1:
        logger.info("%d processes (%s): %d rows an optimizer step (%d a device x %d accumulation x %d)", world,
                    "FSDP " + f.fsdp if f.fsdp else "DDP", f.batch_size * f.grad_accum * world, f.batch_size,
                    f.grad_accum, world)
    return trainable


def _add_callbacks(trainer, f: FinetuneSection, model, tokenizer, dev, world: int, work: Path, resume: bool,
                   out_dir: Path, callbacks) -> tuple[list[Path], object, object]:
    """Give ``trainer`` its callbacks (throughput, the tail average, the dev probe, the caller's); return the
    checkpoints to resume from (oldest first), the WeightAverage and the DevCallback (None when unused)."""
    from finsent.build.trainer import DevCallback, ThroughputCallback, WeightAverage

    trainer.add_callback(ThroughputCallback(trainer))
    checkpoints = sorted(work.glob("checkpoint-*"), key=_step_of) if resume else []
    # before the dev probe: a probe at step N scores a mean that already holds step N
    average = (WeightAverage(model, f.average_from, str(checkpoints[-1]) if checkpoints else None)
               if f.average_from is not None else None)
    dev_probe = (DevCallback(tokenizer, dev, f.dev_every, average)
                 if dev and f.dev_every and world == 1 else None)
    for callback in [c for c in (average, dev_probe) if c] + list(callbacks or []):
        trainer.add_callback(callback)
    resumed_from = _step_of(checkpoints[-1]) if checkpoints else None
    if resume and not checkpoints:
        logger.warning("--resume: no checkpoint in %s or %s, starting from scratch", work, out_dir / "checkpoints")
    elif resumed_from is not None:
        logger.info("--resume: continuing from %s (step %d)", checkpoints[-1].name, resumed_from)
    return checkpoints, average, dev_probe


def _training_arguments(f: FinetuneSection, work: Path, max_steps: int | None, amp, device: str, world: int):
    """The Trainer's arguments for the recipe's finetune section (``amp``: the autocast dtype or None)."""
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(
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
        # Several processes (torchrun / accelerate launch): DDP over gloo on CPUs (NCCL, the default, on GPUs);
        # every LoRA weight gets a gradient at every step, so DDP need not look for unused ones.
        ddp_backend="gloo" if device == "cpu" and world > 1 else None,
        ddp_find_unused_parameters=False if world > 1 else None,
        **fsdp_arguments(f),
    )


def _load_base(f: FinetuneSection, base: str, amp):
    """``(tokenizer, model)`` of the base to train, the model in the dtype its training computes in."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Frozen base in the autocast dtype wherever autocast runs (a GPU, or a CPU with native bf16): autocast
    # would cast every float32 weight again at every matmul; without autocast, float32. Under FSDP float32
    # (sharded, so 1/N of it per device): one dtype in every shard unit, FSDP's mixed precision casts to compute.
    # Full fine-tuning trains the weights themselves: float32 master weights, autocast computes in bf16.
    base_dtype = amp if amp is not None and not f.fsdp and f.method == "lora" else torch.float32
    extra = {"attn_implementation": f.attn_implementation} if f.attn_implementation else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(base, dtype=base_dtype, **extra)
    except (ValueError, ImportError) as exc:
        if not f.attn_implementation:
            raise
        raise FinetuneError(f"finetune.attn_implementation {f.attn_implementation!r} cannot load {base}: "
                            f"{exc}") from None
    return tokenizer, model


def _training_report(f: FinetuneSection, base_dir: Path, trainer, args, result, seconds: float, tokens: int, model,
                     dataset, lengths: list[int], encoder, data, dev, distill, dev_probe, average, dev_last, amp,
                     device: str, resumed_from: int | None, trainable: int) -> dict:
    """training.json: what was trained, how, how fast, and its dev score (schema: ``finsent.core.reports``)."""
    import torch

    state = trainer.state
    return {
        "method": f.method,
        "freeze_embeddings": f.freeze_embeddings if f.method == "full" else None,
        "base": str(base_dir),
        "steps": state.global_step,
        "epochs": round(float(state.epoch or 0), 4),
        "learning_rate": f.learning_rate,
        "warmup_steps": args.get_warmup_steps(state.max_steps),
        "effective_batch": f.batch_size * f.grad_accum * max(1, args.world_size),
        "processes": max(1, args.world_size),
        "fsdp": f.fsdp if trainer.is_fsdp_enabled else None,
        "resumed_from_step": resumed_from,
        "loss": f.loss,
        "fast_loss": f.fast_loss,
        "share_prefix": f.share_prefix,
        "attn_implementation": model.config._attn_implementation,
        "activation_checkpointing": f.activation_checkpointing,
        "pass_tokens": f.pass_tokens,
        "train_loss": round(float(result.training_loss), 5),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 else None,
        "seconds": round(seconds, 1),
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
        "allocator": allocator_name(),
        "trainable_params": trainable,
        "rows": len(dataset),
        "tokens_per_row": round(sum(lengths) / len(lengths), 1),
        "max_length": encoder.max_length,
        "data": data.stats,
        "lora": {"r": f.lora_r, "alpha": f.lora_alpha, "dropout": f.lora_dropout,
                 "target_modules": list(f.target_modules)} if f.method == "lora" else None,
        "dev": dev,
        "distill": {"from": f.distill_from, "alpha": f.distill_alpha, "temperature": f.distill_temperature}
        if distill else None,
        "dev_curve": dev_probe.curve if dev_probe else [],
        "weight_average": {**average.summary(), "dev_last_weights": dev_last} if average is not None else None,
        "precision": str(amp).replace("torch.", "") if amp is not None else "float32",
        "device": device,
        "threads": torch.get_num_threads(),
        "seed": f.seed,
        "log": [{k: v for k, v in e.items() if k in ("step", "loss", "learning_rate", "tokens_per_second")}
                for e in state.log_history if "loss" in e],
    }


def load_teacher(f: FinetuneSection, student, tokenizer, dtype, device: str):
    """The frozen teacher of ``finetune.distill_from`` (a ``trainer.Distill``), or None.

    The two distributions are compared token by token, so the teacher must read the student's token ids: a
    student whose vocabulary was trimmed (``prune.vocab_first``) gets a teacher trimmed to the same tokens,
    in memory, matched by the tokens' strings (``finsent.build.vocab.token_map``). A list names an ensemble:
    each teacher is loaded (and trimmed) so, and all of them stay on ``device`` while training.
    """
    if not f.distill_from:
        return None
    from finsent.build.trainer import Distill

    if not f.fast_loss:
        raise FinetuneError("finetune.distill_from needs finetune.fast_loss (the teacher is read at the answer "
                            "positions)")
    if isinstance(f.distill_from, str):
        teacher = _load_teacher(f, "finetune.distill_from", f.distill_from, student, tokenizer, dtype, device)
    else:
        teacher = [_load_teacher(f, f"finetune.distill_from[{i}]", name, student, tokenizer, dtype, device)
                   for i, name in enumerate(f.distill_from)]
    return Distill(teacher, f.distill_alpha, f.distill_temperature)


def _load_teacher(f: FinetuneSection, key: str, name: str, student, tokenizer, dtype, device: str):
    """One frozen teacher (``name``, the recipe's ``key``) on ``device``, reading the student's token ids."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = locate_model(name)
    teacher = AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(device).eval()
    teacher.requires_grad_(False)
    vocab, theirs = student.config.vocab_size, teacher.config.vocab_size
    if vocab != theirs:
        mapping = None
        if vocab < theirs:  # perhaps a trimmed student: find its tokens in the teacher's tokenizer
            try:
                mapping = token_map(tokenizer, AutoTokenizer.from_pretrained(source))
            except VocabError as exc:
                raise FinetuneError(f"{key} {name}: {exc}") from None
            except (OSError, ValueError):  # the teacher folder has no tokenizer to match tokens with
                mapping = None
        if mapping is None or len(mapping) != vocab:
            raise FinetuneError(f"{key} {name}: its vocabulary has {theirs} tokens, the "
                                f"student's {vocab}: distillation needs the same tokenizer or a trimmed copy of it")
        trim_model(teacher, mapping)  # the ids are sorted: trimming keeps the tokens' order
        logger.info("teacher trimmed to the student's %d tokens (of %d)", vocab, theirs)
    logger.info("distilling from %s (alpha %s, temperature %s, %d parameters)", name, f.distill_alpha,
                f.distill_temperature, sum(p.numel() for p in teacher.parameters()))
    return teacher


def _step_of(checkpoint: Path) -> int:
    """checkpoint-120 -> 120 (-1 for a name without a step: sorts first)."""
    tail = checkpoint.name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else -1


def _check_settings(recipe: Recipe) -> None:
    """The recipe's values in range (a Recipe built in code skips load_recipe's checks) and its finetune
    settings able to work together; RecipeError / FinetuneError naming the key otherwise."""
    check_recipe(recipe)
    f = recipe.finetune
    if not f.enabled:
        raise RecipeError(f"{recipe.source or recipe.name}: finetune.enabled is false: this recipe trains nothing")
    if not f.data:
        raise RecipeError(f"{recipe.source or recipe.name}: finetune.data is empty: name at least one source")
    if f.share_prefix and not f.fast_loss:
        raise FinetuneError("finetune.share_prefix needs finetune.fast_loss (it feeds the label-position loss)")
    if f.average_from is not None and f.fsdp:
        raise FinetuneError("finetune.average_from averages whole weights, which FSDP shards over the processes: "
                            "set finetune.fsdp: null (DDP) or finetune.average_from: null")


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


