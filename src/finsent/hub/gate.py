"""What a release folder must hold before ``finsent push`` sends it: the files, sound weights and scores, exports
that match the weights, a card that loads the repo being pushed, a version tag; and the regression gate's
comparison with the previous tag.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path

from finsent.core.errors import FinsentError, UsageError
from finsent.core.models import safetensors_header as read_header
from finsent.core.outputs import release_files
from finsent.core.recipes import load_recipe
from finsent.evaluation.metrics import metric_problems
from finsent.evaluation.runs import EVAL_NAME
from finsent.export.stage import ExportStageError
from finsent.export.stage import check_exports as check

logger = logging.getLogger(__name__)

REQUIRED_FILES = ("config.json", "model.safetensors", "README.md")
TAG = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
DEFAULT_MAX_REGRESSION = 0.01
USAGE_LINE = re.compile(r'^model_id = "(?P<id>[^"]*)"$', re.M)  # the card's usage code (MODEL_CARD.md)


class PublishError(FinsentError, RuntimeError):
    """A release that must not (or cannot) be pushed; the message says why and what to do."""


class RepoIdError(PublishError, UsageError):
    """A Hub repo id that the Hub would refuse."""


def check_repo_id(value, flag: str = "--repo-id") -> str:
    """``value`` if it is a Hub repo id of the form owner/name that the Hub accepts, else RepoIdError.

    The Hub's own rules (``huggingface_hub.utils.validate_repo_id``: letters, digits, '-', '_', '.', no '--' or
    '..', at most 96 characters), checked before any other work, so a bad id never reaches the network.
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(value, str) or value.count("/") != 1 or not all(value.split("/")):
        raise RepoIdError(f"{flag} {value!r} is not a Hub repo id: write it as owner/name")
    try:
        validate_repo_id(value)
    except HFValidationError:
        raise RepoIdError(f"{flag} {value!r} is not a Hub repo id the Hub accepts: owner and name use letters, "
                          "digits, '-', '_' and '.', without '--' or '..', not starting or ending with '-' or '.', "
                          "at most 96 characters") from None
    return value


def safetensors_header(path: Path) -> dict:
    """The checked JSON header of a safetensors file (``models.safetensors_header``), else PublishError."""

    return read_header(path, PublishError)


def check_weights(release_dir: Path) -> list[str]:
    """Every published ``*.safetensors`` must have a readable header matching its size; returns their paths."""
    found = [p for p in release_files(release_dir) if p.suffix == ".safetensors"]
    for path in found:
        safetensors_header(path)
    return [p.relative_to(release_dir).as_posix() for p in found]


def headline_scores(results: dict[str, dict]) -> dict[str, float]:
    """``{"tfns-3-score": weighted_f1, ...}`` from eval result JSONs keyed by file name; a missing weighted_f1, or
    any metric of a result that is not finite (NaN, inf) or a score out of [0, 1], is an error naming the file and
    the metric, never a value the gate or the card could show."""

    out = {}
    for name, result in results.items():
        try:
            value = result["metrics"]["weighted_f1"]
        except (KeyError, TypeError):
            raise PublishError(f"eval/{name}: no metrics.weighted_f1 in the result") from None
        for key, bad, problem in metric_problems(result["metrics"], "metrics"):
            raise PublishError(f"eval/{name}: {key} is {bad!r}, {problem}: run `finsent eval` again")
        out[name.removesuffix(".json")] = float(value)
    return out


def read_eval_results(release_dir: Path) -> dict[str, dict]:
    """The eval results JSONs of a release folder; none at all is an error (the gate needs them)."""
    eval_dir = release_dir / "eval"
    found = {p.name: p for p in sorted(eval_dir.glob("*.json")) if EVAL_NAME.match(p.name)} if eval_dir.is_dir() else {}
    if not found:
        raise PublishError(f"{release_dir}: no eval results (eval/<benchmark>-<scheme>-<mode>.json); "
                           "run `finsent eval` before publishing")
    results = {}
    for name, path in found.items():
        try:
            results[name] = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PublishError(f"{path}: not valid JSON ({exc})") from None
    return results


def check_publishable(release_dir: Path) -> dict[str, float]:
    """Refuse a folder that lacks what a release must hold, or whose weights or scores are broken; return
    its headline scores."""
    if not release_dir.is_dir():
        raise PublishError(f"release folder {release_dir} does not exist")
    missing = [f for f in REQUIRED_FILES if not (release_dir / f).is_file()]
    if missing:
        raise PublishError(f"{release_dir} is not a complete release: missing {', '.join(missing)}")
    check_weights(release_dir)
    check_exports(release_dir)
    return headline_scores(read_eval_results(release_dir))


def check_exports(release_dir: Path) -> None:
    """The GGUF / ONNX exports the stored recipe asks for are there, listed and made from these very weights
    (``export.stage.check_exports``): they are then published in the release's one commit like any file."""

    path = release_dir / "reports" / "recipe.yaml"
    recipe = None
    if path.is_file():
        recipe = load_recipe(path)
    try:
        check(release_dir, recipe)
    except ExportStageError as exc:
        raise PublishError(str(exc)) from None


def check_card(release_dir: Path, repo_id: str) -> None:
    """A card rendered by ``finsent card`` must load ``repo_id`` in its usage code (not a local folder or
    another repo); a README without that code (written by hand) is only warned about."""
    text = (release_dir / "README.md").read_text(encoding="utf-8", errors="replace")
    named = {m["id"] for m in USAGE_LINE.finditer(text)}
    if not named:
        logger.warning("README.md has no usage code naming %s (not a card rendered by `finsent card`)", repo_id)
    elif named != {repo_id}:
        raise PublishError(f"README.md's usage code loads {', '.join(sorted(named))}, not {repo_id}: render the "
                           f"card for this repo first: `finsent card {release_dir} --repo-id {repo_id}`")


def release_threshold(release_dir: Path) -> float:
    """``publish.max_regression`` of the recipe stored with the release (reports/recipe.yaml)."""
    path = release_dir / "reports" / "recipe.yaml"
    if not path.is_file():
        return DEFAULT_MAX_REGRESSION

    return load_recipe(path).publish.max_regression


def compare_scores(new: dict[str, float], old: dict[str, float], max_regression: float) -> list[str]:
    """The regressions: results present in both whose weighted F1 fell by more than ``max_regression``.
    A new score that is not finite is always a regression (``headline_scores`` refuses one before)."""
    out = []
    for key in sorted(set(new) & set(old)):
        if not math.isfinite(new[key]) or (math.isfinite(old[key]) and old[key] - new[key] > max_regression):
            out.append(f"{key}: weighted F1 {old[key]:.4f} -> {new[key]:.4f} ({new[key] - old[key]:+.4f})")
    return out


def tag_key(tag: str) -> tuple[int, int, int]:
    m = TAG.match(tag)
    if not m:
        raise PublishError(f"tag {tag!r} is not a release version like v1.2.3")
    return tuple(int(x) for x in m.groups())
