"""A release folder is a plain transformers pipeline: ``pipeline("text-classification", model=folder,
trust_remote_code=True)`` through the custom pipeline the merge ships (finsent_pipeline.py, registered in
config.json's ``custom_pipelines``), with every label's probability equal to ``FinSentClassifier``'s, also in
a fresh venv where finsent cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch

from finsent.core.classify import FinSentClassifier
from finsent.core.pipeline import PIPELINE_FILE, add_pipeline
from finsent.core.recipes import Recipe

TEXTS = [
    "Acme Corp beats third-quarter estimates and raises full-year guidance",
    "$ZEN down 9% premarket as the CEO resigns amid an accounting review",
    "The board will meet on Thursday to discuss the agenda",
]


def merged_release(base: Path, out: Path, dtype: str = "float16", tolerance: float = 1.0) -> Path:
    """A release folder as the merge stage writes it: base + a small non-zero LoRA, merged and checked."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from finsent.build.merge import run_merge

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "up_proj"]))
    torch.manual_seed(0)
    for name, weight in lora.named_parameters():
        if "lora_B" in name:
            weight.data.normal_(0, 0.01)
    adapter = out.with_name(out.name + "-adapter")
    lora.save_pretrained(adapter)
    recipe = Recipe(name="export-test")
    recipe.merge.dtype, recipe.merge.tolerance = dtype, tolerance
    return run_merge(recipe, base, adapter, out)


def pipeline_scores(results) -> list[dict[str, float]]:
    return [{item["label"]: item["score"] for item in row} for row in results]


def assert_same(results, predictions, tol=1e-5):
    for row, pred in zip(pipeline_scores(results), predictions):
        assert set(row) == set(pred.probs)
        assert max(abs(row[k] - v) for k, v in pred.probs.items()) < tol, (row, pred.probs)
        assert max(row, key=row.get) == pred.label


def test_merge_ships_the_pipeline_and_it_equals_the_classifier(tiny_llama_dir, tmp_path):
    from transformers import pipeline

    release = merged_release(tiny_llama_dir, tmp_path / "release", dtype="float32", tolerance=1e-4)
    config = json.loads((release / "config.json").read_text())
    assert config["custom_pipelines"] == {"text-classification": {
        "impl": "finsent_pipeline.FinSentPipeline", "pt": ["AutoModelForCausalLM"], "tf": [], "type": "text"}}
    shipped = (release / PIPELINE_FILE).read_text()
    assert "import finsent" not in shipped and "from finsent" not in shipped

    pipe = pipeline("text-classification", model=str(release), trust_remote_code=True)
    assert type(pipe).__name__ == "FinSentPipeline"
    clf = FinSentClassifier.from_pretrained(str(release))
    for scheme in ("3", "7"):
        for kind in ("news", "tweet"):
            results = pipe(TEXTS, scheme=scheme, kind=kind)
            assert [len(r) for r in results] == [int(scheme)] * len(TEXTS)
            assert all([x["score"] for x in r] == sorted((x["score"] for x in r), reverse=True) for r in results)
            assert_same(results, clf.classify(TEXTS, scheme, kind=kind))
    # One text in, one ranked list out; over-long texts are cut like the classifier cuts them.
    single = pipe(TEXTS[0])
    assert isinstance(single, list) and len(single) == 3
    long_text = " ".join(["Revenue rose while margins fell and guidance was cut"] * 80)
    short = FinSentClassifier.from_pretrained(str(release), max_length=64)
    pred = short.classify(long_text)
    assert pred.truncated
    assert_same([pipe(long_text, max_length=64)], [pred])
    with pytest.raises(ValueError, match="unknown label scheme"):
        pipe(TEXTS[0], scheme="5")


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


# --- a fresh environment without finsent ---------------------------------------------------------

SCRIPT = r"""
import importlib.util, json, sys
assert importlib.util.find_spec("finsent") is None, "finsent is importable"
from transformers import pipeline
pipe = pipeline("text-classification", model=sys.argv[1], trust_remote_code=True)
texts = json.loads(sys.argv[2])
print(json.dumps({"class": type(pipe).__name__, "3": pipe(texts), "7": pipe(texts, scheme="7", kind="tweet")}))
"""


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory) -> Path:
    """A fresh venv whose only extra path is the project venv's site-packages as a plain .pth line: that
    folder's own .pth files (the editable finsent, pointing at src/) are not processed, so finsent is absent."""
    root = tmp_path_factory.mktemp("bare") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    python = root / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.mark.slow
def test_real_release_is_a_pipeline_in_a_fresh_venv_without_finsent(bare_venv, smollm2_dir, tmp_path):
    release = merged_release(smollm2_dir, tmp_path / "release")  # the real SmolLM2 + LoRA, fp16 like a release
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), PYTHONDONTWRITEBYTECODE="1")
    probe = subprocess.run([str(bare_venv), "-c", "import finsent"], cwd=tmp_path, env=env, capture_output=True,
                           text=True)
    assert probe.returncode == 1 and "No module named 'finsent'" in probe.stderr
    done = subprocess.run([str(bare_venv), "-c", SCRIPT, str(release), json.dumps(TEXTS)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["class"] == "FinSentPipeline"
    clf = FinSentClassifier.from_pretrained(str(release))
    assert_same(out["3"], clf.classify(TEXTS, "3"))
    assert_same(out["7"], clf.classify(TEXTS, "7", kind="tweet"))
