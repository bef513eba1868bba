"""Structured GLU pruning: remove the least important MLP neurons of every decoder layer.

    finsent prune --model smollm2 --ratio 0.4 --out runs/smollm2-135m/pruned
    finsent prune --recipe build/recipes/llama-finsent-s.yaml          # out: runs/<recipe>/pruned

Every layer's MLP keeps the same ``k`` neurons with the highest importance score (see
``finsent.build.importance``); kept indices are sorted ascending so the surviving neurons keep their order.
Rows of ``gate_proj``/``up_proj`` (and their biases) and columns of ``down_proj`` are sliced, and
``config.intermediate_size`` becomes ``k``: the result is a plain model of the same architecture that
``AutoModelForCausalLM.from_pretrained`` loads with no custom code. Works for any model whose decoder
layers hold ``mlp.gate_proj/up_proj/down_proj`` (Llama, Qwen2/3, Mistral, Gemma).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from finsent.build.data import training_data
from finsent.build.importance import (
    activation_norms,
    activation_scores,
    check_amount,
    kept_size,
    neuron_scores,
    ratio_for_expansion,
)
from finsent.build.vocab import kept_ids, tokenizer_json, trim_model, trim_tokenizer_json, used_ids
from finsent.core.errors import UsageError
from finsent.core.labels import SCHEMES
from finsent.core.models import load_model_and_tokenizer
from finsent.core.outputs import check_output_dir, output_dir
from finsent.core.prompts import KINDS, instruction, training_text
from finsent.core.recipe_values import ACTIVATION_METHODS, canonical_method
from finsent.core.reports import write_report

logger = logging.getLogger(__name__)

GLU_PARTS = ("gate_proj", "up_proj", "down_proj")


class PruningError(UsageError, ValueError):
    """A prune that cannot be done: unsupported architecture, impossible amount, unknown method."""


# --- finding the GLU MLPs ---------------------------------------------------------------------------


def _decoder_layers(model):
    """The decoder layers (``model.model.layers`` for Llama-likes), or None."""
    inner = getattr(model, "model", None)
    for holder in (inner, getattr(inner, "language_model", None), model):
        layers = getattr(holder, "layers", None) if holder is not None else None
        if layers is not None and len(layers) > 0:
            return list(layers)
    return None


def glu_mlps(model) -> list:
    """Every decoder layer's GLU MLP; a clear PruningError for any other architecture."""
    import torch.nn as nn

    arch = type(model).__name__
    model_type = getattr(getattr(model, "config", None), "model_type", "?")
    expected = ("structured GLU pruning needs decoder layers at model.model.layers whose .mlp has "
                "gate_proj, up_proj and down_proj nn.Linear layers (Llama, Qwen2, Mistral, Gemma)")
    layers = _decoder_layers(model)
    if layers is None:
        raise PruningError(f"{arch} (model_type {model_type!r}) is not supported: no decoder layers found; {expected}")
    mlps = []
    for i, layer in enumerate(layers):
        mlp = getattr(layer, "mlp", None)
        missing = [p for p in GLU_PARTS if not isinstance(getattr(mlp, p, None), nn.Linear)]
        if missing:
            raise PruningError(
                f"{arch} (model_type {model_type!r}) is not supported: layer {i}'s MLP "
                f"({type(mlp).__name__}) lacks {', '.join(missing)}; {expected}"
            )
        gate, up, down = mlp.gate_proj, mlp.up_proj, mlp.down_proj
        if not gate.out_features == up.out_features == down.in_features or gate.in_features != up.in_features:
            raise PruningError(f"layer {i}: gate {tuple(gate.weight.shape)}, up {tuple(up.weight.shape)} and "
                               f"down {tuple(down.weight.shape)} do not form a GLU MLP")
        mlps.append(mlp)
    sizes = {m.gate_proj.out_features for m in mlps}
    if len(sizes) != 1:
        raise PruningError(f"{arch}: layers have different MLP sizes {sorted(sizes)}; one config.intermediate_size "
                           "cannot describe the pruned model")
    return mlps


def count_params(model) -> int:
    """Parameters, each counted once (tied input/output embeddings count once, as on the Hub)."""
    return sum(p.numel() for p in model.parameters())


# --- slicing ----------------------------------------------------------------------------------------


def _set_weight(linear, weight, bias=None) -> None:
    import torch.nn as nn

    linear.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
    if bias is not None:
        linear.bias = nn.Parameter(bias, requires_grad=linear.bias.requires_grad)
    linear.out_features, linear.in_features = weight.shape


def slice_mlp(mlp, keep) -> None:
    """Keep neurons ``keep`` (int64 [k], ascending) of one GLU MLP, in place, dtype and device unchanged."""
    import torch

    with torch.no_grad():
        keep = keep.to(mlp.gate_proj.weight.device)
        for name in ("gate_proj", "up_proj"):  # [I, H] -> [k, H]; bias [I] -> [k]
            lin = getattr(mlp, name)
            bias = lin.bias.index_select(0, keep) if lin.bias is not None else None
            _set_weight(lin, lin.weight.index_select(0, keep), bias)
        # down_proj [H, I] -> [H, k]; its bias [H] is per output, untouched
        _set_weight(mlp.down_proj, mlp.down_proj.weight.index_select(1, keep))


def select_neurons(scores, k: int):
    """Indices of the ``k`` highest scores, ascending (torch.topk then sort, as optipfair does)."""
    import torch

    _, keep = torch.topk(scores, k, largest=True)
    return keep.sort().values


def prune_model(model, method: str = "ppm", ratio: float | None = None, expansion: float | None = None,
                round_to: int = 1, progress: bool = True, tokenizer=None, calibration: list[str] | None = None) -> dict:
    """Prune every GLU MLP of ``model`` in place and return the report (``pruning.json`` without bytes).

    ``ratio`` is the fraction of neurons removed per layer; ``expansion`` instead names the target
    intermediate/hidden x 100 (Llama-3.2-1B: 400 -> 240 for the 40 % prune). Works on the meta device
    too (shapes only), which is how the golden Llama-3.2-1B count is checked without weights.
    Method ``act`` runs ``calibration`` (texts, tokenized with ``tokenizer``) through the model first.
    """
    from tqdm.auto import tqdm

    try:
        method = canonical_method(method)
    except ValueError as exc:
        raise PruningError(str(exc)) from None
    mlps = glu_mlps(model)
    intermediate, hidden = mlps[0].gate_proj.out_features, mlps[0].gate_proj.in_features
    try:
        k = kept_size(intermediate, hidden, ratio=ratio, expansion=expansion, round_to=round_to)
    except ValueError as exc:
        raise PruningError(str(exc)) from None
    if ratio is None:
        ratio = ratio_for_expansion(expansion, intermediate, hidden)
    norms = None
    if method in ACTIVATION_METHODS:
        if not calibration or tokenizer is None:
            raise PruningError(f"prune method {method!r} scores neurons by their activations: it needs calibration "
                               "texts and the tokenizer (a recipe's prune.calibration_rows of its training data)")
        norms = activation_norms(model, tokenizer, list(calibration), mlps, progress=progress)
    params_before = count_params(model)
    logger.info("%s: keeping %d of %d GLU neurons in each of %d layers (%s)", type(model).__name__, k,
                intermediate, len(mlps), method)
    kept, cut_scores = [], []
    for i, mlp in enumerate(tqdm(mlps, desc=f"pruning MLPs ({method})", unit="layer", disable=not progress)):
        if norms is not None:
            scores = activation_scores(norms[i], mlp.down_proj.weight)  # float32 [I]
        else:
            scores = neuron_scores(method, mlp.gate_proj.weight, mlp.up_proj.weight)  # float32 [I]
        keep = select_neurons(scores, k)
        if not scores.is_meta:  # the lowest kept score: where this layer's cut fell
            cut_scores.append(round(float(scores.index_select(0, keep).min()), 6))
        slice_mlp(mlp, keep)
        kept.append(int(keep.numel()))
    # Composite models (e.g. Gemma 3 with vision) keep the decoder's sizes in a nested text config.
    model.config.get_text_config(decoder=True).intermediate_size = k
    return {
        "method": method,
        "ratio": ratio,
        "expansion": expansion,  # the requested target, when the amount was given that way
        "round_to": int(round_to),
        "architecture": type(model).__name__,
        "hidden_size": hidden,
        "intermediate_before": intermediate,
        "intermediate_after": k,
        "expansion_before": intermediate / hidden * 100,
        "expansion_after": k / hidden * 100,
        "kept_per_layer": kept,
        "score_cut_per_layer": cut_scores,
        "calibration": {"texts": len(calibration), "sha256": texts_sha256(calibration)} if norms is not None
        else None,
        "params_before": params_before,
        "params_after": count_params(model),
        "bytes_on_disk": None,  # filled by run_prune after saving
    }


def texts_sha256(texts: list[str]) -> str:
    """One hash of the calibration texts, in order (each UTF-8 text followed by a NUL byte)."""
    import hashlib

    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\0")
    return digest.hexdigest()


def calibration_texts(recipe) -> list[str] | None:
    """The texts an activation-scored prune runs through the model, or None for a weight-only method.

    ``prune.calibration_rows`` training rows of the recipe's own ``finetune.data``, drawn with its seed after
    the dev split is held out (``finsent.build.data.training_data``), so dev rows never steer which neurons stay;
    each is the full training line (prompt and answer), the text the model is tuned on afterwards.
    """
    import random


    if canonical_method(recipe.prune.method) not in ACTIVATION_METHODS:
        return None
    f = recipe.finetune
    rows = training_data(f).examples
    picked = random.Random(f.seed).sample(rows, min(recipe.prune.calibration_rows, len(rows)))
    return [training_text(e.instruction, e.text, e.answer) for e in picked]


def vocab_rows(recipe) -> list[tuple[str, str, str]] | None:
    """The rows whose tokens a trimmed vocabulary keeps (``prune.vocab_first``), or None when it is not trimmed.

    Every training row of the recipe's ``finetune.data`` after the dev split is held out (dev rows never decide
    which tokens stay), as (instruction, text, answer); then, so that every prompt of the classifier keeps its
    tokens whatever the recipe trains on, each scheme's instruction for each kind with each of its labels.
    """

    if recipe.prune.vocab_first is None:
        return None
    f = recipe.finetune
    rows = training_data(f).examples
    prompts = [(instruction(scheme, kind), label, label) for scheme, labels in SCHEMES.items() for kind in KINDS
               for label in labels]
    return [(e.instruction, e.text, e.answer) for e in rows] + prompts


# --- the stage: load, prune, save ----------------------------------------------------------------

WHAT = "prune output folder"  # names the folder in OutputError messages


def run_prune(section, base: str, out_dir: str | Path, revision: str | None = None, dtype: str = "auto",
              progress: bool = True, overwrite: bool = False, calibration: list[str] | None = None,
              vocab: list[tuple[str, str, str]] | None = None) -> Path:
    """Load ``base`` (folder, Hub id or "smollm2"), prune it as ``section`` says, save it to ``out_dir``.

    ``section`` is a ``recipes.PruneSection`` (method, ratio or expansion, round_to); method ``act`` also
    needs ``calibration`` texts (``calibration_texts(recipe)``); ``section.vocab_first`` also trims the
    vocabulary to the tokens of the ``vocab`` rows (``vocab_rows(recipe)``, ``finsent.build.vocab``). ``dtype`` "auto"
    keeps the checkpoint's own dtype. ``out_dir`` is checked before the model is loaded: an existing
    folder that finsent did not write (or that holds committed files) is refused unless ``overwrite``.
    The folder is written beside ``out_dir`` and renamed into place (``outputs.output_dir``), so an
    interrupted run never leaves a half-written model; ``pruning.json`` is the report.
    """

    out_dir = check_output_dir(out_dir, kind="pruned", overwrite=overwrite, what=WHAT,  # before a long download
                               reads=[base])
    _check_section(section)
    if canonical_method(section.method) in ACTIVATION_METHODS and not calibration:
        raise PruningError(f"prune method {section.method!r} needs calibration texts: prune with a recipe "
                           "(its finetune.data supplies prune.calibration_rows rows)")
    if section.vocab_first is not None and not vocab:
        raise PruningError("prune.vocab_first keeps the tokens of the training data: prune with a recipe "
                           "(its finetune.data supplies the rows)")
    torch_dtype = _torch_dtype(dtype)
    start = time.perf_counter()
    model, tokenizer, source = load_model_and_tokenizer(base, dtype=torch_dtype, revision=revision)
    loaded = time.perf_counter()
    report = prune_model(model, method=section.method, ratio=section.ratio, expansion=section.expansion,
                         round_to=section.round_to, progress=progress, tokenizer=tokenizer, calibration=calibration)
    trimmed = None
    if section.vocab_first is not None:
        trimmed = trim_vocabulary(model, tokenizer, section.vocab_first, vocab, report, section.vocab_min_count)
    pruned = time.perf_counter()
    with output_dir(out_dir, kind="pruned", overwrite=overwrite, what=WHAT, reads=[base]) as tmp:
        model.save_pretrained(tmp)  # safetensors
        tokenizer.save_pretrained(tmp)
        if trimmed is not None:
            save_trimmed_tokenizer(tmp, *trimmed)
        report.update(
            base=str(base), source=source, revision=revision, dtype=str(next(model.parameters()).dtype),
            bytes_on_disk=sum(f.stat().st_size for f in tmp.glob("*.safetensors")),  # weight files only
            seconds_load=round(loaded - start, 3), seconds_prune=round(pruned - loaded, 3),
            seconds_save=round(time.perf_counter() - pruned, 3),
        )
        write_report("pruning", report, tmp / "pruning.json")
        _plot(report, tmp / "pruning.png")
    logger.info("pruned %s: %d -> %d params, %d bytes in %s", base, report["params_before"],
                report["params_after"], report["bytes_on_disk"], out_dir)
    return out_dir


def trim_vocabulary(model, tokenizer, first: int, rows, report: dict, min_count: int = 1) -> tuple[dict, list[int]]:
    """Trim ``model``'s vocabulary in place (``finsent.build.vocab``) to the first ``first`` ids and the tokens that
    occur ``min_count`` times in ``rows``, and record it in ``report``; returns the trimmed tokenizer.json and the
    kept ids, for ``save_trimmed_tokenizer``."""

    before = model.get_input_embeddings().weight.shape[0]
    keep = kept_ids(tokenizer, used_ids(tokenizer, rows, min_count), first, model.config)
    data = trim_tokenizer_json(tokenizer_json(tokenizer), keep)
    trim_model(model, keep)
    report["vocab"] = {"first": first, "min_count": min_count, "before": before, "after": len(keep), "rows": len(rows),
                       "sha256": texts_sha256(["\0".join(row) for row in rows])}
    report["params_after"] = count_params(model)
    logger.info("vocabulary trimmed: %d -> %d tokens (those seen %d+ times in %d rows, and the first %d ids)",
                before, len(keep), min_count, len(rows), first)
    return data, keep


def save_trimmed_tokenizer(folder: Path, data: dict, keep: list[int]) -> None:
    """Replace the tokenizer files that ``save_pretrained`` wrote in ``folder`` with the trimmed vocabulary's."""
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    config = folder / "tokenizer_config.json"
    settings = json.loads(config.read_text(encoding="utf-8"))
    if settings.get("added_tokens_decoder"):  # keyed by id: renumber as the vocabulary was
        new_id = {old: new for new, old in enumerate(keep)}
        settings["added_tokens_decoder"] = {str(new_id[int(i)]): v for i, v in settings["added_tokens_decoder"].items()}
        config.write_text(json.dumps(settings, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _check_section(section) -> None:
    """What can be checked before loading the model (expansion vs. the model's size comes later)."""
    try:
        canonical_method(section.method)
        check_amount(section.ratio, section.expansion, section.round_to)
    except ValueError as exc:
        raise PruningError(str(exc)) from None


def _torch_dtype(name: str):
    import torch

    if name in (None, "auto"):
        return "auto"
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise PruningError(f"unknown dtype {name!r}: choose auto, float32, bfloat16 or float16") from None


def _plot(report: dict, path: Path) -> None:
    """Per-layer cut score (lowest kept importance): where each layer's threshold fell."""
    cuts = report.get("score_cut_per_layer") or []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is in the eval extra; the plot is a bonus, the model is the result
        logger.info("matplotlib not installed: no %s", path.name)
        return
    if not cuts:
        return
    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(range(len(cuts)), cuts, marker="o")
    ax.set_xlabel("decoder layer")
    ax.set_ylabel(f"lowest kept {report['method']} score")
    ax.set_title(f"{report['intermediate_before']} -> {report['intermediate_after']} GLU neurons per layer")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- command line --------------------------------------------------------------------------------

AMOUNT_HELP = """\
amount (give one; a recipe's value is the default):
  --ratio X       fraction of each layer's GLU neurons removed: n_prune = min(int(X*I), I-1), kept k = I - n_prune.
                  Llama-3.2-1B (I=8192): 0.4 keeps 4916 (the published Llama-FinSent-S).
  --expansion E   target expansion rate in percent, E = intermediate/hidden x 100 (optipfair's convention).
                  Llama-3.2-1B is 400 % (8192/2048); the 40 % prune is 240 %. The model card's
                  "300 % -> 140 %" counts only the expansion beyond the hidden size (this figure minus 100).
  --round-to N    round the kept size down to a multiple of N (e.g. 64 for fast kernels); never grows a layer,
                  never below 1.
"""


