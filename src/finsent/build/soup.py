"""Model soups (``finetune.seeds`` with ``finetune.soup``): several full fine-tunings of one base, averaged.

Models fine-tuned from the same start and differing only in their seed (here: the order of the training rows) tend
to lie in one basin of the loss, and the mean of their weights often scores above each of them at no cost at
inference (Wortsman et al. 2022, "Model soups", arXiv:2203.05482). ``run_soup`` trains one member per seed with
``run_finetune`` (passed in, since ``finsent.build.finetune`` imports this module), each a complete output folder
``seeds/seed-<s>/`` beside OUT (its training.json and dev score, dev_split.json, checkpoints), then writes OUT, the
folder the merge stage reads, as their weight average:

- ``uniform``: the mean of every member;
- ``greedy``: the members in order of dev accuracy (best first; a tie keeps the order of ``seeds``), each added when
  the soup with it scores at least the soup without it on the dev rows (a tie keeps it). The best member alone is
  scored by its own training.json. Its members are chosen on the dev rows, so its dev score leans high, as any
  choice made on them: TFNS validation, scored once, compares it fairly.

Every member holds out the same dev rows (``FinetuneSection.split_seed``: ``dev_seed``, else the first seed), so
their scores compare. Only whole models are averaged (``method: full``, checked by the recipe): the mean of LoRA's
A and B matrices is not the mean of the updates B x A.

Weights: each safetensors file is averaged tensor by tensor, summed in float64 and cast back to the file's dtype, so
the soup is the correctly rounded mean whatever K (two float32 members: exactly (a + b) / 2). OUT holds the
averaged weights, the first chosen member's config, tokenizer and dev_split.json, and a training.json whose
``soup`` lists each member (seed, dev score, seconds, peak memory, reused or trained), the greedy trials, the
chosen seeds and the soup's dev score; its ``dev`` is the soup's.

Reuse: a finished member holds ``member.json``, a fingerprint of what decides its weights (its settings and seed,
``max_steps``, the base's weights, config and tokenizer, the data files, the teachers, the finsent code, the library
versions). A run that finds a member with the same fingerprint uses it instead of training it again: one more seed
trains only the new member, and uniform -> greedy trains nothing. ``resume`` continues a member killed mid-training
from its checkpoints. Delete ``seeds/`` to train every member again.

One process: the members train one after another (under torchrun, train each seed as its own run).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from finsent.build.data import training_data
from finsent.build.devsplit import score_model
from finsent.build.distributed import launch_world
from finsent.core.errors import UsageError
from finsent.core.outputs import MARKER, check_output_dir, is_toolkit_output, output_dir, write_text_atomic
from finsent.core.paths import PACKAGE_DIR
from finsent.core.provenance import file_sha256, library_versions, source_hash
from finsent.core.recipes import FinetuneSection, Recipe
from finsent.core.reports import read_report, write_report

logger = logging.getLogger(__name__)

MEMBER_FILE = "member.json"  # a finished member's seed and fingerprint, beside its training.json
# The files of a model folder that decide what training from it (or distilling from it) does.
MODEL_FILES = ("*.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# A member's files that describe its own run rather than the soup's weights: not copied into the soup.
OWN_FILES = {"training.json", "loss.png", "merge.json", MEMBER_FILE, MARKER}


class SoupError(UsageError, ValueError):
    """A soup that cannot be built (under torchrun, members that differ in shape, no weights to average)."""


@dataclass
class Member:
    seed: int
    folder: Path
    report: dict  # its training.json
    reused: bool  # found finished with the same fingerprint, not trained by this run

    @property
    def accuracy(self) -> float | None:
        return (self.report.get("dev") or {}).get("accuracy")


def seeds_dir(out_dir: Path) -> Path:
    """Where the members of the soup written to ``out_dir`` live: ``seeds/`` beside it (runs/<name>/seeds/)."""
    return Path(out_dir).parent / "seeds"


def member_recipe(recipe: Recipe, seed: int) -> Recipe:
    """The recipe of the member of ``seed``: one run of that seed, on the soup's dev split."""
    f = recipe.finetune
    section = dataclasses.replace(f, seed=seed, seeds=None, soup=None, dev_seed=f.split_seed)
    return dataclasses.replace(recipe, finetune=section)


def soup_inputs(f: FinetuneSection, base) -> dict:
    """What every member reads, by content (computed once a run: the base's weights are hashed, hundreds of MB)."""
    return {"base": _model_digest(base), "data": [file_sha256(src.path) or src.path for src in f.data],
            "teachers": [_model_digest(t) for t in f.teachers], "code": source_hash(PACKAGE_DIR),
            "versions": library_versions(("torch", "transformers", "peft"))}


def member_fingerprint(f: FinetuneSection, max_steps: int | None, inputs: dict) -> str:
    """16 hex digits of what decides a member's weights: its own section (``member_recipe``), ``max_steps`` and the
    ``soup_inputs``."""
    parts = {"finetune": dataclasses.asdict(f), "max_steps": max_steps, **inputs}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_digest(model) -> str:
    """A local model folder's weights, config and tokenizer by content; a Hub id by name."""
    folder = Path(str(model))
    if not folder.is_dir():
        return str(model)
    h = hashlib.sha256()
    for path in sorted({p for pattern in MODEL_FILES for p in folder.glob(pattern) if p.is_file()}):
        h.update(path.name.encode() + b"\0" + file_sha256(path).encode())
    return h.hexdigest()


def _finished(folder: Path, fingerprint: str) -> bool:
    """Whether ``folder`` is a finished member with this fingerprint (anything unreadable: no)."""
    try:
        stamp = json.loads((folder / MEMBER_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(stamp, dict) and stamp.get("fingerprint") == fingerprint and is_toolkit_output(folder)
            and (folder / "training.json").is_file())


def run_soup(recipe: Recipe, base_dir: Path, out_dir: Path, train, *, resume: bool = False,
             max_steps: int | None = None, callbacks: list | None = None, overwrite: bool = False) -> Path:
    """Train (or reuse) one member per ``finetune.seeds`` with ``train`` (``run_finetune``), average them as
    ``finetune.soup`` says into ``out_dir``; returns ``out_dir``. ``callbacks`` go to every member's run."""
    f = recipe.finetune
    _, world = launch_world()
    if world > 1:
        raise SoupError(f"finetune.seeds trains its {len(f.seeds)} members one after another in one process: run "
                        "finsent finetune without torchrun/accelerate launch, or train each seed as its own run "
                        "(--set finetune.seed=S)")
    if Path(out_dir).name == "seeds":
        raise SoupError(f"{out_dir}: a soup's members go to seeds/ beside its output folder, so inside this one: "
                        "name the output folder otherwise (e.g. adapter)")
    folders = {seed: seeds_dir(out_dir) / f"seed-{seed}" for seed in f.seeds}
    # Checked before any member trains: OUT may not be, or hold, the base or a member.
    out_dir = check_output_dir(out_dir, kind="finetune", overwrite=overwrite, reads=[base_dir, *folders.values()])
    members, inputs = [], soup_inputs(f, base_dir)
    for seed, folder in folders.items():
        member = member_recipe(recipe, seed)
        fingerprint = member_fingerprint(member.finetune, max_steps, inputs)
        reused = _finished(folder, fingerprint)
        if reused:
            logger.info("soup member seed %d: reusing %s (same settings, base, data and code)", seed, folder)
        else:
            logger.info("soup member seed %d (%d of %d): training into %s", seed, len(members) + 1, len(folders),
                        folder)
            train(member, base_dir, folder, resume=resume, max_steps=max_steps, callbacks=callbacks,
                  overwrite=overwrite)
            write_text_atomic(folder / MEMBER_FILE, json.dumps({"seed": seed, "fingerprint": fingerprint}) + "\n")
        members.append(Member(seed, folder, read_report("training", folder / "training.json"), reused))

    start = time.perf_counter()
    scorer = _Scorer(member_recipe(recipe, f.seeds[0]).finetune, members[0].folder)
    chosen, trials, weights, dev = (greedy(members, scorer) if f.soup == "greedy" else uniform(members, scorer))
    report = soup_report(f.soup, members, chosen, trials, dev, time.perf_counter() - start)
    with output_dir(out_dir, kind="finetune", overwrite=overwrite, reads=[base_dir, *folders.values()]) as tmp:
        write_weights(weights, chosen[0].folder, tmp)
        write_report("training", report, tmp / "training.json")
    logger.info("%s soup of seeds %s (of %s) saved to %s: dev accuracy %s (members: %s)", f.soup,
                [m.seed for m in chosen], list(f.seeds), out_dir, dev and dev["accuracy"],
                ", ".join(f"{m.seed}: {m.accuracy}" for m in members))
    return out_dir


def uniform(members: list[Member], scorer) -> tuple[list[Member], list, dict, dict | None]:
    """(chosen, trials, weights, dev) of the mean of every member; one member's soup is scored by its own report."""
    weights = average_weights([m.folder for m in members])
    dev = members[0].report.get("dev") if len(members) == 1 else scorer(weights)
    return members, [], weights, dev


def greedy(members: list[Member], scorer) -> tuple[list[Member], list, dict, dict | None]:
    """(chosen, trials, weights, dev) of the greedy soup: best member first, then each in order of dev accuracy,
    kept when the soup's dev accuracy with it is at least the soup's without it (``trials`` records each try)."""
    unscored = [m.seed for m in members if m.accuracy is None]
    if unscored:
        raise SoupError(f"finetune.soup greedy picks members by their dev accuracy, but seeds {unscored} have none "
                        "(an empty dev split? raise finetune.dev_fraction)")
    order = sorted(members, key=lambda m: -m.accuracy)  # stable: equal accuracies keep the order of seeds
    chosen, dev, weights, trials = [order[0]], order[0].report["dev"], None, []
    for member in order[1:]:
        candidate = average_weights([m.folder for m in chosen + [member]])
        score = scorer(candidate)
        kept = score["accuracy"] >= dev["accuracy"]
        trials.append({"seeds": [m.seed for m in chosen + [member]], "dev_accuracy": score["accuracy"], "kept": kept})
        logger.info("greedy soup: seeds %s score %.4f on the dev rows (soup so far %.4f): %s", trials[-1]["seeds"],
                    score["accuracy"], dev["accuracy"], "kept" if kept else "left out")
        if kept:
            chosen, dev, weights = chosen + [member], score, candidate
    return chosen, trials, weights or average_weights([order[0].folder]), dev


def average_weights(folders: list[Path]) -> dict[str, dict]:
    """``{file name: {tensor name: mean}}`` over the members' safetensors files (the same names and shapes in each).

    Each mean is summed in float64 and cast to the file's dtype: the correctly rounded mean of K float32 values.
    Tensors that are not floating point (none in a Llama) must be equal in every member.
    """
    import torch
    from safetensors import safe_open

    first = Path(folders[0])
    names = sorted(p.name for p in first.glob("*.safetensors"))
    if not names:
        raise SoupError(f"soup member {first} holds no .safetensors weights to average")
    averaged: dict[str, dict] = {}
    for name in names:
        handles = [safe_open(str(Path(folder) / name), framework="pt") for folder in folders]
        keys = set(handles[0].keys())
        for folder, handle in zip(folders, handles):
            if set(handle.keys()) != keys:
                raise SoupError(f"soup member {folder}/{name} holds other tensors than {first}/{name}")
        tensors = {}
        for key in sorted(keys):
            parts = [handle.get_tensor(key) for handle in handles]
            if any(p.shape != parts[0].shape for p in parts):
                raise SoupError(f"soup members differ in the shape of {key}: {[tuple(p.shape) for p in parts]}")
            if not parts[0].is_floating_point():
                if any(not torch.equal(p, parts[0]) for p in parts):
                    raise SoupError(f"soup members differ in {key}, which is not a weight to average")
                tensors[key] = parts[0]
                continue
            total = torch.zeros(parts[0].shape, dtype=torch.float64)
            for p in parts:
                total += p.double()
            tensors[key] = (total / len(parts)).to(parts[0].dtype)
        averaged[name] = tensors
    return averaged


def write_weights(weights: dict[str, dict], template: Path, folder: Path) -> None:
    """Save ``weights`` (``average_weights``) into ``folder`` with ``template``'s other files (config, tokenizer,
    dev_split.json), each safetensors file keeping the template's metadata (transformers reads its format)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for name, tensors in weights.items():
        with safe_open(str(template / name), framework="pt") as handle:
            metadata = handle.metadata()
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / name), metadata=metadata)
    for path in template.iterdir():
        if path.is_file() and path.suffix != ".safetensors" and path.name not in OWN_FILES:
            shutil.copy2(path, folder / path.name)


class _Scorer:
    """Scores soups on the dev rows: one float32 model, loaded once, whose weights each soup replaces."""

    def __init__(self, f: FinetuneSection, template: Path):
        self.f, self.template, self.model, self.dev = f, template, None, None

    def __call__(self, weights: dict[str, dict]) -> dict | None:
        """The dev score of ``weights`` (``average_weights``); None without dev rows."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not self.f.dev_fraction:
            return None
        if self.dev is None:
            self.dev = training_data(self.f).dev  # the members' own dev rows (one split_seed)
        if not self.dev:
            return None
        if self.model is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            self.model = AutoModelForCausalLM.from_pretrained(self.template, dtype=torch.float32).to(device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(self.template)
        state = {key: tensor for tensors in weights.values() for key, tensor in tensors.items()}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        # Tied weights (SmolLM2's LM head is its embedding matrix) are saved once: loading the one loads both.
        current = self.model.state_dict()
        untied = [k for k in missing if not any(current[k].data_ptr() == current[j].data_ptr() for j in state)]
        if unexpected or untied:
            raise SoupError(f"the soup's weights do not fit {self.template}'s model: unexpected {unexpected[:3]}, "
                            f"missing {untied[:3]}")
        return score_model(self.model, self.tokenizer, self.dev)


def soup_report(method: str, members: list[Member], chosen: list[Member], trials: list, dev: dict | None,
                seconds: float) -> dict:
    """training.json of the soup: the settings every member shares (the first chosen one's report), the members'
    cost summed (seconds) or at its largest (peak memory), the soup's dev score, and ``soup`` (each member, the
    greedy trials, the chosen seeds)."""
    losses = [m.report["train_loss"] for m in members]
    speeds = [m.report["tokens_per_second"] for m in members if m.report.get("tokens_per_second")]
    memory = [m.report["peak_memory_mb"] for m in members if m.report.get("peak_memory_mb") is not None]
    return {
        **chosen[0].report,
        "seed": None,  # one per member: soup.members
        "train_loss": round(sum(losses) / len(losses), 5),  # the members' mean: no training of its own
        "tokens_per_second": round(sum(speeds) / len(speeds), 1) if speeds else None,
        # what the soup cost: every member's training (reused ones' too) and the averaging and scoring here
        "seconds": round(sum(m.report["seconds"] for m in members) + seconds, 1),
        "peak_memory_mb": max(memory) if memory else None,  # a member's training holds far more than averaging
        "resumed_from_step": None,
        "dev": dev,
        "dev_curve": [],  # each member's is in its own training.json
        "log": [],
        "weight_average": None,
        "soup": {
            "method": method,
            "members": [{"seed": m.seed, "folder": str(m.folder), "reused": m.reused, "dev": m.report.get("dev"),
                         "train_loss": m.report["train_loss"], "steps": m.report["steps"],
                         "seconds": m.report["seconds"], "peak_memory_mb": m.report.get("peak_memory_mb")}
                        for m in members],
            "trials": trials,
            "chosen": [m.seed for m in chosen],
            "dev_accuracy": dev["accuracy"] if dev else None,
            "seconds": round(seconds, 1),
        },
    }
