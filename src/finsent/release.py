"""``finsent release RECIPE``: prune -> fine-tune -> merge -> eval -> export -> card -> push -> Space, as one command.

Each stage writes into a fixed place (``runs/<name>/`` for intermediate outputs, ``releases/<name>/``
for what is published) and leaves a stamp holding a fingerprint of everything that decides its
output: its recipe section, its input files, the fingerprint of the stage before it, the code (a
hash of the finsent package's ``.py`` files) and the versions of finsent, torch, transformers and
peft. A stage whose output exists and whose stamp matches is skipped, so re-running after a crash
or after editing only the card picks up where it matters, and a release built by older code is
rebuilt. A stage's stamp is removed before it runs, so a crash mid-stage never leaves a stale one.
``--force`` re-runs everything, ``--from STAGE`` re-runs from a stage on, ``--only STAGE`` runs one
stage (its inputs are checked before anything is touched).

Every folder is written through ``outputs.output_dir``: built in a temporary sibling and renamed
into place when complete (the merge stage builds the whole release folder, merged model and reports,
that way). A folder finsent did not write is refused unless ``--overwrite``. The recipe name must be
a plain folder name (no ``/``, no ``..``): it is checked before any folder is created.

The export stage writes the GGUF files and ONNX graph the recipe's ``export:`` section asks for into the
release folder, with their label agreement (``finsent.export.stage``); the card shows how to run them
and the push uploads them in the release's one commit.

Without ``--push`` the release ends with the finished folder and a dry run of the push.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import re
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from finsent.build.finetune import run_finetune
from finsent.build.merge import check_merge_inputs, merge_into
from finsent.build.pruning import calibration_texts, run_prune, vocab_rows
from finsent.core import __version__
from finsent.core.classify import FinSentClassifier
from finsent.core.errors import UsageError
from finsent.core.models import locate_model, weights_params
from finsent.core.outputs import OutputError, check_name, check_output_dir, output_dir, write_text_atomic
from finsent.core.paths import PACKAGE_DIR
from finsent.core.provenance import file_sha256, git_commit, library_versions, source_hash
from finsent.core.recipe_values import ACTIVATION_METHODS, canonical_method
from finsent.core.recipes import Recipe
from finsent.core.reports import write_report
from finsent.evaluation.runs import check_runs, evaluate_into, write_summary
from finsent.export.stage import MANIFEST, ExportStageError, exports_present, read_exports, run_exports
from finsent.hub.card import check_card_target, render_card
from finsent.hub.publish import push_release
from finsent.hub.space import deploy_space
from finsent.speed.bench import run_bench

logger = logging.getLogger(__name__)

STAGES = ("prune", "finetune", "merge", "eval", "export", "card", "push", "space")


FINGERPRINT_LIBRARIES = ("torch", "transformers", "peft")  # and finsent itself


class ReleaseError(UsageError, RuntimeError):
    """A release stage cannot run (missing input, bad arguments); the command exits with 2."""


def file_digest(path: Path) -> str:
    """sha256 of a file, or of every file below a folder: each file's name and ``file_sha256``, in name order."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0" + file_sha256(f).encode())
    return h.hexdigest()


def _fingerprint(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_hash() -> str:
    """sha256 of the finsent package's ``.py`` files (relative names and bytes): the code that builds a release."""
    return source_hash(PACKAGE_DIR)


def build_versions() -> dict[str, str | None]:
    """Versions of finsent and of the libraries whose behaviour decides the built model (None: not installed)."""
    return {"finsent": __version__, **library_versions(FINGERPRINT_LIBRARIES)}


def _built_by() -> dict:
    """The commit of the checkout (None for an installed package) and the hash of the package's code."""
    return {"git_commit": git_commit(), "code_sha256": code_hash()}


def _local_inputs(paths: list[str | None]) -> list[str]:
    """Content digests of the local files a stage reads (Hub ids are named, not hashed)."""
    return [file_digest(Path(p)) if p and Path(p).exists() else str(p) for p in paths]


class Release:
    """The folders, stamps and stages of one recipe's release."""

    def __init__(self, recipe: Recipe, runs_dir: Path = Path("runs"), releases_dir: Path = Path("releases"),
                 overwrite: bool = False):
        """Names and folders are checked here, before anything is created (a name such as '../..' is refused)."""
        name = check_name(recipe.name, "recipe name")
        for folder, what in ((runs_dir, "runs folder"), (releases_dir, "releases folder")):
            folder = Path(folder).expanduser()
            if folder.exists() and not folder.is_dir():
                raise OutputError(f"{what} {folder} is a file, not a folder (nothing was written)")
        self.recipe = recipe
        self.overwrite = overwrite
        self.run_dir = Path(runs_dir).expanduser() / name
        self.release_dir = Path(releases_dir).expanduser() / name
        # Never the current folder, one of its parents or the home folder (e.g. --releases-dir .. in releases/x).
        check_output_dir(self.run_dir, kind="run", overwrite=True)
        check_output_dir(self.release_dir, kind="release", overwrite=True)
        self.pruned_dir = self.run_dir / "pruned"
        self.adapter_dir = self.run_dir / "adapter"
        self.stamps = self.run_dir / "stamps"
        self.timings: dict[str, float] = {}
        # The code that runs, taken when ``run`` starts: a commit made during hours of training is not the code
        # that trained. None until then (a stage called alone takes it when it writes the reports).
        self.built_by: dict | None = None

    # --- fingerprints: what decides each stage's output ---------------------------------------

    def fingerprints(self) -> dict[str, str]:
        r = self.recipe
        # The code and library versions enter the first stage; every later stage chains on it.
        code = {"code": code_hash(), "versions": build_versions()}
        data = _local_inputs([src.path for src in r.finetune.data])
        # A local base (e.g. a teacher's release) by content, so rebuilding it re-runs this release; an
        # activation-scored prune and a trimmed vocabulary also read the training data (and its dev split).
        calibration = None
        if canonical_method(r.prune.method) in ACTIVATION_METHODS or r.prune.vocab_first is not None:
            f = r.finetune
            calibration = [data, f.seed, f.split_seed, f.dev_fraction, f.skip_bad_rows]
        fp = {"prune": _fingerprint(code, asdict(r.model), asdict(r.prune), _local_inputs([r.model.base]),
                                    calibration)}
        if r.finetune.enabled:
            # every local teacher (one, or each of an ensemble) by content, as the base
            fp["finetune"] = _fingerprint(fp["prune"], asdict(r.finetune), data, _local_inputs(r.finetune.teachers))
        # Without training the merge stage casts the pruned model: training settings do not decide it.
        fp["merge"] = _fingerprint(fp.get("finetune", fp["prune"]), asdict(r.merge))
        benches = _local_inputs([b.path for b in r.eval.benchmarks])
        fp["eval"] = _fingerprint(fp["merge"], asdict(r.eval), benches)
        # The exports are made from the merged weights; the agreement texts are read like the speed bench's.
        fp["export"] = _fingerprint(fp["merge"], asdict(r.export), _local_inputs([r.eval.texts_file()]))
        return fp

    def _exports_present(self) -> bool:
        return exports_present(self.release_dir)

    def _stamp(self, stage: str) -> Path:
        return self.stamps / f"{stage}.json"

    def up_to_date(self, stage: str, fingerprint: str, output: Path) -> bool:
        stamp = self._stamp(stage)
        if not (output.exists() and stamp.is_file()):
            return False
        try:
            return json.loads(stamp.read_text()).get("fingerprint") == fingerprint
        except (ValueError, AttributeError):  # an unreadable stamp proves nothing: run the stage again
            return False

    def mark_done(self, stage: str, fingerprint: str) -> None:
        write_text_atomic(self._stamp(stage), json.dumps({"fingerprint": fingerprint, "finished": time.time()}))

    def clear_stamp(self, stage: str) -> None:
        """Forget that ``stage`` is done: called before it runs, so a crash mid-stage leaves no stale stamp."""
        self._stamp(stage).unlink(missing_ok=True)

    # --- stages ------------------------------------------------------------------------------

    def base_model(self) -> str:
        return locate_model(self.recipe.model.base)

    def check_stage(self, stage: str) -> None:
        """Refuse ``stage`` if it cannot run (a missing input, an output folder it may not replace), before its
        stamp is cleared or anything is written."""
        if stage == "prune":
            if not self.recipe.prune.enabled:
                raise ReleaseError("pruning is disabled in the recipe")
            check_output_dir(self.pruned_dir, kind="pruned", overwrite=self.overwrite)
        elif stage == "finetune":
            check_output_dir(self.adapter_dir, kind="finetune", overwrite=self.overwrite, what="adapter folder")
        elif stage == "merge":
            check_output_dir(self.release_dir, kind="release", overwrite=self.overwrite, reads=self._merge_inputs())
        elif stage in ("eval", "export"):
            if not (self.release_dir / "config.json").is_file():
                raise ReleaseError(f"no merged model at {self.release_dir}: run the merge stage first")
            if stage == "eval":
                check_output_dir(self.release_dir / "eval", kind="eval", overwrite=self.overwrite,
                                 what="release eval folder")
        elif stage == "card":
            check_card_target(self.release_dir, overwrite=self.overwrite)

    def prune(self) -> Path:
        self.check_stage("prune")
        return run_prune(self.recipe.prune, self.base_model(), self.pruned_dir, revision=self.recipe.model.revision,
                         overwrite=self.overwrite, calibration=calibration_texts(self.recipe),
                         vocab=vocab_rows(self.recipe))

    def finetune(self) -> Path:
        self.check_stage("finetune")
        return run_finetune(self.recipe, self._finetune_base(), self.adapter_dir, overwrite=self.overwrite)

    def _finetune_base(self) -> Path | str:
        if not self.recipe.prune.enabled:
            return self.base_model()
        if not (self.pruned_dir / "config.json").is_file():
            raise ReleaseError(f"no pruned model at {self.pruned_dir}: run the prune stage first")
        return self.pruned_dir

    def merge(self) -> Path:
        """Build the whole release folder (merged model + reports) in a temporary sibling; inputs checked first.

        With ``finetune.enabled: false`` there is no adapter: the pruned model itself is cast and checked.
        """

        self.check_stage("merge")
        base, adapter = self._merge_inputs()
        # A release folder holds exactly one model's files: it is replaced whole (eval and card follow).
        with output_dir(self.release_dir, kind="release", overwrite=self.overwrite, reads=[base, adapter]) as tmp:
            merge_into(self.recipe, base, adapter, tmp)
            self._write_reports(tmp)
        return self.release_dir

    def _merge_inputs(self) -> list:
        """``[base, adapter]`` of the merge (adapter None without training), each checked to exist."""

        adapter = self.adapter_dir if self.recipe.finetune.enabled else None
        if adapter and not adapter.exists():  # check_merge_inputs says what is wrong with a folder that exists
            raise ReleaseError(f"no adapter at {adapter}: run the finetune stage first")
        base = Path(self._finetune_base())
        check_merge_inputs(self.recipe, base, adapter)
        return [base, adapter]

    def _write_reports(self, folder: Path) -> None:
        reports = Path(folder) / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        for src, name in ((self.pruned_dir / "pruning.json", "pruning.json"),
                          (self.adapter_dir / "training.json", "training.json")):
            if src.is_file():
                shutil.copy2(src, reports / name)
        recipe = {k: v for k, v in self.recipe.to_dict().items() if k != "source"}
        (reports / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        # The commit and code that built the weights, and their size counted from them: what every eval result
        # of this release reports as its provenance (finsent.evaluation.model_provenance).
        build = {**(self.built_by or _built_by()), "versions": build_versions(),
                 "model_params": weights_params(folder),
                 "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        write_report("build", build, reports / "build.json")

    def evaluate(self) -> Path:
        e = self.recipe.eval
        check_runs(e.benchmarks, e.modes)
        self.check_stage("eval")
        out = self.release_dir / "eval"
        with output_dir(out, kind="eval", overwrite=self.overwrite, what="release eval folder") as tmp:
            clf = FinSentClassifier.from_pretrained(str(self.release_dir), batch_size=e.batch_size)
            evaluate_into(tmp, self.release_dir, e.benchmarks, e.modes, batch_size=e.batch_size, classifier=clf)
            if e.speed:
                run_bench(self.release_dir, tmp, classifier=clf, n=e.speed_n, gen_n=min(e.speed_n, 16),
                          batch_sizes=tuple(e.speed_batch_sizes), texts_file=Path(self._speed_texts("eval")))
            write_summary(tmp)
        return out

    def _export_texts(self) -> str | None:
        """The file the export stage reads its agreement texts from (the speed bench's choice)."""

        x = self.recipe.export
        return self._speed_texts("export") if x.agreement_n and (x.gguf or x.onnx) else None

    def _speed_texts(self, stage: str) -> str:
        """The recipe's texts for the speed bench and the exports' agreement; a clear error when it names none
        (data outside the repository is never a default)."""

        texts = self.recipe.eval.texts_file()
        if texts is None:
            why = "eval.speed is on" if stage == "eval" else "an export's agreement check is on"
            raise ReleaseError(f"recipe {self.recipe.name!r}: {why} but no texts are named: set eval.speed_texts "
                               "to a csv/jsonl with a 'text' column (e.g. ../shared/data/tfns/sent_valid.csv) or "
                               "give an eval benchmark as a file")
        return texts

    def export(self) -> Path:
        """The recipe's GGUF / ONNX exports into the release folder, with reports/exports.json (export_release)."""

        self.check_stage("export")
        run_exports(self.recipe, self.release_dir, texts_file=self._export_texts(), overwrite=self.overwrite)
        return self.release_dir / MANIFEST

    def card(self, repo_id: str | None = None) -> Path:
        # The card's usage code loads the repo it will be pushed to; without one, the local folder.
        render_card(self.recipe, self.release_dir, repo_id=repo_id, overwrite=self.overwrite)
        return self.release_dir / "README.md"

    def push(self, *, dry_run: bool, repo_id: str | None, tag: str | None, **kwargs) -> dict:
        # A dry run needs no real target: name an obviously local one rather than guess a user's namespace,
        # and read a remote repo only when one was named (the placeholder has none to compare with).
        known = repo_id or self.recipe.publish.repo_id
        tag = tag or self.recipe.publish.tag or "v0.1.0"
        placeholder = "dry-run/" + (re.sub(r"[^A-Za-z0-9_.]+", "-", self.recipe.card.model_name).strip("-.") or "model")
        return push_release(self.release_dir, known or placeholder, tag,
                            dry_run=dry_run, read_remote=bool(known), **kwargs)

    def space(self, space_id: str, model_id: str, **kwargs):
        return deploy_space(space_id, model=model_id, **kwargs)

    # --- driver ------------------------------------------------------------------------------

    def run(self, *, force: bool = False, start: str | None = None, only: str | None = None,
            push: bool = False, repo_id: str | None = None, tag: str | None = None,
            space_id: str | None = None, push_kwargs: dict | None = None) -> dict:
        if push and not (repo_id or self.recipe.publish.repo_id):
            raise ReleaseError("--push needs --repo-id (or publish.repo_id in the recipe)")
        if space_id and not push:
            raise ReleaseError("--space-id deploys the Space on the pushed model: it needs --push")
        fps = self.fingerprints()
        self.built_by = _built_by()
        skip = {s for s in ("prune", "finetune") if not getattr(self.recipe, s).enabled}
        stages = [s for s in STAGES if s not in skip]
        if only:
            stages = [only]
        elif start:
            forced_from = STAGES.index(start)
        if "eval" in stages and self.recipe.eval.speed:
            self._speed_texts("eval")  # refused before the hours of training, not after them
        if "export" in stages:
            self._export_texts()
        outputs = {"prune": self.pruned_dir / "pruning.json", "finetune": self.adapter_dir / "training.json",
                   "merge": self.release_dir / "config.json", "eval": self.release_dir / "eval",
                   "export": self.release_dir / "reports" / "exports.json"}
        result: dict = {"release_dir": str(self.release_dir), "skipped": [], "ran": []}
        for i, stage in enumerate(stages, 1):
            if stage == "space" and not space_id:
                continue
            label = f"[{i}/{len(stages)}] {stage}"
            redo = force or only == stage or (start is not None and STAGES.index(stage) >= forced_from)
            if stage in fps and not redo and self.up_to_date(stage, fps[stage], outputs[stage]) \
                    and (stage != "export" or self._exports_present()):
                logger.info("%s: up to date, skipped", label)
                result["skipped"].append(stage)
                continue
            logger.info("%s ...", label)
            self.check_stage(stage)  # a refused stage leaves its stamp and outputs as they were
            if stage in fps:
                self.clear_stamp(stage)
            t0 = time.perf_counter()
            if stage == "card":
                self.card(repo_id)
            elif stage == "push":
                result["push"] = self.push(dry_run=not push, repo_id=repo_id, tag=tag, **(push_kwargs or {}))
            elif stage == "space":
                # The Space goes to the same Hub (endpoint, token) as the model it serves.
                hub = {k: v for k, v in (push_kwargs or {}).items() if k in ("token", "endpoint")}
                result["space"] = self.space(space_id, result["push"]["repo_id"], **hub).to_dict()
            else:
                getattr(self, "evaluate" if stage == "eval" else stage)()
            self.timings[stage] = time.perf_counter() - t0
            if stage in fps:
                self.mark_done(stage, fps[stage])
            result["ran"].append(stage)
            logger.info("%s done in %.1f s", label, self.timings[stage])
        result["seconds"] = self.timings
        result["summary"] = self.summary()
        return result

    def summary(self) -> dict:
        """Headline scores, size and speed read back from the release folder."""
        out: dict = {"release_dir": str(self.release_dir), "scores": [], "speed": None, "size": None}
        eval_dir = self.release_dir / "eval"
        for path in sorted(eval_dir.glob("[!.]*.json")) if eval_dir.is_dir() else []:  # not the output marker
            data = json.loads(path.read_text())
            if path.name == "speed.json":
                out["speed"] = data
                continue
            m = data.get("metrics", {})
            out["scores"].append({"run": path.stem, "n": data.get("n"), "accuracy": m.get("accuracy"),
                                  "macro_f1": m.get("macro_f1"), "weighted_f1": m.get("weighted_f1")})
        pruning = self.release_dir / "reports" / "pruning.json"
        weights = sorted(self.release_dir.glob("*.safetensors"))
        out["size"] = {
            "bytes_on_disk": sum(p.stat().st_size for p in weights) or None,
            "params": json.loads(pruning.read_text()).get("params_after") if pruning.is_file() else None,
        }

        try:
            manifest = read_exports(self.release_dir)
        except ExportStageError:
            manifest = None
        out["exports"] = manifest["files"] if manifest else []
        out["serve"] = f"finsent space serve --model {self.release_dir}"
        return out


