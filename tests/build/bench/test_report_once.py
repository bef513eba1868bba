"""build/bench/tfns_accuracy.py --report: TFNS validation scored once for a dev-split run, never twice."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest

ROWS = [("$ALLY - Ally Financial pulls outlook", 0), ("Apple beats estimates, raises dividend", 1),
        ("Markets close flat ahead of Fed minutes", 2), ("$SAN: Deutsche Bank cuts to Hold", 0)]


@pytest.fixture()
def bench(tmp_path, monkeypatch, tiny_llama_dir, bench_script):
    module = bench_script("tfns_accuracy")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "RESULTS", tmp_path / "results")
    valid = tmp_path / "sent_valid.csv"
    valid.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in ROWS))
    monkeypatch.setattr(module, "TFNS_VALID", valid)
    shutil.copytree(tiny_llama_dir, tmp_path / "runs" / "bench-r-chosen" / "merged")
    (tmp_path / "results").mkdir()
    return module


def write(bench, tag, result):
    (bench.RESULTS / f"tfns_accuracy-{tag}.json").write_text(json.dumps(result))


def test_report_scores_every_row_once_and_records_the_weights(bench, tmp_path):
    write(bench, "chosen", {"recipe_contents": {"name": "r"}, "dev": {"accuracy": 0.9}})
    bench.report_once("chosen")
    result = json.loads((bench.RESULTS / "tfns_accuracy-chosen.json").read_text())
    final, reported = result["tfns_validation"], result["reported"]
    assert final["n"] == 4 and 0 <= final["accuracy"] <= 1 and result["dev"] == {"accuracy": 0.9}
    weights = tmp_path / "runs" / "bench-r-chosen" / "merged" / "model.safetensors"
    assert reported["model_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert reported["data_sha256"] == hashlib.sha256(bench.TFNS_VALID.read_bytes()).hexdigest()
    with pytest.raises(SystemExit, match="already has a TFNS validation score: it is reported once"):
        bench.report_once("chosen")


def test_report_refuses_runs_not_chosen_on_dev_or_without_a_model(bench):
    write(bench, "nodev", {"recipe_contents": {"name": "r"}, "dev": None})
    with pytest.raises(SystemExit, match="has no dev score: only a run chosen on the dev split is reported"):
        bench.report_once("nodev")
    write(bench, "gone", {"recipe_contents": {"name": "r"}, "dev": {"accuracy": 0.9}})
    with pytest.raises(SystemExit, match="bench-r-gone/merged holds no merged model"):
        bench.report_once("gone")
    with pytest.raises(SystemExit, match="no results for run 'missing'"):
        bench.report_once("missing")
