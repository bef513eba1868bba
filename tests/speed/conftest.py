"""Fixtures of the speed tests, fast and slow: the tiny random Llama as a float32 classifier."""

from __future__ import annotations

import pytest
import torch

from finsent.core.classify import FinSentClassifier


@pytest.fixture(scope="module")
def clf(tiny_llama_dir):
    return FinSentClassifier.from_pretrained(str(tiny_llama_dir), dtype=torch.float32)
