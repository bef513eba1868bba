"""The label scorer's reference for tests: real TFNS tweets read in place, and the naive log-probabilities (one
plain forward per text and label, no cache, no mask tricks) that ``FinSentClassifier`` must equal."""

from __future__ import annotations

import csv

import torch

from finsent.core.classify import FinSentClassifier
from finsent.core.labels import labels_of
from finsent.core.prompts import instruction


def tfns_texts(shared_data, n: int) -> list[str]:
    """The first ``n`` real TFNS validation tweets (read in place, never copied)."""
    with open(shared_data / "tfns" / "sent_valid.csv", newline="", encoding="utf-8") as fh:
        return [row["text"] for _, row in zip(range(n), csv.DictReader(fh))]


def naive_logprobs(clf: FinSentClassifier, texts, scheme: str, kind: str = "news") -> torch.Tensor:
    """The simple path: one plain forward per (text, label) over prompt + answer, no cache, no mask tricks."""
    labels = labels_of(scheme)
    instr = instruction(scheme, kind)
    reserve = clf.encoder.max_answer_len(labels)
    out = torch.empty(len(texts), len(labels), dtype=torch.float64)
    for i, text in enumerate(texts):
        prompt = clf.encoder.encode(instr, text, reserve=reserve).ids
        for j, label in enumerate(labels):
            answer = list(clf.encoder.answer_ids(label))
            ids = torch.tensor([prompt + answer])
            with torch.inference_mode():
                logits = clf.model(input_ids=ids, use_cache=False).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            # logits at position p predict token p + 1
            out[i, j] = sum(logp[len(prompt) - 1 + t, tok] for t, tok in enumerate(answer))
    return out
