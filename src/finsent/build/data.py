"""Training data: read sources (Hub ids or local csv/jsonl/json/parquet), check every row, mix them by weight.

A source is a ``DataSource`` of the recipe (``finetune.data``). Its ``schema`` says which columns
hold the text and the label:

    fingpt   instruction / input / output   keeps the row's own instruction; scheme from the output label
    fpb      sentence / label               0 negative, 1 neutral, 2 positive (or the label names)
    tfns     text / label                   0 negative, 1 positive, 2 neutral (instruction says "tweet")
    fiqa     sentence / sentiment_score     score thresholds of FinGPT; "tweet" for posts, else "news" (fiqa_kind)
    nwgi     news / label                   7-class label names; scheme 3 maps them with ``to_coarse``
    finsent  text / label / coarse / kind   this project's headlines: scheme 7 trains on label, 3 on coarse

Local files are read by ``finsent.core.tables.read_table`` and every benchmark schema is mapped by
``schema_row``: the same reader and mapping ``finsent.evaluation.benchmarks`` uses, so a row trains exactly as it
is evaluated. Every label goes through ``finsent.core.labels``, every text through ``prompts.check_text``
and every prompt through ``finsent.core.prompts`` (see ``encode_example``), so the training text is
byte-for-byte what the classifier scores. A malformed
row stops loading with ``DataError`` naming the file, row and problem, unless ``skip_bad_rows`` is
set: then it is skipped and the count is logged.

Used by ``finsent finetune`` (``finsent.build.finetune``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from finsent.build.devsplit import carve
from finsent.core.labels import (
    ALL_LABELS,
    SCHEMES,
    LabelError,
)
from finsent.core.prompts import InputError, PromptEncoder, instruction
from finsent.core.recipes import DataSource
from finsent.core.rows import SCHEMAS, DataError, _text, schema_row
from finsent.core.tables import SUFFIXES, TableError, read_table

logger = logging.getLogger(__name__)

IGNORE = -100  # label id the loss skips (PyTorch's cross_entropy ignore_index)


class DataFileNotFoundError(DataError, FileNotFoundError):
    """A local data file that does not exist (and the path is not a Hub dataset id)."""


@dataclass(frozen=True)
class Example:
    """One training item: the prompt's instruction and text, and the answer label to learn."""

    instruction: str
    text: str
    answer: str
    scheme: str
    where: str  # "file: row N", for messages
    kind: str = "news"  # the prompt's kind (news | tweet): how the classifier prompts this row (dev scoring)


# --- reading raw rows ------------------------------------------------------------------------------


def resolve_path(path: str) -> Path | None:
    """A local file for ``path``, or None when it names a Hub dataset. (A recipe's relative paths are already
    anchored at its repository by ``recipes.load_recipe``.)"""
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate
    looks_local = candidate.suffix.lower() in SUFFIXES or path.startswith((".", "/", "~"))
    if looks_local or path.count("/") != 1:
        raise DataFileNotFoundError(f"data file {path} does not exist (and it is not a Hub dataset id owner/name)")
    return None


def read_rows(path: str, split: str = "train") -> Iterator[tuple[str, dict]]:
    """Yield (where, row) for every row of a local file or a Hub dataset split; ``where`` names file and row.

    Local files are read by ``finsent.core.tables.read_table`` (the reader of every table the toolkit reads);
    a row it cannot parse comes as a ``BadRow``, which ``schema_row`` turns into an error naming it.
    """
    local = resolve_path(path)
    if local is None:
        yield from _hub_rows(path, split)
        return
    try:
        yield from read_table(local)
    except TableError as exc:
        raise DataError(str(exc)) from None


def _hub_rows(dataset_id: str, split: str) -> Iterator[tuple[str, dict]]:
    import datasets

    try:
        table = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # offline, unknown id, unknown split: all end here with the reason
        raise DataError(
            f"could not load Hub dataset {dataset_id!r} split {split!r} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); offline, give a local csv/jsonl/parquet path"
        ) from exc
    for n, row in enumerate(table, 1):
        yield f"{dataset_id}[{split}]: row {n}", row


# --- one row -> one Example --------------------------------------------------------------------------


def _scheme_for(src: DataSource, allowed: tuple[str, ...], default: str) -> str:
    scheme = src.scheme or default
    if scheme not in allowed:
        raise DataError(f"{src.path}: schema {src.schema!r} has no {scheme}-class labels (use scheme {allowed[0]})")
    return scheme


SCHEMES_OF = {"fpb": ("3",), "tfns": ("3",), "fiqa": ("3",), "nwgi": ("7", "3"), "finsent": ("3", "7")}


def row_example(src: DataSource, row: dict, where: str) -> Example | None:
    """Convert one raw row; None means the row is filtered out on purpose (fingpt rows of another scheme)."""
    schema = src.schema
    if schema == "fingpt":
        instr = _text(row, "instruction")
        answer = _text(row, "output").lower()
        if answer not in ALL_LABELS:
            raise LabelError(f"unknown label {answer!r} in 'output'; expected one of {', '.join(ALL_LABELS)}")
        # 'neutral' is in both schemes: the instruction's list of choices decides.
        scheme = "7" if answer not in SCHEMES["3"] or "strong" in instr else "3"
        if src.scheme and src.scheme != scheme:
            return None
        kind = "tweet" if "tweet" in instr.lower() else "news"
        return Example(instr, _text(row, "input"), answer, scheme, where, kind)
    if schema not in SCHEMES_OF:
        raise DataError(f"{src.path}: unknown schema {schema!r}; choose one of {', '.join(SCHEMAS)}")
    scheme = _scheme_for(src, SCHEMES_OF[schema], SCHEMES_OF[schema][0])
    text, label, kind = schema_row(schema, row, scheme)
    kind = src.kind or kind
    return Example(instruction(scheme, kind), text, label, scheme, where, kind)


def load_source(src: DataSource, skip_bad_rows: bool = False) -> list[Example]:
    """All usable rows of one source (first ``limit`` of them), in file order; see the module docstring."""
    if src.schema not in SCHEMAS:
        raise DataError(f"{src.path}: unknown schema {src.schema!r}; choose one of {', '.join(SCHEMAS)}")
    if src.limit is not None and (isinstance(src.limit, bool) or not isinstance(src.limit, int) or src.limit < 1):
        raise DataError(f"{src.path}: limit must be an integer >= 1 or null (all rows), got {src.limit!r}")
    examples: list[Example] = []
    bad: list[str] = []
    for where, row in read_rows(src.path, src.split):
        try:
            example = row_example(src, row, where)
        except (InputError, LabelError) as exc:
            if not skip_bad_rows:
                raise DataError(f"{where}: {exc} (set finetune.skip_bad_rows to skip bad rows)") from None
            bad.append(f"{where}: {exc}")
            continue
        if example is not None:
            examples.append(example)
        if src.limit is not None and len(examples) >= src.limit:
            break
    if bad:
        logger.warning("%s: skipped %d bad row(s); first: %s", src.path, len(bad), bad[0])
    if not examples:
        raise DataError(f"{src.path}: no usable rows (schema {src.schema}, split {src.split})")
    logger.info("%s: %d rows (%s, %s-class)", src.path, len(examples), src.schema,
                "/".join(sorted({e.scheme for e in examples})))
    return examples


def weighted(examples: list[Example], weight: float, rng: random.Random) -> list[Example]:
    """Repeat or subsample to ``round(weight * n)`` rows: whole copies, then a random sample of the rest."""
    if weight <= 0:
        raise DataError(f"data weight must be > 0, got {weight}")
    target = round(weight * len(examples))
    copies, rest = divmod(target, len(examples))
    return examples * copies + rng.sample(examples, rest)


@dataclass
class LoadedData:
    examples: list[Example]
    stats: list[dict]  # per source: path, schema, scheme, weight, rows read, rows held out, rows used
    dev: dict[str, list[Example]] = field(default_factory=dict)  # source path -> its held-out dev rows


def load_mixture(sources: list[DataSource], *, seed: int = 42, skip_bad_rows: bool = False,
                 dev_fraction: float = 0.0, dev_seed: int | None = None) -> LoadedData:
    """Read every source, hold out its dev rows (``finsent.build.devsplit.carve``, seeded by ``dev_seed``, else
    ``seed``), apply weights to the rest, and shuffle the mix with ``seed`` (deterministic)."""

    if not sources:
        raise DataError("no training data: the recipe's finetune.data is empty")
    rng = random.Random(seed)
    mixed: list[Example] = []
    stats, dev = [], {}
    for src in sources:
        rows = load_source(src, skip_bad_rows=skip_bad_rows)
        train, held = carve(rows, dev_fraction, seed if dev_seed is None else dev_seed, src.path)
        if held:
            dev.setdefault(src.path, []).extend(held)
        used = weighted(train, src.weight, rng)
        mixed.extend(used)
        stats.append({"path": src.path, "schema": src.schema, "split": src.split,
                      "scheme": "/".join(sorted({e.scheme for e in rows})), "weight": src.weight,
                      "rows_read": len(rows), "rows_dev": len(held), "rows_used": len(used)})
    rng.shuffle(mixed)
    return LoadedData(mixed, stats, dev)


def training_data(f) -> LoadedData:
    """A recipe's ``finetune`` data (a ``FinetuneSection``) as training reads it: the same rows, dev split and
    order wherever it is read (training, an activation prune's calibration, the vocabulary, dev scoring)."""
    return load_mixture(f.data, seed=f.seed, skip_bad_rows=f.skip_bad_rows, dev_fraction=f.dev_fraction,
                        dev_seed=f.split_seed)


# --- Example -> token ids ---------------------------------------------------------------------------


def encode_example(encoder: PromptEncoder, example: Example, loss: str = "answer") -> dict:
    """Token ids and labels of one example, built from the classifier's own prompt pieces.

    ``input_ids`` = prefix + news + cue + answer (news cut first if too long). ``labels`` are the
    answer ids only (``loss="answer"``, the rest IGNORE) or every token (``loss="full"``, the
    original notebook's loss).
    """
    answer = list(encoder.answer_ids(example.answer))
    try:
        encoded = encoder.encode(example.instruction, example.text, reserve=len(answer))
    except InputError as exc:
        raise DataError(f"{example.where}: {exc}") from None
    prompt = encoded.ids
    ids = prompt + answer
    if loss == "answer":
        labels = [IGNORE] * len(prompt) + answer
    elif loss == "full":
        labels = list(ids)
    else:
        raise ValueError(f"loss must be 'answer' or 'full', got {loss!r}")
    return {"input_ids": ids, "labels": labels, "prefix_len": len(encoded.prefix)}


class EncodedDataset:
    """A list-backed map-style dataset of encoded examples (what the Trainer iterates)."""

    def __init__(self, encoder: PromptEncoder, examples: list[Example], loss: str = "answer"):
        self.items = [encode_example(encoder, ex, loss) for ex in examples]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    def lengths(self) -> list[int]:
        return [len(item["input_ids"]) for item in self.items]


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-pad a batch to its longest row: input_ids/attention_mask/labels [B, T] long (+ prefix_len [B])."""
    import torch

    width = max(len(it["input_ids"]) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    for i, it in enumerate(items):
        n = len(it["input_ids"])
        ids[i, :n] = torch.tensor(it["input_ids"])
        mask[i, :n] = 1
        labels[i, :n] = torch.tensor(it["labels"])
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if all("prefix_len" in it for it in items):  # the instruction's length: see trainer.shared_prefix_hidden
        batch["prefix_len"] = torch.tensor([it["prefix_len"] for it in items])
    return batch
