"""A release folder is a plain transformers pipeline: ``pipeline("text-classification", model=folder,
trust_remote_code=True)`` through the custom pipeline the merge ships (finsent_pipeline.py, registered in
config.json's ``custom_pipelines``), with every label's probability equal to ``FinSentClassifier``'s, also in
a fresh venv where finsent cannot be imported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finsent.core.pipeline import PIPELINE_FILE, add_pipeline


def test_export_pipeline_adds_it_to_an_older_folder(tiny_llama_dir, tmp_path, capsys):
    import shutil

    from finsent.cli import main

    folder = tmp_path / "old-release"
    shutil.copytree(tiny_llama_dir, folder)
    assert "custom_pipelines" not in json.loads((folder / "config.json").read_text())
    assert main(["export", str(folder), "--format", "pipeline"]) == 0
    assert "custom pipeline" in capsys.readouterr().out
    assert (folder / PIPELINE_FILE).read_bytes() == (Path(add_pipeline.__code__.co_filename).parent /
                                                      "pipeline_file.py").read_bytes()
    assert "custom_pipelines" in json.loads((folder / "config.json").read_text())


@pytest.fixture(scope="module")
def tiny_pipe(tiny_llama_dir, tmp_path_factory):
    """The pipeline file in a copy of the tiny Llama, loaded the way a user loads a release."""
    import shutil

    from transformers import pipeline

    folder = tmp_path_factory.mktemp("pipe") / "release"
    shutil.copytree(tiny_llama_dir, folder)
    add_pipeline(folder)
    return pipeline("text-classification", model=str(folder), trust_remote_code=True)


EMPTY = "nothing to classify"


@pytest.mark.parametrize(("args", "options", "message"), [
    (("\u200b",), {}, f"text is empty (only invisible characters, such as U+200B ZERO WIDTH SPACE): {EMPTY}"),
    ((" \ufeff\u2060 ",), {}, f"text is empty (only invisible characters, such as U+FEFF ZERO WIDTH NO-BREAK SPACE): "
                             f"{EMPTY}"),
    (("  ",), {}, f"text is empty (or only whitespace): {EMPTY}"),
    ((["Acme beats", 42],), {}, "text must be a string, got int: 42"),
    (("\ud800 Acme beats",), {},
     r"text is not valid Unicode (lone surrogate '\ud800' at character 1): send UTF-8 text"),
    (("Acme beats",), {"max_length": "abc"}, "max_length must be a whole number of tokens >= 1, got 'abc'"),
    (("Acme beats",), {"max_length": 0}, "max_length must be a whole number of tokens >= 1, got 0"),
    (("Acme beats",), {"max_length": 6.5}, "max_length must be a whole number of tokens >= 1, got 6.5"),
])
def test_pipeline_refuses_bad_input_in_one_line_naming_it(tiny_pipe, args, options, message):
    with pytest.raises(ValueError) as err:
        tiny_pipe(*args, **options)
    assert str(err.value) == message


def test_pipeline_file_applies_finsents_text_rule(tiny_pipe):
    """The pipeline file cannot import finsent: its copy of the text rule must give finsent's answers."""
    import sys as _sys

    from finsent.core import prompts

    shipped = _sys.modules[type(tiny_pipe).__module__]
    assert [c for c in range(0x110000) if prompts.invisible(chr(c)) != shipped.invisible(chr(c))] == []
    for text in ["Acme beats", " \u200b\n", "\ufeff", "\x00", "\udcff x", "\ud800", "", "\u200bAcme\u200d", 7]:
        try:
            expected = prompts.check_text(text)
        except prompts.InputError as exc:
            expected = str(exc)
        try:
            got = shipped.check_text(text)
        except ValueError as exc:
            got = str(exc)
        assert got == expected, text
    assert tiny_pipe("Acme beats", max_length="64")[0]["score"] == pytest.approx(tiny_pipe("Acme beats")[0]["score"])
