"""Fixtures of the command-line tests, fast and slow: a small tweets CSV, and a release folder finsent wrote."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from release_factory import write_reports

from finsent.core.outputs import read_marker

TWEETS = [("$ACME guidance cut, shares slide", 0), ("$BOLT beats on revenue, raises outlook", 1),
          ("$CRUX to present at conference on Tuesday", 2), ("$DYNA downgraded to sell", 0)]


@pytest.fixture
def tweets_csv(tmp_path) -> Path:
    path = tmp_path / "tweets.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *TWEETS])
    return path


@pytest.fixture
def rel(tmp_path, tiny_llama_dir) -> Path:
    """A release folder finsent wrote: the tiny model, its reports, eval results and marker."""
    folder = shutil.copytree(tiny_llama_dir, tmp_path / "REL")
    write_reports(folder)
    (folder / "finsent_pipeline.py").write_text("# the pipeline file\n")
    assert read_marker(folder)["kind"] == "release"
    return folder
