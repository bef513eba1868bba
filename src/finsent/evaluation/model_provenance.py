"""Where an evaluated model came from: the commit that built it, its recipe, its size, and how it was chosen.

``model_provenance(model)`` is what every ``finsent eval`` result records as ``provenance`` (schema:
``finsent.core.reports.PROVENANCE``). A release folder of ``finsent release`` (one with ``reports/recipe.yaml``)
answers from its own reports, written when it was built, so a result names the build that made the weights, not
the checkout that happened to score them:

    reports/build.json     git_commit, code_sha256, model_params    (the release's merge stage)
    reports/recipe.yaml    the recipe: its description, and the dev split it holds out
    reports/training.json  dev: the dev split's score, what the recipe was chosen by; rows_dev per source

    {"source": "releases/smollm2-135m/reports", "git_commit": "6460a23...", "code_sha256": "9f1c...",
     "recipe": {"name": "smollm2-135m", ...}, "model_params": 102364992,
     "chosen_by": {"description": "...", "metric": "dev accuracy", "dev": {"n": 1451, "accuracy": 0.8918, ...},
                   "dev_split": {"fraction": 0.1, "seed": 42, "rows": {"data/x.jsonl": 133}, "definition": "..."}},
     "files": {"reports/build.json": "<sha256>", "reports/recipe.yaml": "<sha256>", ...}, "note": null}

Any other model (the embedded SmolLM2, a Hub id, a folder finsent did not build) gets null fields and a ``note``
saying why; a local folder's ``model_params`` is still counted from its weights, a fact of the weights rather
than of a build. Results scored before this was recorded can be given the same fields afterwards from the run
that built their weights (``build/bench/eval_provenance.py``), with ``source`` naming that file.
"""

from __future__ import annotations

from pathlib import Path

from finsent.core.errors import RecipeError
from finsent.core.models import EMBEDDED_NAME, locate_model, resolve_model, weights_params
from finsent.core.provenance import file_sha256
from finsent.core.recipes import parse_yaml
from finsent.core.reports import ReportError, read_report

RECIPE_FILE = "reports/recipe.yaml"  # its presence marks a folder as a finsent release (Release._write_reports)
BUILD_FILE = "reports/build.json"
TRAINING_FILE = "reports/training.json"
REPORT_FILES = (BUILD_FILE, RECIPE_FILE, TRAINING_FILE, "reports/pruning.json")  # hashed into ``files``
DEV_METRIC = "dev accuracy"  # what recipes are chosen by: finsent.build.devsplit.score_dev's accuracy


def model_provenance(model) -> dict:
    """The ``provenance`` of a result of ``model`` (a folder, a Hub id or the embedded name), as the module says."""
    if resolve_model(model) == EMBEDDED_NAME:
        folder = locate_model(model)
        return unknown("the embedded SmolLM2-135M-Instruct as Hugging Face published it: not built by finsent",
                       weights_params(folder))
    source = locate_model(model)
    folder = Path(source)
    if not folder.is_dir():
        return unknown(f"a Hub model ({source}): its build is not read from the Hub; a release pushed by finsent "
                       "carries it in its repository's reports/", None)
    if not (folder / RECIPE_FILE).is_file():
        return unknown(f"{folder} has no {RECIPE_FILE}: not a release folder of `finsent release`, so no build "
                       "is recorded with it", weights_params(folder))
    return release_provenance(folder)


def unknown(note: str, model_params: int | None) -> dict:
    """The provenance of a model finsent did not build: every field null but the counted size, and why."""
    return {"source": None, "git_commit": None, "recipe": None, "model_params": model_params, "chosen_by": None,
            "note": note}


def release_provenance(folder: Path) -> dict:
    """Read from a release folder's reports. A report that older code did not write, or one that no longer reads,
    leaves its fields null and says so in ``note``: the scores are still written (a release built before
    ``reports/build.json`` has no commit; its params are then counted from its weights)."""
    folder = Path(folder)
    notes: list[str] = []
    recipe = _recipe(folder / RECIPE_FILE, notes)
    build = _report("build", folder / BUILD_FILE, notes)
    training = _report("training", folder / TRAINING_FILE, notes)
    if not (folder / BUILD_FILE).is_file():
        notes.append(f"{BUILD_FILE} is missing: the release was built before finsent recorded the commit that "
                     "built it (model_params counted from its weights)")
    elif build is not None and build["git_commit"] is None:
        notes.append("built from an installed finsent, not a git checkout: code_sha256 names the code")
    rows = {src["path"]: src["rows_dev"] for src in training["data"] if "rows_dev" in src} if training else {}
    chosen = chosen_by(recipe or {}, training.get("dev") if training else None, rows or None)
    if recipe is not None and chosen["dev_split"] is None:
        notes.append("the recipe holds out no dev split (finetune.dev_fraction 0): no dev score chose it")
    elif chosen["dev_split"] is not None and chosen["dev"] is None:
        notes.append(f"no dev score recorded ({TRAINING_FILE} is missing or its dev is null)")
    return {
        "source": str(folder / "reports"),
        "git_commit": build["git_commit"] if build else None,
        "code_sha256": build["code_sha256"] if build else None,
        "recipe": recipe,
        "model_params": build["model_params"] if build else weights_params(folder),
        "chosen_by": chosen,
        "files": {name: file_sha256(folder / name) for name in REPORT_FILES if (folder / name).is_file()},
        "note": "; ".join(notes) or None,
    }


def _recipe(path: Path, notes: list[str]) -> dict | None:
    """The stored recipe as a dict, or None with the reason in ``notes``."""
    try:
        recipe = parse_yaml(path.read_text(encoding="utf-8"), str(path))
    except (RecipeError, UnicodeDecodeError) as exc:
        notes.append(f"{RECIPE_FILE} left out: {exc}")
        return None
    if not isinstance(recipe, dict):
        notes.append(f"{RECIPE_FILE} left out: a recipe is a YAML mapping, not {type(recipe).__name__}")
        return None
    return recipe


def _report(kind: str, path: Path, notes: list[str]) -> dict | None:
    """A release report, checked against its schema; None when it is absent, or (with why, in ``notes``) when it
    does not read: provenance never stops an evaluation."""
    if not path.is_file():
        return None
    try:
        return read_report(kind, path)
    except ReportError as exc:
        notes.append(f"left out: {exc}")
        return None


def chosen_by(recipe: dict, dev: dict | None, rows: dict | None = None, definition: str | None = None) -> dict:
    """How a recipe was chosen: its own ``description``, the dev split's score ``dev`` (null when nothing scored
    it) and the split it names (``finetune.dev_fraction`` of each source, seeded by ``dev_seed`` else ``seed``;
    null for a fraction of 0). ``rows``: dev rows per source; ``definition``: the split's wording where a run
    recorded its own (else the toolkit's)."""
    f = recipe.get("finetune") or {}
    fraction = f.get("dev_fraction") or 0
    seed = f.get("seed") if f.get("dev_seed") is None else f.get("dev_seed")
    split = None
    if fraction:
        split = {"fraction": fraction, "seed": seed, "rows": rows,
                 "definition": definition or (
                     f"dev: {fraction} of each training source held out of training, stratified by label (rows "
                     f"with the same text on one side), seed {seed}; row ids in the adapter's dev_split.json "
                     "(finsent.build.devsplit)")}
    return {"description": recipe.get("description") or None, "metric": DEV_METRIC if dev else None, "dev": dev,
            "dev_split": split}

