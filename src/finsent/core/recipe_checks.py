"""Range checks of a recipe that ``recipes._check`` delegates: upper bounds on every number, the export section.

Every integer field has an upper bound (``INT_BOUNDS`` by field name, else ``DEFAULT_INT_BOUND``), so a value
such as ``finetune.batch_size: 99999999999999999999999999`` is refused with the key's name when the recipe is
read, instead of overflowing a tensor shape, a seed or an allocation hours into a build. A new integer field
is bounded without being listed here. Floats that size a loop or an allocation are bounded too
(``FLOAT_BOUNDS``); the other floats already have a range in ``recipes._check``.
"""

from __future__ import annotations

import dataclasses

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
    "threads": (4_096, "CPU threads"),
}
DEFAULT_INT_BOUND = (1_000_000_000, "a count")
FLOAT_BOUNDS = {
    "epochs": (10_000, "passes over the data"),
    "weight": (10_000, "times the rows of the file"),
}

# GGUF weight types (finsent.export.gguf) and the block each packs a weight row in: the base's row lengths must be
# multiples of it, the pruned MLP width is padded to one with zero neurons. f16 has none; q8_0 packs 32 values a block;
# q4_k_m (llama.cpp's k-quant mix, 4-6 bits a weight, what Ollama ships by default) super-blocks of 256.
QUANT_BLOCK = {"f16": 1, "q8_0": 32, "q4_k_m": 256}
QUANTS = tuple(QUANT_BLOCK)



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


def check_export(recipe, need, choice) -> None:
    """export.*: known GGUF types, none twice, and a pruned width that every asked type can pack."""

    x = recipe.export
    for i, quant in enumerate(x.gguf):
        choice(f"export.gguf[{i}]", quant, tuple(QUANT_BLOCK))
    need(len(set(x.gguf)) == len(x.gguf), "export.gguf", "a list without repeats", x.gguf)
    need(x.agreement_n >= 0, "export.agreement_n", ">= 0 (0: not measured)", x.agreement_n)
