"""Fixtures of the corpus tests, fast and slow: the tiny random Llama as a classifier."""

from __future__ import annotations

import pytest

from finsent.core.classify import FinSentClassifier


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    return FinSentClassifier.from_pretrained(tiny_llama_dir)
