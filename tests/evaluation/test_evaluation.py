"""`finsent eval`: results JSON (shared contract), predictions, plots, summary.md and the command line."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
from eval_checks import check_run

from finsent.core.labels import SCHEMES
from finsent.core.outputs import MARKER
from finsent.core.recipes import EvalBenchmark
from finsent.evaluation.benchmarks import load_benchmark
from finsent.evaluation.runs import model_identity, run_eval
from finsent.evaluation.summary import load_references, plot_confusion, write_summary

TWEETS = [("$ACME guidance cut, shares slide", 0), ("$BOLT beats on revenue, raises outlook", 1),
          ("$CRUX to present at conference on Tuesday", 2), ("$DYNA downgraded to sell", 0),
          ("$ECHO hits record high after upgrade", 1), ("$FLUX files quarterly report", 2)]


@pytest.fixture(scope="module")
def tiny_clf(tiny_llama_dir):
    from finsent.core.classify import FinSentClassifier

    return FinSentClassifier.from_pretrained(str(tiny_llama_dir))


@pytest.fixture
def tweets_csv(tmp_path):
    path = tmp_path / "tweets.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("text", "label"), *TWEETS])
    return path


def test_run_eval_writes_results_predictions_and_plots(tmp_path, tiny_llama_dir, tiny_clf, tweets_csv):
    out = tmp_path / "eval"
    bench = EvalBenchmark("tfns", str(tweets_csv))
    results = run_eval(tiny_llama_dir, [bench], ["score", "generate"], out, batch_size=4, classifier=tiny_clf,
                       progress=False)
    data = load_benchmark("tfns", tweets_csv)
    assert [r["mode"] for r in results] == ["score", "generate"]
    score = check_run(out, results[0], data, "score")
    assert all(sum(x["probs"].values()) == pytest.approx(1, abs=1e-4) for x in score)
    generated = check_run(out, results[1], data, "generate")
    assert all("answer" in x for x in generated)
    weights = hashlib.sha256((tiny_llama_dir / "model.safetensors").read_bytes()).hexdigest()
    assert results[0]["model_hash"] == f"sha256:{weights}"
    assert results[0]["model"] == str(tiny_llama_dir)
    assert "TFNS" not in (out / "tfns-3-score.predictions.jsonl").read_text()  # no texts written


def test_rows_are_classified_with_their_own_instruction_word(tmp_path, tiny_clf):
    rows = [{"text": t, "label": "neutral", "coarse": "neutral", "kind": k}
            for t, k in [("Acme plans a new plant", "news"), ("$ACME to the moon", "tweet"),
                         ("Board meets Thursday", "news")]]
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o"
    run_eval(str(tiny_clf.source), [EvalBenchmark("finsent", str(path))], ["score"], out, classifier=tiny_clf,
             progress=False)
    lines = [json.loads(x) for x in (out / "finsent-3-score.predictions.jsonl").read_text().splitlines()]
    news = tiny_clf.classify([rows[0]["text"], rows[2]["text"]], "3", kind="news")
    tweet = tiny_clf.classify(rows[1]["text"], "3", kind="tweet")
    for line, pred in zip(lines, [news[0], tweet, news[1]]):
        assert line["probs"] == pytest.approx(pred.probs, abs=1e-5)
    assert [x["kind"] for x in lines] == ["news", "tweet", "news"]


def test_model_identity_of_a_folder_hashes_its_weights(tiny_llama_dir):
    weights = hashlib.sha256((tiny_llama_dir / "model.safetensors").read_bytes()).hexdigest()
    assert model_identity(tiny_llama_dir) == (str(tiny_llama_dir), f"sha256:{weights}")


def fake_result(benchmark, mode, n, split, weighted, unparseable=0):
    labels = list(SCHEMES["3"])
    cls = {"precision": 0.5, "recall": 0.25, "f1": 1 / 3, "support": n // 3}
    return {"model": "demo-model", "model_hash": "sha256:abc", "benchmark": benchmark, "dataset": "d", "split": split,
            "data_sha256": "f" * 64, "scheme": "3", "mode": mode, "n": n, "seconds": 10.0, "items_per_second": 2.5,
            "versions": {}, "created": "2026-01-01T00:00:00+00:00",
            "metrics": {"accuracy": 0.5, "macro_f1": 0.4, "weighted_f1": weighted, "labels": labels,
                        "per_class": {lab: cls for lab in labels},
                        "confusion_matrix": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
                        "unparseable": unparseable, "unparseable_by_label": {"negative": unparseable, "neutral": 0,
                                                                              "positive": 0}}}


def test_summary_tables_and_published_references(tmp_path):
    (tmp_path / "tfns-3-score.json").write_text(json.dumps(fake_result("tfns", "score", 2388, "validation", 0.61)))
    (tmp_path / "tfns-3-generate.json").write_text(
        json.dumps(fake_result("tfns", "generate", 100, "validation, sample of 100 rows (seed 42)", 0.55, 7)))
    (tmp_path / "speed.json").write_text(json.dumps({"device": "cpu", "rows": []}))  # not a results file
    text = write_summary(tmp_path).read_text()
    assert "| TFNS | 3 | score | 2388 | 0.500 | 0.400 | 0.610 | 0 | 2.5 |" in text
    assert "| TFNS | 3 | generate | 100 | 0.500 | 0.400 | 0.550 | 7 | 2.5 |" in text
    assert "| **demo-model** (score) | – | – | 0.610 | – | measured here |" in text
    assert "| **demo-model** (generate) | – | – | 0.550† | – | measured here |" in text
    refs = load_references()
    assert len(refs["models"]) >= 5
    for entry in refs["models"]:
        assert f"| {entry['name']} |" in text and "reported elsewhere" in entry["note"]
    assert ("| FinGPT v3.3 (Llama-2-13B + LoRA) | 0.882 | 0.874 | 0.903 | 0.643 | "
            "AI4Finance-Foundation/FinGPT, fingpt/FinGPT_Benchmark (reported elsewhere) |") in text
    assert "**reported elsewhere**" in text and "† measured on a subset" in text
    assert "![confusion matrix of tfns-3-generate](tfns-3-generate.png)" in text


def test_summary_errors_name_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no finsent eval results"):
        write_summary(tmp_path)
    (tmp_path / "tfns-3-score.json").write_text(json.dumps(fake_result("tfns", "score", 10, "validation", 0.5)))
    with pytest.raises(FileNotFoundError, match="reference scores not found"):
        write_summary(tmp_path, references=tmp_path / "nope.yaml")


def test_confusion_plot_with_unparseable_column(tmp_path):
    path = plot_confusion(fake_result("tfns", "generate", 30, "validation", 0.5, unparseable=4), tmp_path / "c.png")
    import matplotlib.image

    height, width = matplotlib.image.imread(path).shape[:2]
    assert width > 300 and height > 300


def test_cli_eval_and_its_errors(tmp_path, tiny_llama_dir, tweets_csv, capsys):
    from finsent.cli import main

    out = tmp_path / "cli"
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"tfns:{tweets_csv}", "--limit", "4",
                 "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "summary.md", "tfns-3-score.json", "tfns-3-score.png",
                                                      "tfns-3-score.predictions.jsonl"]  # MARKER: finsent wrote it
    assert json.loads((out / "tfns-3-score.json").read_text())["n"] == 4
    assert "tfns-3-score" in capsys.readouterr().out
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", "fqa", "--out", str(out)]) == 2
    assert "unknown benchmark 'fqa'" in capsys.readouterr().err
    assert main(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"tfns:{tweets_csv}", "--scheme", "7",
                 "--out", str(out)]) == 2
    assert "TFNS has no 7-class labels" in capsys.readouterr().err


def test_readme_commands_parse_and_name_real_inputs():
    """Every `finsent eval` line of eval/README.md parses, names known benchmarks and existing paths."""
    import shlex

    from finsent.cli import build_parser
    from finsent.cli.evaluation import _eval_command
    from finsent.core.paths import REPO_ROOT
    from finsent.evaluation.benchmarks import parse_benchmark_arg

    lines = [x for x in (REPO_ROOT / "eval" / "README.md").read_text().splitlines() if x.startswith("finsent eval")]
    assert len(lines) >= 3
    for line in lines:
        args = build_parser().parse_args(shlex.split(line)[1:])
        assert args.func is _eval_command
        for spec in args.benchmark or []:
            bench = parse_benchmark_arg(spec)
            assert bench.path is None or (REPO_ROOT / bench.path).exists(), line
        assert args.recipe is None or (REPO_ROOT / args.recipe).is_file(), line
