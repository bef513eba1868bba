"""finsent release end to end on the real SmolLM2 with a reduced recipe (a few steps, a small eval)."""

import json

import pytest
from checkout import REPO
from huggingface_hub import ModelCard

from finsent.cli import main
from finsent.core.classify import FinSentClassifier
from finsent.core.outputs import MARKER, release_files

TEST_SET = "data/finsent-headlines/test.jsonl"
REDUCED = [
    "--set", "finetune.max_steps=2",
    "--set", "finetune.batch_size=4",
    "--set", f'eval.benchmarks=[{{name: finsent, path: {TEST_SET}, scheme: "3", limit: 12}}, '
             f'{{name: finsent, path: {TEST_SET}, scheme: "7", limit: 12}}]',
    "--set", "eval.speed_n=4",
    "--set", "eval.speed_batch_sizes=[4]",
    "--set", "export.agreement_n=12",
]


def test_reduced_release_builds_a_complete_release_folder(tmp_path, monkeypatch, capsys, smollm2_dir):
    monkeypatch.chdir(REPO)  # recipe data paths are relative to the repository root
    dirs = ["--runs-dir", str(tmp_path / "runs"), "--releases-dir", str(tmp_path / "releases")]
    assert main(["release", "build/recipes/smollm2-135m.yaml", *REDUCED, *dirs]) == 0
    out = capsys.readouterr().out
    release = tmp_path / "releases" / "smollm2-135m"

    # Loadable weights, through plain transformers and through the one classifier.
    clf = FinSentClassifier.from_pretrained(str(release))
    assert clf.model.config.intermediate_size == 1344  # 12.5 % of 1536 pruned
    assert clf.model.config.vocab_size == len(clf.tokenizer) < 49152 // 4  # trimmed to the headlines' tokens
    pred = clf.classify("Acme Corp cuts its dividend and warns on profit", scheme="7")
    assert pred.label in pred.probs and abs(sum(pred.probs.values()) - 1) < 1e-5

    # Results JSON per run, speed figures, reports, and a card whose model-index carries the same numbers.
    results = {p.stem: json.loads(p.read_text()) for p in (release / "eval").glob("finsent-*.json")}
    assert set(results) == {"finsent-3-score", "finsent-7-score"}
    assert all(r["n"] == 12 for r in results.values())
    speed = json.loads((release / "eval" / "speed.json").read_text())
    assert {r["mode"] for r in speed["rows"]} == {"generate", "score"}
    assert {p.name for p in (release / "reports").iterdir()} == {"pruning.json", "training.json", "recipe.yaml",
                                                                 "build.json", "exports.json"}
    assert json.loads((release / "reports" / "training.json").read_text())["steps"] == 2
    # Every result names the build of the weights it scored: the commit and size the merge stage recorded, the recipe.
    build = json.loads((release / "reports" / "build.json").read_text())
    assert build["model_params"] == sum(p.numel() for p in clf.model.parameters())
    for run in results.values():
        provenance = run["provenance"]
        assert (provenance["git_commit"], provenance["model_params"]) == (build["git_commit"], build["model_params"])
        assert provenance["recipe"]["name"] == "smollm2-135m" and provenance["recipe"]["finetune"]["max_steps"] == 2
    card = ModelCard.load(release / "README.md")
    index = card.data.eval_results
    values = [e.metric_value for e in index]
    for run in results.values():  # the card rounds to 4 decimals
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            assert any(v == pytest.approx(run["metrics"][key], abs=5e-5) for v in values), key

    # The export stage wrote the recipe's GGUF f16 (the recipe asks for f16 only) and checked it; the
    # card shows how to run it.
    exports = json.loads((release / "reports" / "exports.json").read_text())
    assert [(e["path"], e["quant"]) for e in exports["files"]] == [("smollm2-135m-F16.gguf", "f16")]
    assert (release / "smollm2-135m-F16.gguf").stat().st_size == exports["files"][0]["bytes"]
    if exports["files"][0]["agreement"] is not None:  # measured where llama-cpp-python is installed
        assert exports["files"][0]["agreement"] >= 11 / 12 and exports["n"] == 12
    readme = (release / "README.md").read_text()
    assert "## Run it anywhere" in readme and "--hf-file smollm2-135m-F16.gguf" in readme

    # The push was a dry run listing every file of the folder, and nothing else; finsent's own marker files
    # (the folders it wrote: .finsent-output.json) are bookkeeping and the predictions hold gold labels: not published.
    files = {p.relative_to(release).as_posix() for p in release.rglob("*") if p.is_file()}
    published = {p.relative_to(release).as_posix() for p in release_files(release)}
    assert sorted(files - published) == [MARKER, "eval/" + MARKER, "eval/finsent-3-score.predictions.jsonl",
                                         "eval/finsent-7-score.predictions.jsonl"]
    for rel in published:
        assert f"add {rel}" in out
    for rel in files - published:
        assert f"add {rel}" not in out
    assert "dry run: nothing sent" in out and "Serve the Space on it" in out

    # A second run finds every model stage up to date: it rewrites neither the pruned model, the adapter,
    # the merged weights, the eval results nor the exports, and only re-renders the card and repeats the dry run.
    outputs = [tmp_path / "runs/smollm2-135m/pruned/model.safetensors",
               tmp_path / "runs/smollm2-135m/adapter/training.json",
               release / "model.safetensors", release / "eval" / "finsent-3-score.json",
               release / "smollm2-135m-F16.gguf"]
    before = [p.stat().st_mtime_ns for p in outputs]
    assert main(["release", "build/recipes/smollm2-135m.yaml", *REDUCED, *dirs]) == 0
    assert [p.stat().st_mtime_ns for p in outputs] == before
    assert "dry run: nothing sent" in capsys.readouterr().out
