"""Every eval result names where its model came from: a release's commit, recipe, size and dev score from its own
reports; any other model gets nulls and a note saying why (finsent.evaluation.model_provenance)."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml
from release_factory import (
    RECIPE,
    add_model,
    build_report,
    checked,
    eval_result,
    pruning_report,
    training_report,
    write_weights,
)

from finsent.core.models import weights_params
from finsent.core.recipes import EvalBenchmark
from finsent.core.reports import ReportError, check_report
from finsent.evaluation.model_provenance import model_provenance
from finsent.evaluation.runs import run_eval

# The tiny Llama of conftest: SmolLM2's 49,152-token embedding (tied to the head, saved once) of width 64, and two
# layers of 4,096 + 2,048 + 2,048 + 4,096 attention, 3 x 64 x 128 MLP and 2 x 64 norm weights, and the final norm.
TINY_PARAMS = 49152 * 64 + 2 * (12288 + 24576 + 128) + 64
DEV = {"n": 30, "accuracy": 0.9, "macro_f1": 0.85, "per_source": {
    "FinGPT/fingpt-sentiment-train": {"n": 30, "accuracy": 0.9, "macro_f1": 0.85}}}
# As the release writes it (Recipe.to_dict): the split is 10 % of each source, carved with dev_seed, not seed.
STORED_RECIPE = {**RECIPE, "finetune": {**RECIPE["finetune"], "seed": 7, "dev_fraction": 0.1, "dev_seed": 11}}


@pytest.fixture(scope="module")
def tiny_clf(tiny_llama_dir):
    from finsent.core.classify import FinSentClassifier

    return FinSentClassifier.from_pretrained(str(tiny_llama_dir))


@pytest.fixture
def release(tmp_path, tiny_llama_dir):
    """A release folder of the tiny model with the reports `finsent release` writes, build.json included."""
    folder = tmp_path / "releases" / "tiny"
    add_model(folder, tiny_llama_dir)
    reports = folder / "reports"
    reports.mkdir()
    training = training_report()
    training["data"][0]["rows_dev"] = 30
    (reports / "training.json").write_text(json.dumps(checked("training", {**training, "dev": DEV})))
    (reports / "pruning.json").write_text(json.dumps(checked("pruning", pruning_report())))
    (reports / "build.json").write_text(json.dumps(checked("build", build_report())))
    (reports / "recipe.yaml").write_text(yaml.safe_dump(STORED_RECIPE, sort_keys=False))
    return folder


@pytest.fixture
def tweets(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_text("text,label\n$ACME guidance cut,0\n$BOLT beats on revenue,1\n$CRUX files its report,2\n")
    return [EvalBenchmark("tfns", str(path))]


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_params_sum_the_safetensors_shapes_as_torch_counts(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    assert weights_params(tiny_llama_dir) == TINY_PARAMS == sum(p.numel() for p in model.parameters())
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    write_weights(sharded / "model-00001-of-00002.safetensors", params=1000)
    write_weights(sharded / "model-00002-of-00002.safetensors", params=24)
    assert weights_params(sharded) == 1024
    assert weights_params(tmp_path / "no-such-folder") is None and weights_params(tmp_path / "sharded" / "x") is None


def test_an_eval_of_a_release_carries_its_commit_recipe_and_params_from_its_reports(release, tweets, tiny_clf,
                                                                                 tmp_path):
    results = run_eval(release, tweets, ["score"], tmp_path / "out", batch_size=4, classifier=tiny_clf,
                       progress=False)
    reports = release / "reports"
    assert results[0]["provenance"] == {
        "source": str(reports),
        "git_commit": "f3ecb25db19a1894fa278a7e2a1953aadfd8ad37",
        "code_sha256": "cd" * 32,
        "recipe": STORED_RECIPE,
        "model_params": 913770496,  # recorded at build time: taken from build.json, not counted again
        "chosen_by": {
            "description": "Llama-3.2-1B, 40 % of GLU neurons pruned, LoRA on FinGPT sentiment",
            "metric": "dev accuracy",
            "dev": DEV,
            "dev_split": {"fraction": 0.1, "seed": 11, "rows": {"FinGPT/fingpt-sentiment-train": 30},
                          "definition": "dev: 0.1 of each training source held out of training, stratified by "
                                        "label (rows with the same text on one side), seed 11; row ids in the "
                                        "adapter's dev_split.json (finsent.build.devsplit)"}},
        "files": {f"reports/{name}": sha(reports / name)
                  for name in ("build.json", "recipe.yaml", "training.json", "pruning.json")},
        "note": None,
    }
    written = json.loads((tmp_path / "out" / "tfns-3-score.json").read_text())
    assert written["provenance"] == results[0]["provenance"]


def test_a_release_built_before_build_json_counts_its_params_and_says_what_is_missing(release):
    (release / "reports" / "build.json").unlink()
    training = json.loads((release / "reports" / "training.json").read_text())
    (release / "reports" / "training.json").write_text(json.dumps({**training, "dev": None}))
    (release / "reports" / "recipe.yaml").write_text(yaml.safe_dump(RECIPE))  # dev_fraction 0 (the default)
    provenance = model_provenance(release)
    assert (provenance["git_commit"], provenance["code_sha256"], provenance["model_params"]) == (None, None,
                                                                                              TINY_PARAMS)
    assert provenance["chosen_by"] == {"description": RECIPE["description"], "metric": None, "dev": None,
                                       "dev_split": None}
    assert provenance["note"] == (
        "reports/build.json is missing: the release was built before finsent recorded the commit that built it "
        "(model_params counted from its weights); the recipe holds out no dev split (finetune.dev_fraction 0): "
        "no dev score chose it")
    assert set(provenance["files"]) == {"reports/recipe.yaml", "reports/training.json", "reports/pruning.json"}


def test_a_report_that_does_not_read_is_left_out_and_named_never_stopping_the_eval(release):
    training = release / "reports" / "training.json"
    training.write_text(json.dumps({"steps": 3}))
    provenance = model_provenance(release)
    assert (provenance["git_commit"], provenance["chosen_by"]["dev"]) == (
        "f3ecb25db19a1894fa278a7e2a1953aadfd8ad37", None)
    assert provenance["note"].startswith(f"left out: {training}: missing epochs, learning_rate")
    assert provenance["note"].endswith("; no dev score recorded (reports/training.json is missing or its dev is null)")


def test_a_model_finsent_did_not_build_gets_nulls_and_a_note(tiny_llama_dir, tweets, tiny_clf, tmp_path,
                                                             smollm2_dir):
    results = run_eval(tiny_llama_dir, tweets, ["score"], tmp_path / "out", batch_size=4, classifier=tiny_clf,
                       progress=False)
    assert results[0]["provenance"] == {
        "source": None, "git_commit": None, "recipe": None, "model_params": TINY_PARAMS, "chosen_by": None,
        "note": f"{tiny_llama_dir} has no reports/recipe.yaml: not a release folder of `finsent release`, so no "
                "build is recorded with it"}
    embedded = model_provenance("smollm2")
    assert embedded == {
        "source": None, "git_commit": None, "recipe": None, "model_params": weights_params(smollm2_dir),
        "chosen_by": None,
        "note": "the embedded SmolLM2-135M-Instruct as Hugging Face published it: not built by finsent"}
    assert embedded["model_params"] == 134515008  # SmolLM2-135M, its embedding tied to the head
    hub = model_provenance("acme/not-downloaded")  # a Hub id is named, never fetched, for its provenance
    assert (hub["git_commit"], hub["recipe"], hub["model_params"]) == (None, None, None)
    assert hub["note"].startswith("a Hub model (acme/not-downloaded): its build is not read from the Hub")


def test_results_written_before_provenance_still_read_and_a_partial_one_is_refused():
    old = eval_result("tfns", "3", "score", 0.85)
    assert "provenance" not in old and check_report("eval", old) is old
    nulls = {"source": None, "git_commit": None, "recipe": None, "model_params": None, "chosen_by": None,
             "note": "why"}
    assert check_report("eval", {**old, "provenance": nulls})
    with pytest.raises(ReportError, match="provenance: missing note"):
        check_report("eval", {**old, "provenance": {k: v for k, v in nulls.items() if k != "note"}})
    chosen = {"description": None, "metric": None, "dev": None}
    with pytest.raises(ReportError, match="provenance: chosen_by: missing dev_split"):
        check_report("eval", {**old, "provenance": {**nulls, "chosen_by": chosen}})
