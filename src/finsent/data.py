"""Training data: read sources (Hub ids or local csv/jsonl/json/parquet), check every row, mix them by weight.

A source is a ``DataSource`` of the recipe (``finetune.data``). Its ``schema`` says which columns
hold the text and the label:

    fingpt   instruction / input / output   keeps the row's own instruction; scheme from the output label
    fpb      sentence / label               0 negative, 1 neutral, 2 positive (or the label names)
    tfns     text / label                   0 negative, 1 positive, 2 neutral (instruction says "tweet")
    fiqa     sentence / sentiment_score     score thresholds of FinGPT; "tweet" for posts, else "news" (fiqa_kind)
    nwgi     news / label                   7-class label names; scheme 3 maps them with ``to_coarse``
    finsent  text / label / coarse / kind   this project's headlines: scheme 7 trains on label, 3 on coarse

Local files are read by ``finsent.tables.read_table`` and every benchmark schema is mapped by
``schema_row``: the same reader and mapping ``finsent.benchmarks`` uses, so a row trains exactly as it
is evaluated. Every label goes through ``finsent.labels``, every text through ``prompts.check_text``
and every prompt through ``finsent.prompts`` (see ``encode_example``), so the training text is
byte-for-byte what the classifier scores. A malformed
row stops loading with ``DataError`` naming the file, row and problem, unless ``skip_bad_rows`` is
set: then it is skipped and the count is logged.

Used by ``finsent finetune`` (``finsent.finetune``).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .labels import (
    ALL_LABELS,
    SCHEMES,
    LabelError,
    fiqa_kind,
    fiqa_label,
    fpb_label,
    labels_of,
    nwgi_label,
    tfns_label,
    to_coarse,
)
from .prompts import KINDS, InputError, PromptEncoder, check_text, instruction
from .recipes import DataSource
from .tables import SUFFIXES, BadRow, TableError, read_table

logger = logging.getLogger(__name__)

SCHEMAS = ("fingpt", "fpb", "tfns", "fiqa", "nwgi", "finsent")
# The instruction word of a schema's rows when the row does not say (FiQA-SA's format, finsent's kind do).
SCHEMA_KIND = {"fingpt": "news", "fpb": "news", "tfns": "tweet", "fiqa": "news", "nwgi": "news", "finsent": "news"}
IGNORE = -100  # label id the loss skips (PyTorch's cross_entropy ignore_index)


class DataError(InputError):
    """A data source or row that cannot be used; the message names the file, the row and the problem."""


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

    Local files are read by ``finsent.tables.read_table`` (the reader of every table the toolkit reads);
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


# --- one row of a schema: the mapping training and evaluation share ----------------------------------


def _field(row: dict, name: str):
    if isinstance(row, BadRow):
        raise DataError(row.problem)
    if not isinstance(row, dict):
        raise DataError(f"expected an object with fields, got {type(row).__name__}")
    if name not in row or row[name] is None:
        raise DataError(f"missing field {name!r} (fields: {', '.join(map(str, row)) or 'none'})")
    return row[name]


def _text(row: dict, name: str) -> str:
    """A text field through the one input-text rule (``prompts.check_text``), errors naming the field."""
    try:
        return check_text(_field(row, name))
    except DataError:
        raise
    except InputError as exc:
        raise DataError(f"field {name!r}: {exc}") from None


def schema_row(schema: str, row: dict, scheme: str) -> tuple[str, str, str]:
    """``(text, gold label in scheme, kind)`` of one raw row of a benchmark schema (fpb, tfns, fiqa, nwgi, finsent).

    The one mapping of every schema, used by training (``row_example``) and evaluation
    (``finsent.benchmarks``), so a row means the same in both: the text goes through
    ``prompts.check_text``, the label through ``finsent.labels``, and the kind (the instruction's
    "news" or "tweet") is the row's own where the schema has one (FiQA-SA's ``format`` through
    ``labels.fiqa_kind``, finsent's ``kind``), else the schema's (``SCHEMA_KIND``). Raises
    ``InputError`` / ``LabelError`` naming the field and the problem (the caller adds file and row).
    """
    scheme = str(scheme)
    kind = None
    if schema == "fpb":
        text, label = _text(row, "sentence"), fpb_label(_field(row, "label"))
    elif schema == "tfns":
        text, label = _text(row, "text"), tfns_label(_field(row, "label"))
    elif schema == "fiqa":
        text, label = _text(row, "sentence"), fiqa_label(_field(row, "sentiment_score"))
        kind = fiqa_kind(row.get("format"))
    elif schema == "nwgi":
        text, fine = _text(row, "news"), nwgi_label(_field(row, "label"))
        label = fine if scheme == "7" else to_coarse(fine)
    elif schema == "finsent":
        # The project's own headlines carry both golds: "label" (7 classes) and "coarse" (3 classes).
        text = _text(row, "text")
        fine, coarse = _text(row, "label").lower(), _text(row, "coarse").lower()
        if fine not in SCHEMES["7"]:
            raise LabelError(f"unknown 7-class label {fine!r} in 'label'")
        if coarse != to_coarse(fine):
            raise LabelError(f"'coarse' is {coarse!r} but 'label' {fine!r} maps to {to_coarse(fine)!r}")
        label = fine if scheme == "7" else coarse
        kind = row.get("kind") or None
        if kind is not None and kind not in KINDS:
            raise DataError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")
    else:
        raise DataError(f"unknown schema {schema!r}; choose one of {', '.join(SCHEMAS)}")
    if label not in labels_of(scheme):
        raise LabelError(f"label {label!r} is not one of {', '.join(labels_of(scheme))}")
    return text, label, kind or SCHEMA_KIND[schema]


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
    """Read every source, hold out its dev rows (``finsent.devsplit.carve``, seeded by ``dev_seed``, else
    ``seed``), apply weights to the rest, and shuffle the mix with ``seed`` (deterministic)."""
    from .devsplit import carve

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
