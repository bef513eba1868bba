"""build/bench/eval_provenance.py: committed eval results get the provenance of the tfns_accuracy.py run that built
their weights, only when the weights match, and the committed 0.891 TFNS result carries it."""

from __future__ import annotations

import hashlib
import json

import pytest
from checkout import REPO
from release_factory import eval_result

from finsent.core.reports import read_report

WEIGHTS = "e4" * 32
SPLIT = "dev: 0.1 of each training source, stratified by label, seed 42 (row ids in the adapter's dev_split.json)"
RUN = {"git_commit": "f3ecb25db19a1894fa278a7e2a1953aadfd8ad37",
       "recipe_contents": {"name": "r", "description": "a pruned, tuned SmolLM2",
                           "finetune": {"seed": 42, "dev_fraction": 0.1}},
       "model_params": 109953792, "selection": {"split": SPLIT, "metric": "dev accuracy"},
       "dev": {"n": 40, "accuracy": 0.9, "macro_f1": 0.8,
               "per_source": {"tfns.csv": {"n": 30, "accuracy": 0.9, "macro_f1": 0.8},
                              "fpb.jsonl": {"n": 10, "accuracy": 0.9, "macro_f1": 0.8}}},
       "reported": {"model_sha256": WEIGHTS}}


@pytest.fixture()
def stamped(tmp_path, bench_script):
    module = bench_script("eval_provenance")
    results = tmp_path / "results"
    results.mkdir()
    (results / "tfns_accuracy-chosen.json").write_text(json.dumps(RUN))
    folder = tmp_path / "eval" / "model"
    folder.mkdir(parents=True)
    for mode in ("score", "generate"):
        result = {**eval_result("tfns", "3", mode, 0.89), "model_hash": f"sha256:{WEIGHTS}"}
        (folder / f"tfns-3-{mode}.json").write_text(json.dumps(result, indent=2) + "\n")
    (folder / "notes.json").write_text("{}")  # not a result: left alone
    return module, results, folder


def test_every_result_gets_the_run_provenance_and_a_second_run_writes_the_same_bytes(stamped):
    module, results, folder = stamped
    before = {p.name: json.loads(p.read_text()) for p in folder.glob("tfns-*.json")}
    module.main(["--run", "chosen", "--results", str(results), str(folder)])
    run_file = results / "tfns_accuracy-chosen.json"
    source = str(run_file.resolve())  # outside the repository: named by its full path
    expected = {
        "source": source, "git_commit": "f3ecb25db19a1894fa278a7e2a1953aadfd8ad37",
        "recipe": RUN["recipe_contents"], "model_params": 109953792,
        "chosen_by": {"description": "a pruned, tuned SmolLM2", "metric": "dev accuracy", "dev": RUN["dev"],
                      "dev_split": {"fraction": 0.1, "seed": 42, "rows": {"tfns.csv": 30, "fpb.jsonl": 10},
                                    "definition": SPLIT}},
        "files": {source: hashlib.sha256(run_file.read_bytes()).hexdigest()},
        "note": f"added after scoring from {source}, the build/bench/tfns_accuracy.py run that built these weights "
                "(its reported.model_sha256 is this result's model_hash), by build/bench/eval_provenance.py"}
    written = {}
    for name, old in before.items():
        written[name] = (folder / name).read_bytes()
        assert read_report("eval", folder / name) == {**old, "provenance": expected}  # nothing else changed
    assert (folder / "notes.json").read_text() == "{}"
    module.main(["--run", "chosen", "--results", str(results), str(folder)])
    assert {name: (folder / name).read_bytes() for name in written} == written


def test_results_of_other_weights_are_refused_and_nothing_is_written(stamped):
    module, results, folder = stamped
    other = folder / "tfns-3-generate.json"
    other.write_text(json.dumps({**json.loads(other.read_text()), "model_hash": "sha256:" + "00" * 32}))
    untouched = (folder / "tfns-3-score.json").read_bytes()
    with pytest.raises(SystemExit, match=r"tfns-3-generate.json: model_hash sha256:0+ is not the weights "
                                         r"tfns_accuracy-chosen.json built"):
        module.main(["--run", "chosen", "--results", str(results), str(folder)])
    assert (folder / "tfns-3-score.json").read_bytes() == untouched
    (results / "tfns_accuracy-unreported.json").write_text(json.dumps({**RUN, "reported": None}))
    with pytest.raises(SystemExit, match="has no reported.model_sha256"):
        module.main(["--run", "unreported", "--results", str(results), str(folder)])


@pytest.mark.parametrize("folder, tag, accuracy, commit", [
    ("smollm2-109m-fingpt-direct-2ep", "direct-lr2e-4-dev", 0.8907, "f3ecb25db19a1894fa278a7e2a1953aadfd8ad37"),
    ("smollm2-109m-fingpt-soup", "direct-1ep-soup-dev", 0.8903, "6e0c6b6275ca54ceec44b7242abc8b46a01d130c"),
])
def test_the_committed_tfns_result_carries_the_provenance_of_the_run_that_built_it(bench_script, folder, tag,
                                                                                    accuracy, commit):
    module = bench_script("eval_provenance")
    name = f"build/bench/results/tfns_accuracy-{tag}.json"
    run = json.loads((REPO / name).read_text())
    result = read_report("eval", REPO / "eval" / "results" / folder / "tfns-3-score.json")
    assert result["model_hash"] == f"sha256:{run['reported']['model_sha256']}"
    assert round(result["metrics"]["accuracy"], 4) == run["tfns_validation"]["accuracy"] == accuracy
    sha = hashlib.sha256((REPO / name).read_bytes()).hexdigest()
    assert result["provenance"] == module.run_provenance(run, name, sha)
    assert (result["provenance"]["git_commit"], result["provenance"]["model_params"]) == (commit, 109953792)
