"""Range checks of a recipe that ``recipes._check`` delegates: upper bounds on every number, the export section.

Every integer field has an upper bound (``INT_BOUNDS`` by field name, else ``DEFAULT_INT_BOUND``), so a value
such as ``finetune.batch_size: 99999999999999999999999999`` is refused with the key's name when the recipe is
read, instead of overflowing a tensor shape, a seed or an allocation hours into a build. A new integer field
is bounded without being listed here. Floats that size a loop or an allocation are bounded too
(``FLOAT_BOUNDS``); the other floats already have a range in ``recipes._check``.
"""

from __future__ import annotations

import dataclasses
import math

from finsent.core.errors import RecipeError
from finsent.core.recipe_values import (
    ACTIVATION_METHODS,
    ATTENTION,
    BENCHMARK_NAMES,
    DATA_SCHEMAS,
    FSDP_MODES,
    MERGE_DTYPES,
    PRUNE_METHODS,
    QUANT_BLOCK,
    canonical_method,
)

STEPS = 100_000_000  # optimizer steps (and step intervals): years of training at one step a second

# The largest value each integer field may take, and what it counts (said in the message).
INT_BOUNDS = {
    "batch_size": (65_536, "rows in a batch"),
    "speed_batch_sizes": (65_536, "rows in a batch"),
    "grad_accum": (65_536, "batches accumulated per optimizer step"),
    "max_steps": (STEPS, "optimizer steps"),
    "warmup_steps": (STEPS, "optimizer steps"),
    "logging_steps": (STEPS, "optimizer steps"),
    "save_steps": (STEPS, "optimizer steps"),
    "dev_every": (STEPS, "optimizer steps"),
    "max_length": (1_048_576, "tokens"),
    "pass_tokens": (1_073_741_824, "padded positions in one pass"),
    "lora_r": (65_536, "the LoRA rank"),
    "lora_alpha": (65_536, "the LoRA scale numerator"),
    "round_to": (65_536, "neurons"),
    "calibration_rows": (10_000_000, "rows"),
    "vocab_first": (10_000_000, "token ids"),
    "vocab_min_count": (1_000_000_000, "occurrences"),
    "limit": (1_000_000_000, "rows"),
    "speed_n": (1_000_000, "texts"),
    "agreement_n": (1_000_000, "texts"),
    "seed": (2**32 - 1, "numpy's seed range"),
    "dev_seed": (2**32 - 1, "numpy's seed range"),
    "seeds": (2**32 - 1, "numpy's seed range"),
    "threads": (4_096, "CPU threads"),
}
DEFAULT_INT_BOUND = (1_000_000_000, "a count")
FLOAT_BOUNDS = {
    "epochs": (10_000, "passes over the data"),
    "weight": (10_000, "times the rows of the file"),
}




def check_bounds(recipe, need) -> None:
    """Every integer (and sized float) in ``recipe`` at most its bound; ``need(ok, key, rule, value)`` raises."""

    def bound(key: str, name: str, value) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int):
            limit, what = INT_BOUNDS.get(name, DEFAULT_INT_BOUND)
        elif isinstance(value, float) and name in FLOAT_BOUNDS:
            limit, what = FLOAT_BOUNDS[name]
        else:
            return
        need(value <= limit, key, f"at most {limit:,} ({what})", value)

    def walk(node, prefix: str) -> None:
        for f in dataclasses.fields(node):
            value, key = getattr(node, f.name), f"{prefix}{f.name}"
            if dataclasses.is_dataclass(value):
                walk(value, f"{key}.")
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if dataclasses.is_dataclass(item):
                        walk(item, f"{key}[{i}].")
                    else:
                        bound(f"{key}[{i}]", f.name, item)
            else:
                bound(key, f.name, value)

    walk(recipe, "")


def check_export(recipe, where: str, need, choice) -> None:
    """export.*: known GGUF types, none twice, and a pruned width that every asked type can pack."""

    x = recipe.export
    for i, quant in enumerate(x.gguf):
        choice(f"export.gguf[{i}]", quant, tuple(QUANT_BLOCK))
    need(len(set(x.gguf)) == len(x.gguf), "export.gguf", "a list without repeats", x.gguf)
    need(x.agreement_n >= 0, "export.agreement_n", ">= 0 (0: not measured)", x.agreement_n)


def check_model_and_prune(recipe, where: str, need, choice) -> None:
    """The model and prune sections."""
    m = recipe.model
    need(bool(m.base.strip()), "model.base", "a Hub id, a folder or 'smollm2'", m.base)
    need(m.revision is None or bool(m.revision.strip()), "model.revision", "a branch, tag or commit (or null)",
         m.revision)
    need(bool(m.license.strip()), "model.license", "a Hub license id", m.license)

    p = recipe.prune
    choice("prune.method", p.method.lower(), PRUNE_METHODS)
    if p.enabled and (p.ratio is None) == (p.expansion is None):
        raise RecipeError(f"{where}: prune needs exactly one of ratio or expansion")
    if p.ratio is not None:
        need(finite(p.ratio) and 0 < p.ratio < 1, "prune.ratio", "a fraction in (0, 1) (the share of neurons "
             "removed; prune.enabled: false for none)", p.ratio)
    if p.expansion is not None:
        need(finite(p.expansion) and p.expansion > 0, "prune.expansion", "a percentage > 0", p.expansion)
    need(p.round_to >= 1, "prune.round_to", ">= 1", p.round_to)
    need(p.calibration_rows >= 1, "prune.calibration_rows", ">= 1", p.calibration_rows)
    need(p.vocab_first is None or p.vocab_first >= 0, "prune.vocab_first", ">= 0 (or null: keep the vocabulary)",
         p.vocab_first)
    need(isinstance(p.vocab_min_count, int) and p.vocab_min_count >= 1, "prune.vocab_min_count",
         "an integer >= 1", p.vocab_min_count)
    if p.vocab_min_count != 1 and p.vocab_first is None:
        raise RecipeError(f"{where}: prune.vocab_min_count counts the tokens a trimmed vocabulary keeps: set "
                          "prune.vocab_first too (0 keeps no ids for their own sake)")
    if p.enabled and p.vocab_first is not None and not recipe.finetune.data:
        raise RecipeError(f"{where}: prune.vocab_first keeps the tokens of finetune.data, which is empty")
    if p.enabled and canonical_method(p.method) in ACTIVATION_METHODS and not recipe.finetune.data:
        raise RecipeError(f"{where}: prune.method act draws its calibration rows from finetune.data, which is empty")


def check_finetune(recipe, where: str, need, choice) -> None:
    """The finetune section, and that the recipe builds something."""
    p = recipe.prune
    f = recipe.finetune
    if not (p.enabled or f.enabled):
        raise RecipeError(f"{where}: prune.enabled and finetune.enabled are both false: the recipe builds nothing")
    for i, src in enumerate(f.data):
        key = f"finetune.data[{i}]"
        need(bool(src.path.strip()), f"{key}.path", "a local file or a Hub dataset id", src.path)
        choice(f"{key}.schema", src.schema, DATA_SCHEMAS)
        need(bool(src.split.strip()), f"{key}.split", "a split name", src.split)
        choice(f"{key}.scheme", src.scheme, (None, "3", "7"))
        choice(f"{key}.kind", src.kind, (None, "news", "tweet"))
        need(finite(src.weight) and src.weight > 0, f"{key}.weight", "a number > 0", src.weight)
        need(src.limit is None or src.limit >= 1, f"{key}.limit", ">= 1 (or null for every row)", src.limit)
    need(f.lora_r >= 1, "finetune.lora_r", ">= 1", f.lora_r)
    need(f.lora_alpha >= 1, "finetune.lora_alpha", ">= 1", f.lora_alpha)
    need(finite(f.lora_dropout) and 0 <= f.lora_dropout < 1, "finetune.lora_dropout", "in [0, 1)", f.lora_dropout)
    need(bool(f.target_modules) and all(m.strip() for m in f.target_modules), "finetune.target_modules",
         "a non-empty list of module names", f.target_modules)
    choice("finetune.loss", f.loss, ("answer", "full"))
    need(finite(f.epochs) and f.epochs > 0, "finetune.epochs", "> 0", f.epochs)
    need(f.max_steps == -1 or f.max_steps >= 1, "finetune.max_steps", ">= 1, or -1 to run finetune.epochs",
         f.max_steps)
    need(finite(f.learning_rate) and 0 < f.learning_rate < 1, "finetune.learning_rate", "in (0, 1)", f.learning_rate)
    need(f.batch_size >= 1, "finetune.batch_size", ">= 1", f.batch_size)
    need(f.grad_accum >= 1, "finetune.grad_accum", ">= 1", f.grad_accum)
    need(finite(f.warmup_ratio) and 0 <= f.warmup_ratio < 1, "finetune.warmup_ratio", "in [0, 1)", f.warmup_ratio)
    need(f.warmup_steps is None or f.warmup_steps >= 0, "finetune.warmup_steps", ">= 0 (or null)", f.warmup_steps)
    need(finite(f.weight_decay) and f.weight_decay >= 0, "finetune.weight_decay", ">= 0", f.weight_decay)
    need(f.max_length >= 16, "finetune.max_length", ">= 16 tokens", f.max_length)
    choice("finetune.precision", f.precision, ("auto", "fp32", "bf16", "fp16"))
    need(f.seed >= 0, "finetune.seed", ">= 0", f.seed)
    need(f.dev_seed is None or f.dev_seed >= 0, "finetune.dev_seed", ">= 0 (or null)", f.dev_seed)
    need(f.logging_steps >= 1, "finetune.logging_steps", ">= 1", f.logging_steps)
    need(f.save_steps >= 1, "finetune.save_steps", ">= 1", f.save_steps)
    need(f.threads is None or f.threads >= 1, "finetune.threads", ">= 1 (or null)", f.threads)
    choice("finetune.attn_implementation", f.attn_implementation, (None, *ATTENTION))
    choice("finetune.activation_checkpointing", f.activation_checkpointing, (None, "mlp"))
    need(f.pass_tokens is None or f.pass_tokens >= 1, "finetune.pass_tokens", ">= 1 (or null)", f.pass_tokens)
    choice("finetune.fsdp", f.fsdp, FSDP_MODES)
    choice("finetune.method", f.method, ("lora", "full"))
    need(finite(f.dev_fraction) and 0 <= f.dev_fraction <= 0.5, "finetune.dev_fraction", "in [0, 0.5]",
         f.dev_fraction)
    need(f.dev_every >= 0, "finetune.dev_every", ">= 0", f.dev_every)
    check_teachers_and_soup(f, where, need, choice)
    need(finite(f.distill_alpha) and 0 <= f.distill_alpha <= 1, "finetune.distill_alpha", "in [0, 1]",
         f.distill_alpha)
    need(finite(f.distill_temperature) and f.distill_temperature > 0, "finetune.distill_temperature", "> 0",
         f.distill_temperature)
    need(f.average_from is None or (finite(f.average_from) and 0 <= f.average_from < 1), "finetune.average_from",
         "in [0, 1) (or null)", f.average_from)


def check_teachers_and_soup(f, where: str, need, choice) -> None:
    """finetune.distill_from (one teacher or an ensemble) and the model soup's finetune.seeds / finetune.soup."""
    teachers = f.distill_from if isinstance(f.distill_from, list) else None
    need(teachers is None or len(teachers) > 0, "finetune.distill_from",
         "a model folder or Hub id, or a non-empty list of them (or null)", f.distill_from)
    for i, teacher in enumerate(teachers or []):
        need(bool(teacher.strip()), f"finetune.distill_from[{i}]", "a model folder or Hub id", teacher)
    if teachers is None:
        need(f.distill_from is None or bool(f.distill_from.strip()), "finetune.distill_from",
             "a model folder or Hub id (or null)", f.distill_from)
    need(teachers is None or len(set(teachers)) == len(teachers), "finetune.distill_from",
         "a list without repeats (each teacher once)", f.distill_from)

    choice("finetune.soup", f.soup, (None, "uniform", "greedy"))
    need(f.seeds is None or len(f.seeds) > 0, "finetune.seeds",
         "a non-empty list of seeds (or null for one run of finetune.seed)", f.seeds)
    for i, seed in enumerate(f.seeds or []):
        need(seed >= 0, f"finetune.seeds[{i}]", ">= 0", seed)
    need(f.seeds is None or len(set(f.seeds)) == len(f.seeds), "finetune.seeds",
         "a list without repeats (each seed trains one member)", f.seeds)
    if f.seeds and f.soup is None:
        raise RecipeError(f"{where}: finetune.seeds trains {len(f.seeds)} models: set finetune.soup to uniform or "
                          "greedy (how their weights are averaged)")
    if f.soup and not f.seeds:
        raise RecipeError(f"{where}: finetune.soup {f.soup} averages the models of finetune.seeds, which is not set: "
                          "list the seeds, e.g. finetune.seeds: [1, 2, 3]")
    if f.seeds and f.method != "full":
        raise RecipeError(f"{where}: finetune.seeds averages whole fine-tuned models: set finetune.method: full "
                          f"(with {f.method}, averaging the A and B matrices apart is not averaging their updates)")
    if f.soup == "greedy" and not f.dev_fraction:
        raise RecipeError(f"{where}: finetune.soup greedy picks members by their dev accuracy: set "
                          "finetune.dev_fraction > 0")


def check_merge_and_eval(recipe, where: str, need, choice) -> None:
    """The merge and eval sections."""
    choice("merge.dtype", recipe.merge.dtype, MERGE_DTYPES)
    need(finite(recipe.merge.tolerance) and recipe.merge.tolerance > 0, "merge.tolerance", "> 0",
         recipe.merge.tolerance)

    e = recipe.eval
    for i, bench in enumerate(e.benchmarks):
        key = f"eval.benchmarks[{i}]"
        choice(f"{key}.name", bench.name, BENCHMARK_NAMES)
        need(bench.path is None or bool(bench.path.strip()), f"{key}.path", "a file or folder (or null)", bench.path)
        choice(f"{key}.scheme", bench.scheme, ("3", "7"))
        need(bench.limit is None or bench.limit >= 1, f"{key}.limit", ">= 1 (or null for every row)", bench.limit)
    for i, mode in enumerate(e.modes):
        choice(f"eval.modes[{i}]", mode, ("score", "generate"))
    need(e.batch_size >= 1, "eval.batch_size", ">= 1", e.batch_size)
    need(e.speed_n >= 1, "eval.speed_n", ">= 1", e.speed_n)
    need(not e.speed or bool(e.speed_batch_sizes), "eval.speed_batch_sizes", "a non-empty list", e.speed_batch_sizes)
    for i, size in enumerate(e.speed_batch_sizes):
        need(size >= 1, f"eval.speed_batch_sizes[{i}]", ">= 1", size)


def check_card_and_publish(recipe, where: str, need, choice) -> None:
    """The card and publish sections."""

    need(bool(recipe.card.model_name.strip()), "card.model_name", "a name", recipe.card.model_name)
    pub = recipe.publish
    need(pub.repo_id is None or (pub.repo_id.count("/") == 1 and all(pub.repo_id.split("/"))), "publish.repo_id",
         "a Hub repo id owner/name (or null)", pub.repo_id)
    need(pub.tag is None or bool(pub.tag.strip()), "publish.tag", "a tag name (or null)", pub.tag)
    need(finite(pub.max_regression) and pub.max_regression >= 0, "publish.max_regression", ">= 0",
         pub.max_regression)


def finite(value) -> bool:
    return value is not None and math.isfinite(value)
