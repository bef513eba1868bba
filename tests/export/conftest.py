"""Fixtures of the export tests, fast and slow: a merged release of the tiny random Llama, a texts file, and a
copy of the tiny model folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from export_recipe import TEXTS
from release_factory import merged_release


@pytest.fixture(scope="module")
def tiny_release(tiny_llama_dir, tmp_path_factory) -> Path:
    """A merged fp16 release of the tiny random Llama (hidden 64, GLU 128: q8_0 fits); tests copy it."""
    return merged_release(tiny_llama_dir, tmp_path_factory.mktemp("tiny") / "release", tolerance=10.0)


@pytest.fixture
def texts(tmp_path) -> Path:
    path = tmp_path / "texts.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": "neutral"}) + "\n" for t in TEXTS))
    return path


@pytest.fixture()
def model_copy(tiny_llama_dir, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(tiny_llama_dir, tmp_path / "model"))
