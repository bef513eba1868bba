"""The model card: ``MODEL_CARD.md`` (prose + Jinja2 places) filled from the recipe, reports and results.

    finsent card releases/<recipe-name> [--recipe build/recipes/<name>.yaml]     # writes README.md there

``render_card(recipe, release_dir)`` reads ``reports/pruning.json``, ``reports/training.json``,
``eval/<benchmark>-<scheme>-<mode>.json``, ``eval/speed.json`` (their fields are declared once, in
``finsent.core.reports``), the export stage's ``reports/exports.json`` when there is one (``finsent.export.stage``:
the run-anywhere section names only the files the release carries, with their label agreement), whether the
folder ships ``finsent_pipeline.py``, the release's own weight files (their size and dtype), the recipe's
``card.shape_speed`` and ``card.pruning_cost`` files when set (the latter's ``pruning_cost.png``, when it sits
beside the JSON, is copied into the release as ``reports/pruning_cost.png`` and embedded), the published reference
scores (the release's ``eval/references.yaml`` first, else the copy shipped in the package), builds the
YAML metadata with ``huggingface_hub.ModelCardData`` (``model-index`` from the eval results) and renders
the template with ``StrictUndefined``: a missing report, key or result stops the render with an error
naming it, and nothing is ever filled with a placeholder. Maintainers edit the template at the
repository's root; the wheel ships a copy of it as ``finsent/resources/MODEL_CARD.md`` (the build hook
``hatch_build.py``) beside the reference scores, so an installed wheel renders cards without a source checkout.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from finsent.core.errors import UsageError
from finsent.core.labels import SCHEMES
from finsent.core.outputs import edited_by_hand, record_written_file, write_bytes_atomic, write_text_atomic
from finsent.core.paths import REPO_ROOT, RESOURCES
from finsent.core.pipeline import PIPELINE_FILE
from finsent.core.prompts import CUE, answer_piece, instruction, prefix_piece, prompt_text
from finsent.core.reports import MEMORY_KINDS, ReportError, memory_kind, read_report
from finsent.evaluation.benchmarks import BENCHMARKS
from finsent.evaluation.runs import EVAL_NAME
from finsent.evaluation.summary import REFERENCES_FILE, load_references
from finsent.export.stage import ExportStageError, read_exports
from finsent.hub.gate import PublishError, check_repo_id, safetensors_header

logger = logging.getLogger(__name__)

# An installed wheel carries the template as package data; a source checkout reads the root's file.
_PACKAGED_TEMPLATE = RESOURCES / "MODEL_CARD.md"
TEMPLATE = _PACKAGED_TEMPLATE if _PACKAGED_TEMPLATE.is_file() else REPO_ROOT / "MODEL_CARD.md"
# Hub ids of bases that the recipes name by a short local name.
BASE_IDS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# How each neuron-importance score is computed: optipfair 0.4.2's compute_neuron_pair_importance_{maw,vow,
# pon,l2} (optipfair/pruning/mlp_glu.py, https://github.com/peremartra/optipfair), which finsent.build.importance
# reproduces; PPM/MAW is the method of Martra (2024), https://doi.org/10.31219/osf.io/qgxea.
METHODS = {
    "ppm": "PPM (called MAW in the original notebook): per neuron, max + |min| of its gate_proj row plus "
           "max + |min| of its up_proj row, in float32",
    "vow": "VOW: variance of the neuron's gate_proj and up_proj weights",
    "pon": "PON: product of the norms of the neuron's gate_proj and up_proj rows",
    "l2": "L2: norm of the neuron's gate_proj and up_proj rows",
    "act": "activation-weighted: the L2 norm of the neuron's output act(gate x) * up x over calibration prompts "
           "drawn from the training data, times the norm of its down_proj column (structured Wanda, "
           "arXiv:2306.11695)",
}
DTYPES = {"F16": "float16", "BF16": "bfloat16", "F32": "float32", "F64": "float64", "I8": "int8", "U8": "uint8",
          "F8_E4M3": "float8 e4m3", "F8_E5M2": "float8 e5m2", "I16": "int16", "I32": "int32", "I64": "int64",
          "BOOL": "bool"}


class CardError(UsageError, ValueError):
    """The card cannot be rendered: a report, a key or a result is missing or malformed."""


def _read(kind: str, path: Path, made_by: str | None = None) -> dict:
    """A report checked against its schema (``finsent.core.reports``); a problem is a CardError naming file and key."""
    if made_by and not path.is_file():
        raise CardError(f"cannot render the card: {path} is missing (it is written by `{made_by}`)")
    try:
        return read_report(kind, path)
    except ReportError as exc:
        prefix = "cannot render the card: " if not path.is_file() else ""
        raise CardError(prefix + str(exc)) from None


def read_results(release_dir: Path) -> list[dict]:
    """The eval results of a release, ordered by benchmark, scheme, mode; none at all is an error."""
    eval_dir = release_dir / "eval"
    paths = sorted(p for p in eval_dir.glob("*.json") if EVAL_NAME.match(p.name)) if eval_dir.is_dir() else []
    if not paths:
        raise CardError(f"cannot render the card: no eval results in {eval_dir} "
                        "(<benchmark>-<scheme>-<mode>.json, written by `finsent eval`)")
    results = [_read("eval", path) for path in paths]
    order = {"score": 0, "generate": 1}
    return sorted(results, key=lambda r: (r["benchmark"], r["scheme"], order[r["mode"]]))


def read_speed(path: Path, made_by: str) -> dict:
    """A ``finsent bench`` speed.json with every key the card's speed table shows."""
    return _read("speed", path, made_by)


def release_weights(release_dir: Path) -> dict:
    """The release's own weight files (``*.safetensors`` at its top level): names, total bytes, tensor dtypes.

    This is what a user downloads (the merged model, fp16 for the published recipes), not the pruning
    stage's intermediate that ``pruning.json``'s ``bytes_on_disk`` measured.
    """

    files = sorted(release_dir.glob("*.safetensors"))
    if not files:
        raise CardError(f"cannot render the card: no weights (*.safetensors) in {release_dir}: the card states "
                        "their size (they are written by `finsent merge`)")
    dtypes = set()
    for path in files:
        try:
            header = safetensors_header(path)
        except PublishError as exc:
            raise CardError(str(exc)) from None
        dtypes |= {v["dtype"] for k, v in header.items() if k != "__metadata__"}
    return {"files": [p.name for p in files], "bytes": sum(p.stat().st_size for p in files),
            "dtypes": [DTYPES.get(d, d) for d in sorted(dtypes)]}


def training_sources(data: list) -> list[str]:
    """training.json's ``data`` as card text, one entry per file: a file used twice (e.g. once with the
    3-class and once with the 7-class instruction) is named once, with the rows of each use."""
    grouped: dict[str, list] = {}
    for item in data:
        item = item if isinstance(item, dict) else {"path": str(item)}
        grouped.setdefault(item["path"], []).append(item)
    out = []
    for path, uses in grouped.items():
        used = [u.get("rows_used") for u in uses]
        if any(n is None for n in used):
            out.append(f"`{path}`")
        elif len(uses) == 1:
            out.append(f"`{path}` ({used[0]:,d} rows)")
        else:
            parts = " + ".join(f"{n:,d}" + (f" {u['scheme']}-class" if u.get("scheme") else "")
                               for n, u in zip(used, uses))
            out.append(f"`{path}` ({sum(used):,d} rows: {parts})")
    return out


def find_card_file(name: str) -> Path:
    """A file a recipe's card section names (``card.shape_speed``, ``card.pruning_cost``): absolute, else
    relative to the current folder, else to the source checkout this module runs from (an installed package
    has none: run from the project folder)."""

    path = Path(name)
    if path.is_absolute():
        return path
    for root in (Path.cwd(), REPO_ROOT):
        if (root / path).is_file():
            return root / path
    return Path.cwd() / path


PRUNING_COST_PLOT = "pruning_cost.png"  # beside the JSON; copied into the release as reports/pruning_cost.png


def read_pruning_cost(path: Path) -> dict:
    """A ``pruning_cost.json`` of build/bench/quality_table.py (schema ``pruning_cost``), with ``plot``: the
    ``pruning_cost.png`` beside it, or None. A missing file or field is a CardError naming both."""
    cost = _read("pruning_cost", path, "build/bench/quality_table.py")
    if not cost["rows"]:
        raise CardError(f"{path}: rows is empty: no run to show (run build/bench/quality_table.py after the runs)")
    plot = path.parent / PRUNING_COST_PLOT
    return {**cost, "plot": plot if plot.is_file() else None}


def copy_pruning_plot(pruning_cost: dict | None, release_dir: Path) -> None:
    """The pruning-cost plot the card embeds, copied into ``release_dir/reports`` atomically (temporary sibling,
    then ``os.replace``); a copy left by an earlier render is removed when the card no longer embeds one."""

    target = release_dir / "reports" / PRUNING_COST_PLOT
    if not pruning_cost or not pruning_cost["plot"]:
        if target.is_file():
            target.unlink()
            logger.info("removed %s: the card embeds no pruning-cost plot", target)
        return
    write_bytes_atomic(target, Path(pruning_cost["plot"]).read_bytes())


def read_references(release_dir: Path) -> dict | None:
    """Published reference scores: the release's eval/references.yaml, else the package's; None if neither."""

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
    return BENCHMARKS[name].title if name in BENCHMARKS else name


WEIGHT_TEXT = {"f16": "float16", "q8_0": "8-bit (q8_0)", "q4_k_m": "4-6 bit k-quant mix (q4_k_m)"}
EXAMPLE = "Acme Corp beats third-quarter estimates and raises its full-year guidance"


def exports_context(release_dir: Path) -> dict | None:
    """What the export stage wrote (``reports/exports.json``), for the card's run-anywhere section; None if the
    release has no exports. A listed file that is missing stops the render: the card names only what is there."""

    try:
        manifest = read_exports(release_dir)
    except ExportStageError as exc:
        raise CardError(f"cannot render the card: {exc}") from None
    if manifest is None:
        return None
    files = []
    for entry in manifest["files"]:
        if not (release_dir / entry["path"]).exists():
            raise CardError(f"cannot render the card: {release_dir / entry['path']} is listed in "
                            "reports/exports.json but missing: run `finsent release RECIPE --only export`")
        agreement = entry["agreement"]
        files.append({**entry, "weights": WEIGHT_TEXT.get(entry.get("quant"), "float32"),
                      "agreement_text": "not measured" if agreement is None else f"{100 * agreement:.1f} %"})
    gguf = [e for e in files if e["format"] == "gguf"]
    onnx = next((e for e in files if e["format"] == "onnx"), None)
    return {"files": files, "gguf": gguf, "onnx": onnx, "n": manifest["n"], "texts": manifest.get("texts"),
            "device": manifest.get("device") or "an unnamed machine",
            # the commands use the smallest GGUF file
            "run_gguf": min(gguf, key=lambda e: e["bytes"]) if gguf else None}


def shell_ansi_c(text: str) -> str:
    """``text`` as a bash ``$'...'`` word (newlines as \\n)."""
    return "$'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


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
    pruning = weights = None
    if recipe.prune.enabled:
        pruning = _read("pruning", release_dir / "reports" / "pruning.json")
        pruning["method_text"] = METHODS.get(pruning["method"], pruning["method"])
        pruning["reduction"] = 100 * (1 - pruning["params_after"] / pruning["params_before"])
        # measured, not the requested ratio (null when the prune was given as a target expansion)
        pruning["removed_share"] = 100 * (1 - pruning["intermediate_after"] / pruning["intermediate_before"])
        weights = release_weights(release_dir)
    training = _read("training", release_dir / "reports" / "training.json") if recipe.finetune.enabled else None
    speed = None
    if recipe.eval.speed:
        speed = read_speed(release_dir / "eval" / "speed.json", "finsent bench")
    shape_speed = None
    if recipe.card.shape_speed:
        shape_speed = read_speed(find_card_file(recipe.card.shape_speed), "finsent bench --shape")
    pruning_cost = None
    if recipe.card.pruning_cost:
        pruning_cost = read_pruning_cost(find_card_file(recipe.card.pruning_cost))
        pruning_cost["base_id"] = base_model_id(pruning_cost["base"]) or pruning_cost["base"]
    refs = read_references(release_dir)
    ours = {r["benchmark"]: r["metrics"]["weighted_f1"] for r in results if r["scheme"] == "3" and r["mode"] == "score"}

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
        logger.warning("no repo id (publish.repo_id or --repo-id): the card's usage code loads %s; `finsent push "
                       "--repo-id` refuses this card until it is rendered again with the repo id", repo_id)
    instr3, instr7 = instruction("3", "news"), instruction("7", "news")
    prompt3 = prompt_text(instr3, EXAMPLE)
    request = json.dumps({"prompt": prompt3, "n_predict": 3, "temperature": 0, "stop": ["\n"]})
    return {
        "exports": exports_context(release_dir), "example_text": EXAMPLE,
        "pipeline": (release_dir / PIPELINE_FILE).is_file(),
        "server_request": request.replace("'", "'\\''"), "shell_prompt": shell_ansi_c(prompt3),
        "ollama_template": f"Instruction: {instr3}\nInput: {{{{ .Prompt }}}}\nAnswer:",
        "card_data": data.to_yaml(), "model_name": recipe.card.model_name, "repo_id": repo_id,
        "description": recipe.description, "base": recipe.model.base, "base_id": data.base_model,
        "license": recipe.model.license, "pruning": pruning, "weights": weights, "training": training,
        # Without training, the files whose rows chose the kept neurons and tokens.
        "training_sources": training_sources(training["data"] if training else [s.path for s in recipe.finetune.data]),
        "results": results,
        "speed": speed, "shape_speed": shape_speed, "pruning_cost": pruning_cost, "recipe_name": recipe.name,
        "references": refs, "ref_benchmarks": benchmarks,
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
    env.filters["f1"] = lambda x: "–" if x is None else f"{float(x):.1f}"
    env.filters["f4"] = lambda x: "–" if x is None else f"{float(x):.4f}"
    env.filters["pct0"] = lambda x: f"{100 * float(x):.0f} %"
    env.filters["mb"] = lambda x: "–" if x is None else f"{x / 1e6:,.1f} MB"
    env.filters["bench"] = benchmark_title
    env.filters["code"] = lambda x: f"`{x}`"
    env.filters["memory_title"] = lambda s: ("process peak RSS" if memory_kind(s) == "process_rss"
                                             else "peak GPU memory")
    env.filters["memory_note"] = lambda s: MEMORY_KINDS[memory_kind(s)]
    env.filters["cost"] = speed_cost
    return env


def speed_cost(row: dict) -> str:
    """A speed row's accuracy cost as ``finsent bench --quality`` measured it on a tuned release."""
    if row.get("mode") != "score":
        return "–"
    if row.get("accuracy_delta") is not None:
        return f"{100 * row['accuracy_delta']:+.2f} pt, {100 * row['label_agreement']:.1f} % same label"
    return "exact" if row.get("exact", row.get("dtype") == "float32") else "not measured"


def check_card_target(release_dir, overwrite: bool = False) -> None:
    """Refuse to replace a ``README.md`` that someone edited after finsent wrote it (the marker holds the hash
    of the card finsent wrote), unless ``overwrite``."""

    if not overwrite and edited_by_hand(release_dir, "README.md"):
        raise CardError(f"{Path(release_dir) / 'README.md'} is not the card finsent wrote (edited by hand, or written "
                        "by another tool): put your changes in the card template (MODEL_CARD.md) and pass "
                        "--overwrite to replace it (nothing was written)")


def render_card(recipe, release_dir, template: str | Path | None = None, repo_id: str | None = None,
                overwrite: bool = False) -> str:
    """Render the card for ``release_dir``, write it to ``release_dir/README.md`` and return the text.

    ``repo_id`` (default: the recipe's ``publish.repo_id``) is the Hub id the usage code loads. A README.md
    that differs from the card finsent last wrote there is replaced only with ``overwrite``.
    """
    import jinja2
    from huggingface_hub import ModelCard

    release_dir = Path(release_dir)
    if repo_id is not None:
        check_repo_id(repo_id)
    check_card_target(release_dir, overwrite)
    template = Path(template) if template else TEMPLATE
    if not template.is_file():
        raise CardError(f"card template {template} not found")
    ctx = context(recipe, release_dir, repo_id)
    try:
        text = _env().from_string(template.read_text()).render(**ctx)
    except jinja2.UndefinedError as exc:
        raise CardError(f"{template}: the template uses something the reports do not provide ({exc})") from None
    ModelCard(text)  # parses the metadata block: a broken card never gets written

    copy_pruning_plot(ctx["pruning_cost"], release_dir)  # before the card that links to it
    write_text_atomic(release_dir / "README.md", text)
    record_written_file(release_dir, "README.md")
    logger.info("wrote %s (%d results)", release_dir / "README.md", len(ctx["results"]))
    return text


