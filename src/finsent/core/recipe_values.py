"""The names a recipe's values may take, each list defined here once: the stages that act on a name
(``finsent.build.importance``, ``finsent.build.merge``, ``finsent.export.gguf``, ``finsent.evaluation.benchmarks``)
import it from here, and ``finsent.core.recipe_checks`` checks a recipe against it.
"""

from __future__ import annotations

from finsent.core.rows import SCHEMAS

# The pruning importance methods (finsent.build.importance scores them): weight-only scores, then the ones that
# need calibration text.
WEIGHT_METHODS = ("ppm", "vow", "l2", "pon")
ACTIVATION_METHODS = ("act",)  # need calibration text (activation_norms), not only weights
ALIASES = {"maw": "ppm", "activation": "act"}  # maw: optipfair's other name for ppm; activation: act
METHODS = (*WEIGHT_METHODS, *ACTIVATION_METHODS)


def canonical_method(method: str) -> str:
    """'ppm', 'vow', 'l2', 'pon' or 'act' from any accepted spelling (case-insensitive, 'maw' = 'ppm')."""
    name = str(method).lower()
    name = ALIASES.get(name, name)
    if name not in METHODS:
        raise ValueError(f"unknown importance method {method!r}: choose one of {', '.join(METHODS)} (or maw = ppm)")
    return name


PRUNE_METHODS = (*METHODS, *ALIASES)  # every spelling a recipe may use
DATA_SCHEMAS = SCHEMAS  # finsent.core.rows owns the schemas
BENCHMARK_NAMES = ("fpb", "fiqa", "tfns", "nwgi", "finsent")  # finsent.evaluation.benchmarks checks its own
MERGE_DTYPES = ("float32", "float16", "bfloat16")  # the dtypes a merged model is saved in
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flex_attention")
FSDP_MODES = (None, "full_shard", "shard_grad_op")
# GGUF weight types (finsent.export.gguf) and the block each packs a weight row in: the base's row lengths must be
# multiples of it, the pruned MLP width is padded to one with zero neurons. f16 has none; q8_0 packs 32 values a block;
# q4_k_m (llama.cpp's k-quant mix, 4-6 bits a weight, what Ollama ships by default) super-blocks of 256.
QUANT_BLOCK = {"f16": 1, "q8_0": 32, "q4_k_m": 256}
QUANTS = tuple(QUANT_BLOCK)
