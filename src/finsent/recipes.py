"""Recipes: one YAML file per model release, read into typed, checked dataclasses.

Precedence is defaults < recipe < command line (``overrides`` as dotted keys, e.g.
``{"finetune.max_steps": 5}``). Unknown keys are errors, so a typo never silently does nothing.

    finsent release build/recipes/smollm2-135m.yaml
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UsageError


class RecipeError(UsageError, ValueError):
    """A recipe that cannot be used: unknown key, wrong type, impossible value."""


@dataclass
class ModelSection:
    base: str = "smollm2"  # Hub id, local folder, or "smollm2" (the embedded default)
    revision: str | None = None
    license: str = "apache-2.0"  # the Hub license id of the released model (llama3.2 for Llama bases)


@dataclass
class PruneSection:
    enabled: bool = True
    method: str = "ppm"  # neuron importance: ppm (a.k.a. MAW), vow, l2
    ratio: float | None = 0.4  # fraction of GLU neurons removed per layer
    expansion: float | None = None  # or: target intermediate/hidden in percent (see `finsent prune --help`)
    round_to: int = 1  # round the kept size down to a multiple of this (never grows the layer)


@dataclass
class DataSource:
    path: str  # Hub dataset id or local file (csv, jsonl, parquet)
    schema: str = "fingpt"  # fingpt | fpb | tfns | fiqa | nwgi | finsent
    split: str = "train"
    scheme: str | None = None  # "3" or "7" where the schema carries both
    kind: str | None = None  # news | tweet in the instruction; None = the schema's own (tfns tweet, fiqa by row)
    weight: float = 1.0  # rows are repeated/subsampled to this multiple
    limit: int | None = None


@dataclass
class FinetuneSection:
    data: list[DataSource] = field(default_factory=list)
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    loss: str = "answer"  # answer | full (full = the original notebook: loss on every token)
    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 3e-4
    batch_size: int = 16
    grad_accum: int = 16
    warmup_ratio: float = 0.05
    warmup_steps: int | None = None  # set to reproduce the original exactly (1000)
    weight_decay: float = 0.01
    max_length: int = 512
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    seed: int = 42
    logging_steps: int = 10
    save_steps: int = 500
    skip_bad_rows: bool = False  # skip malformed data rows (count logged) instead of stopping at the first
    fast_loss: bool = True  # vocabulary projection only where a label is learned (same loss, less work)
    group_by_length: bool = True  # batches of similar length: less padding
    # Run each batch's instruction prefix once (trainer.shared_prefix_hidden; needs fast_loss): same loss,
    # fewer tokens; LoRA dropout then draws one mask per prefix instead of per row.
    share_prefix: bool = False
    threads: int | None = None  # CPU threads for torch (None = torch's default, the physical cores)
    # transformers' attention kernel while training (None = the model's default, sdpa). "eager" trained
    # 1.1x faster in bf16 on the project's Xeon: sdpa's bf16 backward there took 11 ms a layer at B=16, T=39.
    attn_implementation: str | None = None


@dataclass
class MergeSection:
    dtype: str = "float16"  # dtype of the saved merged weights
    # max |log-prob difference| merged (saved dtype) vs adapter model (float32) on the top-10 next tokens
    # of a few probe prompts (finsent.merge); SmolLM2 measured 0.09 in float16, 0.51 in bfloat16
    tolerance: float = 0.25


@dataclass
class EvalBenchmark:
    name: str  # fpb | fiqa | tfns | nwgi | finsent
    path: str | None = None  # local file; None = the Hub id with the FinGPT split
    scheme: str = "3"
    limit: int | None = None


@dataclass
class EvalSection:
    benchmarks: list[EvalBenchmark] = field(default_factory=list)
    modes: list[str] = field(default_factory=lambda: ["score"])
    batch_size: int = 16
    speed: bool = True  # run `finsent bench` on the release (card's loop vs label scoring)
    speed_n: int = 32  # texts per configuration (the card's loop gets at most 16 of them)
    speed_batch_sizes: list[int] = field(default_factory=lambda: [1, 16])
    speed_texts: str | None = None  # csv/jsonl with text; None = the first local eval benchmark file


@dataclass
class CardSection:
    model_name: str = "Llama-FinSent-S"
    language: list[str] = field(default_factory=lambda: ["en"])
    tags: list[str] = field(default_factory=lambda: ["finance", "sentiment-analysis", "pruning", "llama"])
    datasets: list[str] = field(default_factory=lambda: ["FinGPT/fingpt-sentiment-train"])
    # A speed.json of `finsent bench --shape ...` (random weights of this model's exact shape), relative to
    # the repository: CPU figures the card can state without the real weights, beside the release's own.
    shape_speed: str | None = None


@dataclass
class PublishSection:
    repo_id: str | None = None
    tag: str | None = None
    max_regression: float = 0.01  # headline weighted-F1 drop allowed against the previous tag


@dataclass
class Recipe:
    name: str
    model: ModelSection = field(default_factory=ModelSection)
    prune: PruneSection = field(default_factory=PruneSection)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)
    merge: MergeSection = field(default_factory=MergeSection)
    eval: EvalSection = field(default_factory=EvalSection)
    card: CardSection = field(default_factory=CardSection)
    publish: PublishSection = field(default_factory=PublishSection)
    description: str = ""
    source: str | None = None  # the file it was read from

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_recipe(path: str | Path, overrides: dict | None = None) -> Recipe:
    """Read and check a recipe; ``overrides`` maps dotted keys to values (command-line layer)."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    raw.setdefault("name", path.stem)
    recipe = _build(Recipe, raw, str(path))
    recipe.source = str(path)
    _check(recipe, str(path))
    return recipe


def _build(cls, data, where: str):
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: expected a mapping for {cls.__name__}, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RecipeError(
            f"{where}: unknown key(s) {', '.join(unknown)} in {cls.__name__}; known: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _coerce(hints[key], value, f"{where}: {key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RecipeError(f"{where}: {exc}") from None


def _coerce(hint, value, where: str):
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise RecipeError(f"{where} must not be null")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{where} must be a list")
        return [_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # scheme: 3 in YAML means "3"
    if hint in (int, bool, str) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise RecipeError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def _check(recipe: Recipe, where: str) -> None:
    p = recipe.prune
    if p.enabled and (p.ratio is None) == (p.expansion is None):
        raise RecipeError(f"{where}: prune needs exactly one of ratio or expansion")
    if p.ratio is not None and not 0 <= p.ratio < 1:
        raise RecipeError(f"{where}: prune.ratio must be in [0, 1), got {p.ratio}")
    if p.round_to < 1:
        raise RecipeError(f"{where}: prune.round_to must be >= 1")
    f = recipe.finetune
    if f.loss not in ("answer", "full"):
        raise RecipeError(f"{where}: finetune.loss must be 'answer' or 'full', got {f.loss!r}")
    if f.precision not in ("auto", "fp32", "bf16", "fp16"):
        raise RecipeError(f"{where}: finetune.precision must be auto, fp32, bf16 or fp16")
    for src in f.data:
        if src.scheme not in (None, "3", "7"):
            raise RecipeError(f"{where}: data scheme must be 3 or 7, got {src.scheme!r}")
    for bench in recipe.eval.benchmarks:
        if bench.scheme not in ("3", "7"):
            raise RecipeError(f"{where}: eval scheme must be 3 or 7, got {bench.scheme!r}")
    for mode in recipe.eval.modes:
        if mode not in ("score", "generate"):
            raise RecipeError(f"{where}: eval mode must be score or generate, got {mode!r}")
