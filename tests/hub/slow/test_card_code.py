"""The card's code runs: its Python snippet on the real SmolLM2, its onnxruntime and pipeline() snippets on a real
ONNX export, each agreeing with FinSentClassifier."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from release_factory import write_reports

from finsent.core.recipes import load_recipe
from finsent.hub.card import render_card


@pytest.fixture
def release(tmp_path) -> Path:
    return write_reports(tmp_path / "release")


def recipe_of(release: Path, **overrides):
    return load_recipe(release / "reports" / "recipe.yaml", overrides)


def test_card_code_for_onnxruntime_and_pipeline_runs_on_a_real_export(tiny_llama_dir, tmp_path, capsys):
    """The card's onnxruntime and pipeline() snippets, run on a real release folder and its ONNX export, give
    FinSentClassifier's probabilities."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the runtimes extra)")
    from release_factory import merged_release

    from finsent.core.classify import FinSentClassifier
    from finsent.export.stage import run_exports

    release = merged_release(tiny_llama_dir, tmp_path / "release", tolerance=10.0)
    write_reports(release)
    recipe = recipe_of(release, **{"export.onnx": True, "export.agreement_n": 0})
    run_exports(recipe, release)
    text = render_card(recipe, release, repo_id="bob/FinSent")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    onnx = next(b for b in blocks if "onnxruntime" in b)
    onnx = re.sub(r"folder = snapshot_download\(.*\n", f"folder = {str(release / 'onnx')!r}\n", onnx)
    namespace: dict = {}
    exec(onnx, namespace)
    news = "Shares of Zenith Bank slump after regulator opens fraud probe"
    label, probs = namespace["classify_onnx"](news)
    pred = FinSentClassifier.from_pretrained(str(release)).classify(news, "3")
    assert label == pred.label and probs == pytest.approx(pred.probs, abs=1e-4)
    pipe = next(b for b in blocks if "pipeline(" in b).replace('"bob/FinSent"', repr(str(release)))
    capsys.readouterr()
    exec(pipe, {})
    assert capsys.readouterr().out.startswith("[{'label': ")


def test_card_code_runs_and_agrees_with_the_classifier(release, smollm2_dir, capsys):
    """The card's plain-transformers snippets, run on the real SmolLM2, give the classifier's probabilities,
    label and generated answer."""
    from finsent.core.classify import FinSentClassifier

    text = render_card(recipe_of(release), release)
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    namespace: dict = {}
    exec(blocks[0].replace('"alice/Llama-FinSent-S"', repr(str(smollm2_dir))), namespace)
    exec(blocks[1], namespace)
    printed = capsys.readouterr().out
    assert printed.startswith("('") and "'negative':" in printed
    clf = FinSentClassifier(namespace["model"], namespace["tokenizer"])  # the same weights, the library's path
    news = "Shares of Zenith Bank slump after regulator opens fraud probe"
    label, probs = namespace["classify"](news)
    pred = clf.classify(news, "3")
    assert label == pred.label
    assert probs == pytest.approx(pred.probs, abs=1e-4)
    assert namespace["generate"](news) == clf.classify(news, "3", mode="generate").answer.split("\n")[0].strip()
