"""Fixtures of the hub tests, fast and slow: the loopback Hub server, no wait before a failed tag is retried, and a
complete release folder around the tiny random Llama."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_server import HubServer
from release_factory import add_model, write_reports

from finsent.core.outputs import record_written_file
from finsent.hub import publish


@pytest.fixture(autouse=True)
def no_tag_retry_wait(monkeypatch):
    monkeypatch.setattr(publish, "TAG_RETRY_SECONDS", 0.0)


@pytest.fixture
def hub(tmp_path):
    with HubServer(tmp_path / "hub") as server:
        yield server


@pytest.fixture(scope="module")
def release(tmp_path_factory, tiny_llama_dir) -> Path:
    """A complete release folder around the tiny random Llama (fast); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("release") / "tiny"
    add_model(out, tiny_llama_dir)
    write_reports(out)
    (out / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny\n")
    record_written_file(out, "README.md")  # stands for a card finsent rendered: the card stage may replace it
    return out
