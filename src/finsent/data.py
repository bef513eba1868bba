"""Training data: read sources (Hub ids or local csv/jsonl/parquet), check every row, mix them by weight.

A source is a ``DataSource`` of the recipe (``finetune.data``). Its ``schema`` says which columns
hold the text and the label:

    fingpt   instruction / input / output   keeps the row's own instruction; scheme from the output label
    fpb      sentence / label               0 negative, 1 neutral, 2 positive (or the label names)
    tfns     text / label                   0 negative, 1 positive, 2 neutral (instruction says "tweet")
    fiqa     sentence / sentiment_score     score thresholds of FinGPT; "tweet" for posts, "news" for headlines
    nwgi     news / label                   7-class label names; scheme 3 maps them with ``to_coarse``
    finsent  text / label / coarse / kind   this project's headlines: scheme 7 trains on label, 3 on coarse

Every label goes through ``finsent.labels`` and every prompt through ``finsent.prompts`` (see
``encode_example``), so the training text is byte-for-byte what the classifier scores. A malformed
row stops loading with ``DataError`` naming the file, row and problem, unless ``skip_bad_rows`` is
set: then it is skipped and the count is logged.

Used by ``finsent finetune`` (``finsent.finetune``).
"""

from __future__ import annotations

import csv
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .labels import ALL_LABELS, SCHEMES, LabelError, fiqa_label, fpb_label, nwgi_label, tfns_label, to_coarse
from .prompts import InputError, PromptEncoder, clean_text, instruction
from .recipes import DataSource

logger = logging.getLogger(__name__)

SCHEMAS = ("fingpt", "fpb", "tfns", "fiqa", "nwgi", "finsent")
LOCAL_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
IGNORE = -100  # label id the loss skips (PyTorch's cross_entropy ignore_index)


class DataError(InputError):
    """A data source or row that cannot be used; the message names the file, the row and the problem."""


@dataclass(frozen=True)
class Example:
    """One training item: the prompt's instruction and text, and the answer label to learn."""

    instruction: str
    text: str
    answer: str
    scheme: str
    where: str  # "file: row N", for messages


# --- reading raw rows ------------------------------------------------------------------------------


def resolve_path(path: str, root: Path | None = None) -> Path | None:
    """A local file for ``path`` (as given, else relative to ``root``), or None when it names a Hub dataset."""
    candidate = Path(path).expanduser()
    if candidate.exists():
        return candidate
    if root is not None and not candidate.is_absolute() and (root / candidate).exists():
        return root / candidate
    looks_local = candidate.suffix.lower() in LOCAL_SUFFIXES or path.startswith((".", "/", "~"))
    if looks_local or path.count("/") != 1:
        raise FileNotFoundError(f"data file {path} does not exist (and it is not a Hub dataset id owner/name)")
    return None


def read_rows(path: str, split: str = "train", root: Path | None = None) -> Iterator[tuple[str, dict]]:
    """Yield (where, row) for every row of a local file or a Hub dataset split; ``where`` names file and row."""
    local = resolve_path(path, root)
    if local is None:
        yield from _hub_rows(path, split)
        return
    fmt = LOCAL_SUFFIXES.get(local.suffix.lower())
    if fmt is None:
        raise DataError(f"{local}: unknown file type {local.suffix!r}; use one of {', '.join(LOCAL_SUFFIXES)}")
    if fmt == "csv":
        # newline="" lets the csv module handle CRLF and quoted fields that span several lines (TFNS).
        with open(local, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            for n, row in enumerate(reader, 1):
                yield f"{local}: row {n} (line {reader.line_num})", row
    elif fmt == "jsonl":
        with open(local, encoding="utf-8") as handle:
            for n, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield f"{local}: line {n}", _BadRow(f"invalid JSON ({exc.msg})")
                    continue
                yield f"{local}: line {n}", row if isinstance(row, dict) else _BadRow("not a JSON object")
    else:
        import pyarrow.parquet as pq

        for n, row in enumerate(pq.read_table(local).to_pylist(), 1):
            yield f"{local}: row {n}", row


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


class _BadRow(dict):
    """Placeholder for a row that could not even be parsed; converting it raises its problem."""

    def __init__(self, problem: str):
        super().__init__()
        self.problem = problem


# --- one row -> one Example --------------------------------------------------------------------------


def _field(row: dict, name: str):
    if isinstance(row, _BadRow):
        raise DataError(row.problem)
    if name not in row or row[name] is None:
        raise DataError(f"missing field {name!r} (fields: {', '.join(map(str, row)) or 'none'})")
    return row[name]


def _text(row: dict, name: str) -> str:
    value = _field(row, name)
    if not isinstance(value, str):
        raise DataError(f"field {name!r} must be text, got {value!r:.40}")
    try:
        return clean_text(value)
    except InputError:
        raise DataError(f"field {name!r} is empty") from None


def _scheme_for(src: DataSource, allowed: tuple[str, ...], default: str) -> str:
    scheme = src.scheme or default
    if scheme not in allowed:
        raise DataError(f"{src.path}: schema {src.schema!r} has no {scheme}-class labels (use scheme {allowed[0]})")
    return scheme


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
        return Example(instr, _text(row, "input"), answer, scheme, where)
    if schema in ("fpb", "tfns"):
        scheme = _scheme_for(src, ("3",), "3")
        text = _text(row, "sentence" if schema == "fpb" else "text")
        label = (fpb_label if schema == "fpb" else tfns_label)(_field(row, "label"))
        kind = src.kind or ("tweet" if schema == "tfns" else "news")
        return Example(instruction(scheme, kind), text, label, scheme, where)
    if schema == "fiqa":
        scheme = _scheme_for(src, ("3",), "3")
        text = _text(row, "sentence")
        label = fiqa_label(_field(row, "sentiment_score"))
        kind = src.kind or ("tweet" if str(row.get("format", "")).strip().lower() == "post" else "news")
        return Example(instruction(scheme, kind), text, label, scheme, where)
    if schema == "nwgi":
        scheme = _scheme_for(src, ("7", "3"), "7")
        label = nwgi_label(_field(row, "label"))
        label = to_coarse(label) if scheme == "3" else label
        return Example(instruction(scheme, src.kind or "news"), _text(row, "news"), label, scheme, where)
    if schema == "finsent":
        scheme = _scheme_for(src, ("3", "7"), "3")
        fine, coarse = _text(row, "label").lower(), _text(row, "coarse").lower()
        if fine not in SCHEMES["7"]:
            raise LabelError(f"unknown 7-class label {fine!r} in 'label'")
        if coarse != to_coarse(fine):
            raise LabelError(f"'coarse' is {coarse!r} but 'label' {fine!r} maps to {to_coarse(fine)!r}")
        kind = src.kind or _text(row, "kind")
        return Example(instruction(scheme, kind), _text(row, "text"), fine if scheme == "7" else coarse,
                       scheme, where)
    raise DataError(f"{src.path}: unknown schema {schema!r}; choose one of {', '.join(SCHEMAS)}")


def load_source(src: DataSource, skip_bad_rows: bool = False, root: Path | None = None) -> list[Example]:
    """All usable rows of one source (first ``limit`` of them), in file order; see the module docstring."""
    if src.schema not in SCHEMAS:
        raise DataError(f"{src.path}: unknown schema {src.schema!r}; choose one of {', '.join(SCHEMAS)}")
    examples: list[Example] = []
    bad: list[str] = []
    for where, row in read_rows(src.path, src.split, root):
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
    stats: list[dict]  # per source: path, schema, scheme, weight, rows read, rows used


def load_mixture(sources: list[DataSource], *, seed: int = 42, skip_bad_rows: bool = False,
                 root: Path | None = None) -> LoadedData:
    """Read every source, apply weights, and shuffle the mix with ``seed`` (deterministic)."""
    if not sources:
        raise DataError("no training data: the recipe's finetune.data is empty")
    rng = random.Random(seed)
    mixed: list[Example] = []
    stats = []
    for src in sources:
        rows = load_source(src, skip_bad_rows=skip_bad_rows, root=root)
        used = weighted(rows, src.weight, rng)
        mixed.extend(used)
        stats.append({"path": src.path, "schema": src.schema, "split": src.split,
                      "scheme": "/".join(sorted({e.scheme for e in rows})), "weight": src.weight,
                      "rows_read": len(rows), "rows_used": len(used)})
    rng.shuffle(mixed)
    return LoadedData(mixed, stats)


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
