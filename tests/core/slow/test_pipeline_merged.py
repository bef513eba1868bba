"""The shipped pipeline file on merged releases: equal to the classifier after a merge, and a real release used as
a transformers pipeline in a fresh venv without finsent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from release_factory import merged_release

from finsent.core.classify import FinSentClassifier
from finsent.core.pipeline import PIPELINE_FILE

TEXTS = [
    "Acme Corp beats third-quarter estimates and raises full-year guidance",
    "$ZEN down 9% premarket as the CEO resigns amid an accounting review",
    "The board will meet on Thursday to discuss the agenda",
]


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
