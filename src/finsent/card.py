"""The model card: ``MODEL_CARD.md`` (prose + Jinja2 places) filled from the recipe, reports and results.

    finsent card releases/<recipe-name> [--recipe build/recipes/<name>.yaml]     # writes README.md there

``render_card(recipe, release_dir)`` reads ``reports/pruning.json``, ``reports/training.json``,
``eval/<benchmark>-<scheme>-<mode>.json`` and ``eval/speed.json`` (schemas: the shared release contract),
the published reference scores (``eval/references.yaml``, the release's copy first, else the
project's), builds the YAML metadata with ``huggingface_hub.ModelCardData`` (``model-index`` from the
eval results) and renders the template with ``StrictUndefined``: a missing report, key or result
stops the render with an error naming it, and nothing is ever filled with a placeholder.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .errors import UsageError
from .labels import SCHEMES
from .prompts import CUE, answer_piece, instruction, prefix_piece, prompt_text

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parents[2] / "MODEL_CARD.md"
EVAL_NAME = re.compile(r"^(?P<benchmark>[a-z0-9_]+)-(?P<scheme>[37])-(?P<mode>score|generate)\.json$")
# Hub ids of bases that the recipes name by a short local name.
BASE_IDS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
METHODS = {  # how each neuron-importance score is computed (REFERENCE.md s. 1)
    "ppm": "PPM (called MAW in the original notebook): per neuron, max + |min| of its gate_proj row plus "
           "max + |min| of its up_proj row, in float32",
    "vow": "VOW: variance of the neuron's gate_proj and up_proj weights",
    "pon": "PON: product of the norms of the neuron's gate_proj and up_proj rows",
    "l2": "L2: norm of the neuron's gate_proj and up_proj rows",
}
PRUNING_KEYS = ("method", "ratio", "hidden_size", "intermediate_before", "intermediate_after", "expansion_before",
                "expansion_after", "kept_per_layer", "params_before", "params_after", "bytes_on_disk")
TRAINING_KEYS = ("steps", "epochs", "learning_rate", "warmup_steps", "effective_batch", "loss", "train_loss",
                 "seconds", "trainable_params", "rows", "data", "lora", "precision")
EVAL_KEYS = ("benchmark", "dataset", "split", "scheme", "mode", "n", "metrics")
METRIC_KEYS = ("accuracy", "macro_f1", "weighted_f1", "unparseable")
SPEED_KEYS = ("device", "threads", "params", "rows")  # bytes_on_disk may be null (shape-only benchmarks)
SPEED_ROW_KEYS = ("config", "mode", "scheme", "batch_size", "items_per_second", "p50_ms", "p95_ms",
                  "peak_memory_mb", "speedup_vs_card")


class CardError(UsageError, ValueError):
    """The card cannot be rendered: a report, a key or a result is missing or malformed."""


def _read_json(path: Path, keys: tuple[str, ...], made_by: str) -> dict:
    if not path.is_file():
        raise CardError(f"cannot render the card: {path} is missing (it is written by `{made_by}`)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CardError(f"{path}: not valid JSON ({exc})") from None
    _require(data, keys, str(path))
    return data


def _require(data: dict, keys: tuple[str, ...], where: str) -> None:
    missing = [k for k in keys if not isinstance(data, dict) or k not in data or data[k] is None]
    if missing:
        raise CardError(f"{where}: missing {', '.join(missing)}")


def read_results(release_dir: Path) -> list[dict]:
    """The eval results of a release, ordered by benchmark, scheme, mode; none at all is an error."""
    eval_dir = release_dir / "eval"
    paths = sorted(p for p in eval_dir.glob("*.json") if EVAL_NAME.match(p.name)) if eval_dir.is_dir() else []
    if not paths:
        raise CardError(f"cannot render the card: no eval results in {eval_dir} "
                        "(<benchmark>-<scheme>-<mode>.json, written by `finsent eval`)")
    results = []
    for path in paths:
        result = _read_json(path, EVAL_KEYS, "finsent eval")
        _require(result["metrics"], METRIC_KEYS, f"{path}: metrics")
        results.append(result)
    order = {"score": 0, "generate": 1}
    return sorted(results, key=lambda r: (r["benchmark"], r["scheme"], order[r["mode"]]))


def read_speed(path: Path, made_by: str) -> dict:
    """A ``finsent bench`` speed.json with every key the card's speed table shows."""
    speed = _read_json(path, SPEED_KEYS, made_by)
    for i, row in enumerate(speed["rows"]):
        _require(row, SPEED_ROW_KEYS, f"{path}: rows[{i}]")
    return speed


def read_references(release_dir: Path) -> dict | None:
    """Published reference scores: the release's eval/references.yaml, else the project's; None if neither."""
    from .eval_summary import REFERENCES_FILE, load_references

    for path in (release_dir / "eval" / "references.yaml", REFERENCES_FILE):
        if path.is_file():
            try:
                return load_references(path)
            except ValueError as exc:
                raise CardError(str(exc)) from None
    return None


def base_model_id(base: str) -> str | None:
    """The Hub id of the base for the metadata; a local folder has none."""
    if base in BASE_IDS:
        return BASE_IDS[base]
    return base if re.fullmatch(r"[\w.-]+/[\w.-]+", base) and not Path(base).exists() else None


def benchmark_title(name: str) -> str:
    from .benchmarks import BENCHMARKS

    return BENCHMARKS[name].title if name in BENCHMARKS else name


def card_data(recipe, results: list[dict]):
    """``ModelCardData`` with the ``model-index``: accuracy, macro and weighted F1 of every run."""
    from huggingface_hub import EvalResult, ModelCardData

    evals = []
    for r in results:
        label = f"{r['scheme']}-class, {'label scoring' if r['mode'] == 'score' else 'generation'}"
        for metric, name, config in (("accuracy", "Accuracy", None), ("f1", "Macro F1", "macro"),
                                     ("f1", "Weighted F1", "weighted")):
            key = "accuracy" if metric == "accuracy" else f"{config}_f1"
            evals.append(EvalResult(
                task_type="text-classification", task_name="Financial sentiment analysis",
                dataset_type=r["dataset"], dataset_name=benchmark_title(r["benchmark"]),
                dataset_split=r["split"], metric_type=metric, metric_name=f"{name} ({label})",
                metric_config=config, metric_value=round(float(r["metrics"][key]), 4)))
    base = base_model_id(recipe.model.base)
    return ModelCardData(
        license=recipe.model.license, base_model=base, datasets=list(recipe.card.datasets),
        language=list(recipe.card.language), library_name="transformers", pipeline_tag="text-generation",
        tags=list(recipe.card.tags), metrics=["accuracy", "f1"], model_name=recipe.card.model_name,
        eval_results=evals)


def context(recipe, release_dir: Path, repo_id: str | None = None) -> dict:
    """Everything the template uses, read and checked."""
    release_dir = Path(release_dir)
    results = read_results(release_dir)
    pruning = None
    if recipe.prune.enabled:
        pruning = _read_json(release_dir / "reports" / "pruning.json", PRUNING_KEYS, "finsent prune")
        pruning["method_text"] = METHODS.get(pruning["method"], pruning["method"])
        pruning["reduction"] = 100 * (1 - pruning["params_after"] / pruning["params_before"])
    training = _read_json(release_dir / "reports" / "training.json", TRAINING_KEYS, "finsent finetune")
    _require(training["lora"], ("r", "alpha", "dropout", "target_modules"), "reports/training.json: lora")
    speed = None
    if recipe.eval.speed:
        speed = read_speed(release_dir / "eval" / "speed.json", "finsent bench")
    shape_speed = None
    if recipe.card.shape_speed:
        shape_speed = read_speed(TEMPLATE.parent / recipe.card.shape_speed, "finsent bench --shape")
    refs = read_references(release_dir)
    ours = {r["benchmark"]: r["metrics"]["weighted_f1"] for r in results if r["scheme"] == "3" and r["mode"] == "score"}
    from .benchmarks import BENCHMARKS

    # Our scores that do not cover a benchmark's full published test set are flagged in the comparison.
    partial = sorted(r["benchmark"] for r in results if r["scheme"] == "3" and r["mode"] == "score"
                     and (r["benchmark"] not in BENCHMARKS or r["n"] != BENCHMARKS[r["benchmark"]].size))

    # Reference columns: the known benchmarks in their usual order, where we or a reference have a score.
    quoted = {b for m in (refs or {}).get("models", []) for b, v in m["weighted_f1"].items() if v is not None}
    benchmarks = [b for b in [*BENCHMARKS, *sorted(ours)] if b in ours or b in quoted]
    benchmarks = list(dict.fromkeys(benchmarks))
    data = card_data(recipe, results)
    repo_id = repo_id or recipe.publish.repo_id
    if not repo_id:  # the usage code must load something real: the folder itself until a repo id is known
        repo_id = str(release_dir)
        logger.warning("no repo id (publish.repo_id or --repo-id): the card's usage code loads %s", repo_id)
    instr3, instr7 = instruction("3", "news"), instruction("7", "news")
    return {
        "card_data": data.to_yaml(), "model_name": recipe.card.model_name, "repo_id": repo_id,
        "description": recipe.description, "base": recipe.model.base, "base_id": data.base_model,
        "license": recipe.model.license, "pruning": pruning, "training": training, "results": results,
        "speed": speed, "shape_speed": shape_speed, "references": refs, "ref_benchmarks": benchmarks,
        "ours": ours, "partial": partial,
        "instr3": instr3, "instr7": instr7, "instr_tweet": instruction("3", "tweet"),
        "example_prompt": prompt_text(instr7, "Shares of Acme fell 12 % after the company cut its outlook."),
        "prefix3": repr(prefix_piece(instr3)), "prefix7": repr(prefix_piece(instr7)),
        "cue": repr(CUE), "answer_format": repr(answer_piece("{}")),
        "labels3": repr(list(SCHEMES["3"])), "labels7": repr(list(SCHEMES["7"])),
        "datasets": list(recipe.card.datasets),
    }


def _env():
    import jinja2

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["num"] = lambda x: f"{int(x):,d}"
    env.filters["f3"] = lambda x: "–" if x is None else f"{float(x):.3f}"
    env.filters["f1"] = lambda x: f"{float(x):.1f}"
    env.filters["mb"] = lambda x: "–" if x is None else f"{x / 1e6:,.1f} MB"
    env.filters["bench"] = benchmark_title
    env.filters["source"] = _source
    return env


def _source(item) -> str:
    """One training source of training.json's ``data``: a dict from ``finsent finetune``, or a plain name."""
    if isinstance(item, dict):
        used = item.get("rows_used")
        return f"`{item['path']}`" + (f" ({used:,d} rows)" if used is not None else "")
    return f"`{item}`"


def render_card(recipe, release_dir, template: str | Path | None = None, repo_id: str | None = None) -> str:
    """Render the card for ``release_dir``, write it to ``release_dir/README.md`` and return the text.

    ``repo_id`` (default: the recipe's ``publish.repo_id``) is the Hub id the usage code loads.
    """
    import jinja2
    from huggingface_hub import ModelCard

    release_dir = Path(release_dir)
    template = Path(template) if template else TEMPLATE
    if not template.is_file():
        raise CardError(f"card template {template} not found")
    ctx = context(recipe, release_dir, repo_id)
    try:
        text = _env().from_string(template.read_text()).render(**ctx)
    except jinja2.UndefinedError as exc:
        raise CardError(f"{template}: the template uses something the reports do not provide ({exc})") from None
    ModelCard(text)  # parses the metadata block: a broken card never gets written
    (release_dir / "README.md").write_text(text)
    logger.info("wrote %s (%d results)", release_dir / "README.md", len(ctx["results"]))
    return text


def register(sub) -> None:
    p = sub.add_parser("card", help="render the model card (README.md) of a release folder",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("release_dir", type=Path, help="the release folder (releases/<recipe-name>)")
    p.add_argument("--recipe", type=Path, help="recipe YAML (default: RELEASE_DIR/reports/recipe.yaml)")
    p.add_argument("--repo-id", help="Hub id the usage code loads (default: the recipe's publish.repo_id)")
    p.add_argument("--template", type=Path, help=f"card template (default: {TEMPLATE.name} of the project)")
    p.set_defaults(func=_card)


def _card(args) -> int:
    import sys

    from .recipes import load_recipe

    recipe = load_recipe(args.recipe or args.release_dir / "reports" / "recipe.yaml")
    try:
        render_card(recipe, args.release_dir, args.template, repo_id=args.repo_id)
    except CardError as exc:
        print(f"finsent card: error: {exc}", file=sys.stderr)
        return 2
    print(args.release_dir / "README.md")
    return 0
