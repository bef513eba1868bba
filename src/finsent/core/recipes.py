"""Recipes: one YAML file per model release, read into typed, checked dataclasses.

Precedence is defaults < recipe < command line (``overrides`` as dotted keys, e.g.
``{"finetune.max_steps": 5}``). Unknown keys are errors, so a typo never silently does nothing; every
field is typed and range-checked, and every error names the file and the dotted key
(``prune.ratio must be a number, got the text '0.4'``). YAML is read safely (no ``!!python`` tags),
with YAML 1.2 floats (``1e-3`` is a number) and a key given twice refused.

    finsent release build/recipes/smollm2-135m.yaml
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from finsent.core.errors import RecipeError
from finsent.core.outputs import OutputError, check_name
from finsent.core.recipe_checks import (
    check_bounds,
    check_card_and_publish,
    check_export,
    check_finetune,
    check_merge_and_eval,
    check_model_and_prune,
)


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
    calibration_rows: int = 128  # method act: training rows whose activations score the neurons
    # Trim the vocabulary to the first N ids plus every token of the training data (finsent.build.vocab); null keeps it.
    vocab_first: int | None = None
    vocab_min_count: int = 1  # with vocab_first: keep a training token only if it occurs this many times


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
    # false: no training stage; the release is the (pruned) base cast to merge.dtype, e.g. a tuned model
    # trimmed and pruned after training. ``data`` still feeds an act prune's calibration and vocab_first.
    enabled: bool = True
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
    # transformers' attention kernel while training (None = the model's default, sdpa). "eager" where sdpa's bf16
    # backward is the slower one, as on CPUs (build/bench/finetune_speed.py compares the two).
    attn_implementation: str | None = None
    # Activation checkpointing (trainer.checkpoint_mlps): "mlp" keeps only each MLP's input for the backward and
    # runs the MLP again there (its gate/up/SiLU/product tensors, 4 x intermediate a token a layer, are the
    # largest saved activations); the values and gradients are the same. null = everything kept.
    activation_checkpointing: str | None = None
    # Padded positions (rows x longest row) in one forward/backward pass: a batch over it runs as several passes
    # of its rows, longest first, whose gradients add up to the batch's (trainer.split_rows). It bounds the
    # activation memory of the run's longest batch; the step, its rows and its loss stay the same. null = one pass.
    pass_tokens: int | None = None
    # Several processes (torchrun/accelerate launch): null = DDP (each device holds the whole model, fine for
    # the 1B base); full_shard / shard_grad_op = FSDP (transformers' FSDP2, one shard unit per decoder layer;
    # full_shard also frees the gathered weights after the forward) for bases too big for one device.
    fsdp: str | None = None
    # lora: train LoRA adapters on the frozen base (merged afterwards); full: train every weight (float32
    # master weights, bf16 autocast where the CPU has it), the merge stage then only casts and checks.
    method: str = "lora"
    # method full: keep the token embeddings (tied to the LM head in SmolLM2, 28M of its weights) frozen, so
    # each step skips their dense gradient and optimizer update; the layers adapt around fixed label embeddings.
    freeze_embeddings: bool = False
    # Held-out dev split carved from the training files (seeded by ``seed``, stratified by source and label,
    # rows with the same text kept on one side): settings are chosen on it, never on a benchmark. 0 = none.
    dev_fraction: float = 0.0
    # The dev split's own seed (null = the first of ``seeds``, else ``seed``): builds that differ only in ``seed``
    # (weights, row order) are then scored on the same rows, so their spread measures the training's noise, not
    # the split's.
    dev_seed: int | None = None
    dev_every: int = 0  # also score the dev split every N optimizer steps (0: at the end only)
    # Knowledge distillation after pruning: a model folder or Hub id (e.g. the unpruned base fine-tuned on the
    # same data) whose next-token distribution at the answer positions the student also learns (trainer.Distill).
    # A list is an ensemble teacher: the target is the mean of the teachers' distributions at the temperature,
    # KL(mean_k softmax(z_k / T) || softmax(student / T)); every teacher stays in memory while training.
    distill_from: str | list[str] | None = None
    distill_alpha: float = 0.5  # loss = (1 - alpha) x answer cross-entropy + alpha x T^2 x KL(teacher || student)
    distill_temperature: float = 1.0
    # Tail averaging (trainer.WeightAverage): the final weights are the mean of the weights after every optimizer
    # step from this fraction of the run on (0.5: the second half), instead of the last step's. null = the last.
    average_from: float | None = None
    # A model soup (Wortsman et al. 2022, arXiv:2203.05482; method full only): one full fine-tuning per seed, all
    # from the same (pruned) base and scored on the same dev rows (dev_seed, else the first seed), each kept whole
    # in seeds/seed-<s>/ beside the stage's output, which is then their weight average (finsent.build.soup). A
    # member whose settings, base, data and code are unchanged is reused by the next run. null = one run of ``seed``
    # (which still draws an act prune's calibration rows when seeds are set).
    seeds: list[int] | None = None
    # How the members are averaged (required with seeds): uniform = the mean of all of them; greedy = members in
    # order of dev accuracy, each kept if the soup's dev accuracy does not drop (a tie keeps it; needs dev_fraction).
    soup: str | None = None

    @property
    def split_seed(self) -> int:
        """The seed that carves the dev split: ``dev_seed``, else the first of ``seeds``, else ``seed``."""
        if self.dev_seed is not None:
            return self.dev_seed
        return self.seeds[0] if self.seeds else self.seed

    @property
    def teachers(self) -> list[str]:
        """``distill_from`` as a list: [] without distillation, one entry for a single teacher."""
        if self.distill_from is None:
            return []
        return [self.distill_from] if isinstance(self.distill_from, str) else list(self.distill_from)


@dataclass
class MergeSection:
    dtype: str = "float16"  # dtype of the saved merged weights
    # max |log-prob difference| merged (saved dtype) vs adapter model (float32) on the top-10 next tokens
    # of a few probe prompts (finsent.build.merge); keep it above the rounding of ``dtype`` (coarser in bfloat16)
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
    speed_texts: str | None = None  # csv/jsonl with text; None = the first eval benchmark given as a file

    def texts_file(self) -> str | None:
        """The texts the speed bench and the exports' agreement check read: speed_texts, else the first
        benchmark named by a local file; None when neither is given (the recipe check refuses that)."""
        return self.speed_texts or next((b.path for b in self.benchmarks if b.path and not Path(b.path).is_dir()),
                                        None)


@dataclass
class ExportSection:
    # Runtimes besides transformers, written into the release folder by the export stage (finsent.export.stage)
    # and published with it in the same commit. gguf: one file per weight type for llama.cpp / Ollama: f16, q8_0
    # (blocks of 32) or q4_k_m (llama.cpp's k-quant mix, blocks of 256); a pruned MLP width that is no multiple
    # of the block is padded with zero neurons, which change no output. onnx: an onnx/ folder.
    gguf: list[str] = field(default_factory=list)
    onnx: bool = False
    # Texts on which each export's label is compared with FinSentClassifier's (3 classes; 0: not measured),
    # read from eval.texts_file() (eval.speed_texts, else the first eval benchmark given as a file).
    agreement_n: int = 200


@dataclass
class CardSection:
    model_name: str = "Llama-FinSent-S"
    language: list[str] = field(default_factory=lambda: ["en"])
    tags: list[str] = field(default_factory=lambda: ["finance", "sentiment-analysis", "pruning", "llama"])
    datasets: list[str] = field(default_factory=lambda: ["FinGPT/fingpt-sentiment-train"])
    # A speed.json of `finsent bench --shape ...` (random weights of this model's exact shape), relative to
    # the repository: CPU figures the card can state without the real weights, beside the release's own.
    shape_speed: str | None = None
    # A pruning_cost.json of build/bench/quality_table.py (the same training at several prune ratios), found as
    # shape_speed is: the card's "What pruning costs" table, and its plot when pruning_cost.png is beside it.
    pruning_cost: str | None = None


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
    export: ExportSection = field(default_factory=ExportSection)
    card: CardSection = field(default_factory=CardSection)
    publish: PublishSection = field(default_factory=PublishSection)
    description: str = ""
    source: str | None = None  # the file it was read from

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _RecipeLoader(yaml.SafeLoader):
    """YAML for recipes: safe (no ``!!python`` tags), YAML 1.2 floats, and a key given twice is an error."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


# PyYAML implements YAML 1.1, where a float needs a dot: `learning_rate: 1e-3` would be the string "1e-3".
# Recipes read numbers as YAML 1.2 does (1e-3, 5E+2), so an exponent without a dot is a float too.
EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_RecipeLoader.add_implicit_resolver("tag:yaml.org,2002:float", EXPONENT_FLOAT, list("-+0123456789"))


def parse_yaml(text: str, where: str):
    """YAML text read with the recipe rules; a syntax error or an unknown tag is a RecipeError naming the line."""
    try:
        return yaml.load(text, Loader=_RecipeLoader)  # noqa: S506 - _RecipeLoader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = "; ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise RecipeError(f"{where}:{at}: not a valid recipe YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"{where}: not a valid recipe YAML: {exc}") from None


def load_recipe(path: str | Path, overrides: dict | None = None) -> Recipe:
    """Read and check a recipe; ``overrides`` maps dotted keys to values (command-line layer).

    An override that arrives as the text of an exponent number (``--set finetune.learning_rate=1e-3``,
    which PyYAML's YAML 1.1 leaves a string) is the number, as the same text is in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
                          ) from None
    raw = parse_yaml(text, str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping, got {type(raw).__name__}")
    for dotted, value in (overrides or {}).items():
        if isinstance(value, str) and EXPONENT_FLOAT.match(value.strip()):
            value = float(value.replace("_", ""))
        node = raw
        *parents, leaf = dotted.split(".")
        for depth, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise RecipeError(f"override {dotted}: {'.'.join(parents[:depth + 1])} is not a section")
        node[leaf] = value
    raw.setdefault("name", path.stem)
    recipe = _build(Recipe, raw, str(path), "")
    recipe.source = str(path)
    _check(recipe, str(path))
    _anchor_local_paths(recipe, path)
    return recipe


def _anchor_local_paths(recipe: Recipe, path: Path) -> None:
    """Relative data paths that do not exist from the current folder are read from the recipe's repository.

    Recipes live in ``<repo>/build/recipes/`` and name data as ``data/...``; anchoring them there lets a
    release run from any folder, and every consumer (training, eval, speed texts, stage fingerprints) sees
    the same file. Hub ids and paths found from the current folder are left as written.
    """
    parents = path.resolve().parents
    if len(parents) <= 2:
        return
    root = parents[2]

    def anchor(value: str | None) -> str | None:
        if not value or Path(value).is_absolute() or Path(value).exists() or not (root / value).exists():
            return value
        return str(root / value)

    for src in recipe.finetune.data:
        src.path = anchor(src.path)
    for bench in recipe.eval.benchmarks:
        bench.path = anchor(bench.path)
    recipe.eval.speed_texts = anchor(recipe.eval.speed_texts)


def _build(cls, data, where: str, prefix: str):
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: {prefix or 'the recipe'} must be a mapping of keys for {cls.__name__}, "
                          f"got {data!r:.60}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        raise RecipeError(
            f"{where}: unknown key(s) {', '.join(unknown)} in {prefix or 'the recipe'} ({cls.__name__}); "
            f"known: {', '.join(sorted(names))}"
        )
    kwargs = {key: _coerce(hints[key], value, where, f"{prefix}.{key}" if prefix else key)
              for key, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise RecipeError(f"{where}: {prefix or 'the recipe'}: {exc}") from None


_TYPE_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "text"}


def _coerce(hint, value, where: str, key: str):
    """``value`` as the field's type, or RecipeError naming the dotted key, the type and the value."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if value is None:
        if type(None) in args:
            return None
        raise RecipeError(f"{where}: {key} must not be null")
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in args if a is not type(None)]
        # str | list[str] (distill_from): a YAML list takes the list form, any other value the first type
        listed = [a for a in inner if typing.get_origin(a) is list]
        if isinstance(value, list) and listed:
            return _coerce(listed[0], value, where, key)
        return _coerce(inner[0], value, where, key)
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{where}: {key} must be a list, got {value!r:.60}")
        return [_coerce(args[0], v, where, f"{key}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where, key)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and number:
        return float(value)
    if hint is str and number:
        return str(value)  # scheme: 3 in YAML means "3"
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (bool, str) and isinstance(value, hint):
        return value
    got = f"the text {value!r}" if isinstance(value, str) else f"{value!r:.60} ({type(value).__name__})"
    hint_text = " (write a number without quotes)" if hint in (int, float) and isinstance(value, str) else ""
    raise RecipeError(f"{where}: {key} must be {_TYPE_WORDS.get(hint, hint)}, got {got}{hint_text}")


def check_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` if every value is in range (as ``load_recipe`` checks a file), else RecipeError naming the key:
    for a Recipe built or changed in code."""
    _check(recipe, recipe.source or f"recipe {recipe.name!r}")
    return recipe


def _check(recipe: Recipe, where: str) -> None:
    """Every value in its range; the message names the dotted key, the rule and the value."""

    def need(ok: bool, key: str, rule: str, value) -> None:
        if not ok:
            raise RecipeError(f"{where}: {key} must be {rule}, got {value!r}")

    def choice(key: str, value, choices) -> None:
        need(value in choices, key, "one of " + ", ".join(map(str, choices)), value)

    try:
        check_name(recipe.name, "recipe name")
    except OutputError as exc:
        raise RecipeError(f"{where}: name: {exc}") from None
    for check in (check_model_and_prune, check_finetune, check_merge_and_eval, check_export, check_card_and_publish):
        check(recipe, where, need, choice)
    check_bounds(recipe, need)  # last: a value below its lower bound is named by the rule above


def parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:  # the value is read as YAML (a number, a list...): name what is wrong
            problem = "; ".join(str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p)
            raise RecipeError(f"--set {key.strip()}: the value {value!r} is not valid YAML ({problem or exc}): "
                               "write a YAML value (5, 1e-3, [a, b], true) or quote text") from None
    return overrides
