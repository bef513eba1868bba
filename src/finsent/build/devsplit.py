"""The dev split: held-out rows of the training files on which settings are chosen, never a benchmark.

``finetune.dev_fraction`` (e.g. 0.1) takes that share of every training source out of training, seeded by
``finetune.seed`` and stratified by label, so each source and each label keep their proportions. A row is
named by the SHA-256 of its text (``row_id``): rows with the same text are one group and land on the same
side, so a duplicated tweet cannot be trained on and scored. The split is saved as row ids and the
source files' hashes (``dev_split.json`` beside the adapter), never as copied text: anyone with the same
files rebuilds it exactly, and a changed file is detected by its hash.

After training, ``score_dev`` scores the held-out rows with the classifier's own code (``FinSentClassifier``,
label scoring, the standard prompt of the row's scheme and kind) and reports accuracy and macro-F1 for the
whole split and for each source: what ``training.json``'s ``dev`` records and what recipes are chosen by.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict

from finsent.core.classify import FinSentClassifier
from finsent.core.models import unwrap
from finsent.core.provenance import file_sha256


def row_id(text: str) -> str:
    """The id a dev split saves for a row: the first 16 hex digits of SHA-256 of its text (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def carve(examples: list, fraction: float, seed: int, source: str) -> tuple[list, list]:
    """(train, dev) of one source's examples: ``round(fraction x groups)`` text groups of every label go to dev.

    Groups are rows sharing a text (``row_id``); a group's label is its first row's. The choice depends only
    on the seed, the source's name and the row ids, not on the file's row order.
    """
    if not fraction:
        return list(examples), []
    groups: dict[str, str] = {}  # row id -> label of its first row
    for ex in examples:
        groups.setdefault(row_id(ex.text), ex.answer)
    by_label: dict[str, list[str]] = defaultdict(list)
    for rid, label in groups.items():
        by_label[label].append(rid)
    dev_ids: set[str] = set()
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        random.Random(f"{seed}:{source}:{label}").shuffle(ids)
        dev_ids.update(ids[:round(fraction * len(ids))])
    train = [ex for ex in examples if row_id(ex.text) not in dev_ids]
    dev = [ex for ex in examples if row_id(ex.text) in dev_ids]
    return train, dev


def split_record(fraction: float, seed: int, dev_by_source: dict[str, list]) -> dict:
    """What ``dev_split.json`` holds: the rule, and per source its file hash, row count and sorted row ids."""
    return {"fraction": fraction, "seed": seed, "id": "sha256(text)[:16]", "stratified_by": "source, label",
            "sources": [{"path": path, "sha256": file_sha256(path), "rows": len(rows),
                         "ids": sorted({row_id(ex.text) for ex in rows})}
                        for path, rows in dev_by_source.items()]}


def score_dev(classifier, dev_by_source: dict[str, list], batch_size: int = 32) -> dict:
    """Accuracy and macro-F1 of ``classifier`` on the dev rows, all together and per source.

    Rows are scored as the classifier prompts them (``classify(texts, scheme, kind=...)``), grouped by scheme
    and kind, so the number is what a user of the model would get on these rows.
    """
    from sklearn.metrics import accuracy_score, f1_score

    def metrics(gold: list[str], pred: list[str]) -> dict:
        return {"n": len(gold), "accuracy": round(float(accuracy_score(gold, pred)), 4),
                "macro_f1": round(float(f1_score(gold, pred, average="macro")), 4)}

    per_source, all_gold, all_pred = {}, [], []
    for path, rows in dev_by_source.items():
        gold, pred = [], []
        for scheme, kind in sorted({(ex.scheme, ex.kind) for ex in rows}):
            part = [ex for ex in rows if (ex.scheme, ex.kind) == (scheme, kind)]
            answers = classifier.classify([ex.text for ex in part], scheme, kind=kind, batch_size=batch_size)
            gold += [ex.answer for ex in part]
            pred += [a.label for a in answers]
        per_source[path] = metrics(gold, pred)
        all_gold += gold
        all_pred += pred
    return {**metrics(all_gold, all_pred), "per_source": per_source}


def score_model(model, tokenizer, dev: dict[str, list], batch_size: int = 32) -> dict:
    """``score_dev`` of a model being trained (LoRA-wrapped or not), in eval mode, left in its former mode."""
    import time


    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        result = score_dev(FinSentClassifier(unwrap(model), tokenizer, batch_size=batch_size), dev, batch_size)
    finally:
        model.train(was_training)
    # Label-scoring speed of the model as trained (its training dtype, batch ``batch_size``, this process's threads).
    return {**result, "items_per_second": round(result["n"] / (time.perf_counter() - start), 2)}
