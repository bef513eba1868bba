"""Fixtures of the core tests, fast and slow: the tiny random Llama as a classifier, and real tweets of mixed
lengths."""

from __future__ import annotations

import pytest
from naive_scores import tfns_texts

from finsent.core.classify import FinSentClassifier


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return FinSentClassifier.from_pretrained(str(tiny_llama_dir))


@pytest.fixture(scope="module")
def mixed_texts(shared_data):
    """Real tweets of mixed lengths plus a one-word and a long text, so batches need padding."""
    texts = tfns_texts(shared_data, 9)
    return [*texts, "Up.", " ".join(texts[:3])]
