"""The report files of a release, declared once: their fields, who writes them, and one checker.

    reports/pruning.json                       finsent prune      SCHEMAS["pruning"]
    reports/training.json                      finsent finetune   SCHEMAS["training"]
    reports/build.json                         finsent release    SCHEMAS["build"]
    eval/<benchmark>-<scheme>-<mode>.json      finsent eval       SCHEMAS["eval"]
    eval/speed.json                            finsent bench      SCHEMAS["speed"]
    (card.pruning_cost) pruning_cost.json      quality_table.py   SCHEMAS["pruning_cost"]

Writers call ``write_report(kind, data, path)`` (checked, then written atomically as indented JSON);
readers call ``read_report(kind, path)``; both raise ``ReportError`` naming the file and the field
(``reports/training.json: lora: missing r``). The model card, the publish gate and the test factory
(``tests/release_factory.py``) read these declarations instead of keeping their own lists.

A schema names its ``required`` fields (present and not null), ``nullable`` ones (present, may be
null), ``optional`` ones (written by the toolkit, read by nobody who depends on them), ``numbers``
(required fields that must be finite numbers: a NaN score is an error, never a value), the schema of
nested dicts (``parts``) and of the items of lists (``rows``). Extra fields are allowed: a report may
carry more than its readers use.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from finsent.core.errors import FinsentError
from finsent.core.outputs import write_text_atomic

# How a speed row's peak_memory_mb was measured (speed.json "memory"): the benchmarking process's
# resident memory on a CPU (everything that process had loaded, not the model alone), or the peak
# memory torch allocated on a GPU.
MEMORY_KINDS = {
    "process_rss": "peak resident memory (RSS) of the whole benchmarking process, which includes everything "
                   "that process loaded before (in `finsent release`, the training run too): an upper bound, "
                   "not the model's own footprint",
    "cuda_allocated": "peak GPU memory allocated by torch during the benchmark (torch.cuda.max_memory_allocated)",
}


class ReportError(FinsentError, ValueError):
    """A report that lacks a field its readers need, or holds a value they cannot use."""


@dataclass(frozen=True)
class Schema:
    kind: str
    file: str  # where it lives in a release folder
    made_by: str  # the command that writes it
    required: tuple[str, ...]
    nullable: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    numbers: tuple[str, ...] = ()
    parts: tuple[tuple[str, Schema], ...] = ()  # field -> schema of the dict it holds
    rows: tuple[tuple[str, Schema], ...] = ()  # field -> schema of each item of the list it holds

    @property
    def fields(self) -> tuple[str, ...]:
        """Every declared top-level field, required first."""
        return self.required + self.nullable + self.optional


def _part(kind: str, required, nullable=(), optional=(), numbers=()) -> Schema:
    return Schema(kind, "", "", tuple(required), tuple(nullable), tuple(optional), tuple(numbers))


PRUNING = Schema(
    "pruning", "reports/pruning.json", "finsent prune",
    required=("method", "hidden_size", "intermediate_before", "intermediate_after", "expansion_before",
              "expansion_after", "kept_per_layer", "params_before", "params_after", "bytes_on_disk"),
    # ratio is null when the prune was given as a target expansion; bytes_on_disk is the pruned model's
    # weight files as run_prune saved them (float32 on a CPU), not the release's: the card measures those.
    nullable=("ratio",),
    optional=("expansion", "round_to", "architecture", "score_cut_per_layer", "base", "source", "revision",
              "dtype", "seconds_load", "seconds_prune", "seconds_save"),
    numbers=("hidden_size", "intermediate_before", "intermediate_after", "params_before", "params_after"),
)

TRAINING = Schema(
    "training", "reports/training.json", "finsent finetune",
    required=("steps", "epochs", "learning_rate", "warmup_steps", "effective_batch", "loss", "train_loss",
              "seconds", "trainable_params", "rows", "data", "precision"),
    # lora is null for full fine-tuning (method: full); dev is the held-out dev split's score (finsent.build.devsplit).
    # soup: a model soup's members, trials and chosen seeds (finsent.build.soup); its dev is the soup's.
    nullable=("tokens_per_second", "lora"),
    optional=("base", "fast_loss", "share_prefix", "attn_implementation", "activation_checkpointing", "pass_tokens",
              "peak_memory_mb", "tokens_per_row", "max_length", "device", "threads", "seed", "log", "processes",
              "fsdp", "resumed_from_step",
              "method", "freeze_embeddings", "dev", "dev_curve", "distill", "weight_average", "soup"),
    numbers=("steps", "epochs", "seconds", "trainable_params", "rows"),
    parts=(("lora", _part("training lora", ("r", "alpha", "dropout", "target_modules"))),),
    rows=(("data", _part("training source", ("path",), optional=(
        "schema", "split", "scheme", "weight", "rows_read", "rows_dev", "rows_used"))),),
)

# What the release's merge stage records of the code that built it (the release folder's own, published with it).
BUILD = Schema(
    "build", "reports/build.json", "finsent release",
    required=("code_sha256", "model_params"),
    # git_commit is null for an installed package, which has no checkout (core.provenance.git_commit); it ends in
    # "+dirty" when tracked files differed from that commit.
    nullable=("git_commit",),
    optional=("versions", "created"),
    numbers=("model_params",),
)

# Where an evaluated model came from (finsent.evaluation.model_provenance). Every key is written, null where it is
# unknown (a model finsent did not build), and ``note`` then says why; ``chosen_by`` is the recipe's description
# and the dev score it was chosen by, on the dev split it defines.
PROVENANCE = Schema(
    "eval provenance", "", "",
    required=(),
    nullable=("source", "git_commit", "recipe", "model_params", "chosen_by", "note"),
    optional=("code_sha256", "files"),
    parts=(("chosen_by", _part("eval provenance chosen_by", (), nullable=("description", "metric", "dev",
                                                                          "dev_split"))),),
)

EVAL = Schema(
    "eval", "eval/<benchmark>-<scheme>-<mode>.json", "finsent eval",
    required=("model", "model_hash", "benchmark", "dataset", "split", "data_sha256", "scheme", "mode", "n",
              "metrics", "seconds"),
    nullable=("items_per_second",),
    # provenance is optional: results written before it was recorded still read.
    optional=("batch_size", "truncated", "device", "versions", "created", "provenance"),
    numbers=("n", "seconds"),
    parts=(("metrics", _part(
        "eval metrics", ("accuracy", "macro_f1", "weighted_f1", "unparseable", "labels", "per_class",
                         "confusion_matrix"),
        optional=("unparseable_by_label",), numbers=("accuracy", "macro_f1", "weighted_f1", "unparseable"))),
        ("provenance", PROVENANCE)),
)

SPEED = Schema(
    "speed", "eval/speed.json", "finsent bench",
    required=("device", "threads", "params", "rows"),
    # bytes_on_disk is null for a shape-only benchmark (random weights, nothing on disk); memory says how
    # the rows' peak_memory_mb was measured (a key of MEMORY_KINDS; when absent, memory_kind infers it).
    nullable=("bytes_on_disk",),
    optional=("memory", "model", "shape", "bytes_fp16", "tokenizer", "texts", "torch", "compute_floor", "created"),
    numbers=("threads", "params"),
    rows=(("rows", _part(
        "speed row", ("config", "mode", "scheme", "batch_size", "items_per_second", "p50_ms", "p95_ms",
                      "peak_memory_mb", "speedup_vs_card"),
        optional=("exact", "dtype", "n", "seconds", "threads", "of_floor"),
        numbers=("batch_size", "items_per_second", "p50_ms", "p95_ms", "peak_memory_mb", "speedup_vs_card"))),),
)

# Not a release's own report: build/bench/quality_table.py writes it from the accuracy runs of one recipe at
# several prune ratios, and a recipe's card.pruning_cost points the card at it ("What pruning costs").
PRUNING_COST = Schema(
    "pruning_cost", "build/bench/results/pruning_cost.json", "build/bench/quality_table.py",
    required=("source", "reference", "recipe", "base", "rows"),
    nullable=("cpu",),
    optional=("method", "split", "metric", "same_training", "items_per_second", "timing", "devices"),
    rows=(("rows", _part(
        "pruning cost row", ("run", "removed_share", "params", "fp16_mb", "dev_accuracy"),
        nullable=("tfns_dev", "fpb_dev", "seven_class_test", "items_per_second"),
        optional=("pruned", "dev_n", "finsent_dev", "wall_minutes", "resumed_from_step", "commit", "cpu", "device"),
        numbers=("removed_share", "params", "fp16_mb", "dev_accuracy"))),),
)

SCHEMAS: dict[str, Schema] = {s.kind: s for s in (PRUNING, TRAINING, BUILD, EVAL, SPEED, PRUNING_COST)}


def schema(kind: str) -> Schema:
    try:
        return SCHEMAS[kind]
    except KeyError:
        raise ReportError(f"unknown report kind {kind!r}: choose one of {', '.join(SCHEMAS)}") from None


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(s: Schema, data, where: str) -> None:
    if not isinstance(data, dict):
        raise ReportError(f"{where}: expected a JSON object, found {type(data).__name__}")
    missing = [k for k in s.required if data.get(k) is None] + [k for k in s.nullable if k not in data]
    if missing:
        raise ReportError(f"{where}: missing {', '.join(missing)}")
    bad = [f"{k} = {data[k]!r}" for k in s.numbers if not _finite(data[k])]
    if bad:
        raise ReportError(f"{where}: not a finite number: {', '.join(bad)}")
    for key, part in s.parts:
        if data.get(key) is None and key not in s.required:  # a nullable part that is null, an optional one absent
            continue
        _check(part, data[key], f"{where}: {key}")
    for key, row in s.rows:
        if not isinstance(data[key], list):
            raise ReportError(f"{where}: {key} must be a list, found {type(data[key]).__name__}")
        for i, item in enumerate(data[key]):
            _check(row, item, f"{where}: {key}[{i}]")


def check_report(kind: str, data, where: str | None = None):
    """``data`` if it satisfies the ``kind`` schema, else ReportError naming ``where`` (default: its file) and
    the field: ``reports/training.json: lora: missing r``."""
    s = schema(kind)
    _check(s, data, where or s.file)
    return data


def read_report(kind: str, path) -> dict:
    """The report at ``path``, checked; a missing file names the command that writes it."""
    s, path = schema(kind), Path(path)
    if not path.is_file():
        raise ReportError(f"{path} is missing (it is written by `{s.made_by}`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None
    return check_report(kind, data, str(path))


def write_report(kind: str, data: dict, path) -> Path:
    """Check ``data`` against the ``kind`` schema, then write it (indented JSON) atomically to ``path``."""

    check_report(kind, data, str(path))
    return write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def memory_kind(speed: dict) -> str:
    """How ``speed``'s peak_memory_mb was measured: its ``memory`` field, else inferred from ``device``
    (``finsent bench`` names a CPU ``CPU <model>, <n> cores`` and measures its process RSS; on a GPU, torch's
    peak allocation)."""
    kind = speed.get("memory")
    if kind in MEMORY_KINDS:
        return kind
    return "process_rss" if str(speed.get("device", "")).upper().startswith("CPU") else "cuda_allocated"
