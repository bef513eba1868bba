"""Fixtures of the Space tests, fast and slow: the tiny random Llama as a classifier, and the loopback Hub server
that the deploy speaks to."""

from __future__ import annotations

import pytest

from finsent import FinSentClassifier


@pytest.fixture(scope="module")
def tiny_clf(tiny_llama_dir):
    return FinSentClassifier.from_pretrained(str(tiny_llama_dir))


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    from hub_server import HubServer

    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")  # the classic upload path the test server speaks
    with HubServer(tmp_path / "hub") as server:
        yield server
