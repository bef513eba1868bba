"""Benchmark loading: each FinGPT schema from small local files, FinGPT's split, and clear errors."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from finsent.core.labels import SCHEMES
from finsent.evaluation.benchmarks import (
    BenchmarkDataError,
    DataNotAvailableError,
    fingpt_test_indices,
    load_benchmark,
    parse_benchmark_arg,
)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_csv(path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_fpb_jsonl_with_string_labels(tmp_path):
    path = write_jsonl(tmp_path / "fpb.jsonl", [
        {"sentence": "Profit rose 12 % .", "label": "positive"},
        {"sentence": "The plant is in Oulu .", "label": "neutral"},
        {"sentence": "Sales fell sharply .", "label": "negative"},
    ])
    data = load_benchmark("fpb", path)
    assert data.labels == ["positive", "neutral", "negative"]
    assert [r.kind for r in data.rows] == ["news"] * 3
    assert data.dataset == str(path) and data.split == "file as given" and data.n == 3


def test_fpb_csv_with_integer_labels(tmp_path):
    path = write_csv(tmp_path / "fpb.csv", ["sentence", "label"], [["a", 0], ["b", 1], ["c", 2]])
    assert load_benchmark("fpb", path).labels == ["negative", "neutral", "positive"]


def test_fiqa_score_boundaries_and_instruction_word(tmp_path):
    scores = [-0.5, -0.1000001, -0.1, 0.0, 0.0999, 0.1, 0.8]
    rows = [{"sentence": f"post {i}", "sentiment_score": s, "format": "post"} for i, s in enumerate(scores)]
    rows.append({"sentence": "a headline", "sentiment_score": 0.3, "format": "headline"})
    data = load_benchmark("fiqa", write_jsonl(tmp_path / "fiqa.jsonl", rows))
    assert data.labels == ["negative", "negative", "neutral", "neutral", "neutral", "positive", "positive",
                           "positive"]
    assert [r.kind for r in data.rows] == ["tweet"] * 7 + ["news"]


def test_tfns_integer_codes(tmp_path):
    path = write_csv(tmp_path / "tfns.csv", ["text", "label"], [["$X cut", 0], ["$Y up", 1], ["$Z meh", 2]])
    data = load_benchmark("tfns", path)
    assert data.labels == ["negative", "positive", "neutral"]
    assert {r.kind for r in data.rows} == {"tweet"}


def test_real_tfns_validation_file(shared_data):
    data = load_benchmark("tfns", shared_data / "tfns" / "sent_valid.csv")
    assert data.n == 2388
    assert Counter(data.labels) == {"neutral": 1566, "positive": 475, "negative": 347}
    assert any("\n" in r.text for r in data.rows)  # quoted tweets spanning lines survive the CSV parser


def test_nwgi_seven_classes_and_coarse(tmp_path):
    rows = [{"news": f"n{i}", "label": lab} for i, lab in enumerate(
        ["strong negative", "moderately positive", "mildly negative", "mildly positive", "neutral"])]
    path = write_jsonl(tmp_path / "nwgi.jsonl", rows)
    assert load_benchmark("nwgi", path, scheme="7").labels == [r["label"] for r in rows]
    assert load_benchmark("nwgi", path, scheme="3").labels == ["negative", "positive", "neutral", "neutral",
                                                                "neutral"]


def test_finsent_uses_coarse_for_three_classes_and_row_kinds(tmp_path):
    rows = [
        {"id": "a", "text": "Acme soars", "label": "strong positive", "coarse": "positive", "kind": "news",
         "topic": "x"},
        {"id": "b", "text": "$ACME dips", "label": "mildly negative", "coarse": "neutral", "kind": "tweet",
         "topic": "x"},
    ]
    path = write_jsonl(tmp_path / "finsent.jsonl", rows)
    assert load_benchmark("finsent", path, scheme="3").labels == ["positive", "neutral"]
    seven = load_benchmark("finsent", path, scheme="7")
    assert seven.labels == ["strong positive", "mildly negative"]
    assert [r.kind for r in seven.rows] == ["news", "tweet"]


def test_shipped_finsent_test_set_loads_by_default():
    data = load_benchmark("finsent", scheme="7")
    assert data.n > 0 and data.dataset == "data/finsent-headlines/test.jsonl"
    assert set(data.labels) <= set(SCHEMES["7"]) and {r.kind for r in data.rows} <= {"news", "tweet"}


def test_hash_identifies_the_rows_and_limit_samples_reproducibly(shared_data):
    path = shared_data / "tfns" / "sent_valid.csv"
    a, b = load_benchmark("tfns", path, limit=40), load_benchmark("tfns", path, limit=40)
    full = load_benchmark("tfns", path)
    assert a.n == 40 and a.rows == b.rows and a.data_sha256 == b.data_sha256
    assert a.data_sha256 != full.data_sha256 and len(a.data_sha256) == 64
    assert "sample of 40 rows (seed 42)" in a.split
    assert len(set(a.labels)) == 3  # a seeded sample, not the file's first (all-negative) rows
    positions = [full.rows.index(r) for r in a.rows]
    assert positions == sorted(positions)


def test_even_limit_takes_every_nth_row_of_a_label_clustered_file(shared_data):
    path = shared_data / "tfns" / "sent_valid.csv"
    full = load_benchmark("tfns", path)
    even = load_benchmark("tfns", path, limit=9, sample="even")
    assert even.rows == [full.rows[i * full.n // 9] for i in range(9)]
    assert full.labels[:29] == ["negative"] * 29  # why an even spread: the file comes in runs of one label
    assert even.labels == ["negative", "neutral", "neutral", "positive", "neutral", "neutral", "negative",
                           "neutral", "neutral"]
    assert "9 evenly spaced rows" in even.split
    with pytest.raises(ValueError, match="sample must be 'random' or 'even'"):
        load_benchmark("tfns", path, limit=9, sample="first")


def test_fingpt_split_matches_datasets_train_test_split():
    import datasets

    ds = datasets.Dataset.from_dict({"i": list(range(4846))})
    expected = ds.train_test_split(seed=42)["test"]["i"]  # FPB: default test_size 0.25
    assert fingpt_test_indices(4846, 0.25) == expected and len(expected) == 1212
    fiqa = ds.select(range(1213)).train_test_split(0.226, seed=42)["test"]["i"]
    assert fingpt_test_indices(1213, 0.226) == fiqa and len(fiqa) == 275


def test_hub_layout_folder_goes_through_the_hub_loader_and_fingpt_split(tmp_path):
    # FPB's Hub dataset has one "train" split; FinGPT evaluates its train_test_split(seed=42) test part.
    folder = tmp_path / "fpb_repo"
    folder.mkdir()
    names = ["negative", "neutral", "positive"]
    write_csv(folder / "train.csv", ["sentence", "label"], [[f"s{i}", i % 3] for i in range(20)])
    data = load_benchmark("fpb", folder)
    picked = fingpt_test_indices(20, 0.25)
    assert [r.text for r in data.rows] == [f"s{i}" for i in picked] and data.n == 5
    assert data.labels == [names[i % 3] for i in picked]
    assert "train_test_split(test_size=0.25, seed=42) test part" in data.split


def test_hub_layout_folder_missing_a_split(tmp_path):
    folder = tmp_path / "tfns_repo"
    folder.mkdir()
    write_csv(folder / "train.csv", ["text", "label"], [["a", 0]])
    with pytest.raises(BenchmarkDataError, match=r"split\(s\) \['validation'\] missing"):
        load_benchmark("tfns", folder)


@pytest.mark.parametrize("rows, problem", [
    ([{"sentence": "ok", "label": "positive"}, {"sentence": "no label"}], r"line 2: missing field 'label'"),
    ([{"sentence": "ok", "label": "bullish"}], r"line 1: FPB: unknown label 'bullish'"),
    ([{"sentence": "   ", "label": "neutral"}], r"line 1: field 'sentence': text is empty"),
    ([{"sentence": 42, "label": "neutral"}], r"line 1: field 'sentence': text must be a string"),
    ([{"sentence": "a \ud800", "label": "neutral"}], r"line 1: field 'sentence': text is not valid Unicode"),
])
def test_malformed_rows_name_file_row_and_problem(tmp_path, rows, problem):
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(BenchmarkDataError, match=problem) as err:
        load_benchmark("fpb", path)
    assert str(path) in str(err.value)


def test_bad_json_line_and_bad_csv_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"sentence": "a", "label": 1}\n{"sentence": "b", label}\n')
    with pytest.raises(BenchmarkDataError, match=r"bad.jsonl: line 2: invalid JSON"):
        load_benchmark("fpb", path)
    short = tmp_path / "short.csv"
    short.write_text("text,label\nfine,1\nonly-text\n")
    with pytest.raises(BenchmarkDataError, match=r"short.csv: row 2 \(line 3\): 1 fields, the header has 2"):
        load_benchmark("tfns", short)


def test_fiqa_bad_score_and_format(tmp_path):
    path = write_jsonl(tmp_path / "fiqa.jsonl", [{"sentence": "x", "sentiment_score": "high"}])
    with pytest.raises(BenchmarkDataError, match="line 1: FiQA-SA: sentiment score 'high' is not a number"):
        load_benchmark("fiqa", path)
    path = write_jsonl(tmp_path / "fiqa2.jsonl", [{"sentence": "x", "sentiment_score": 0.5, "format": "blog"}])
    with pytest.raises(BenchmarkDataError, match="unknown format 'blog'"):
        load_benchmark("fiqa", path)


def test_wrong_benchmark_scheme_path_or_type(tmp_path):
    with pytest.raises(BenchmarkDataError, match="unknown benchmark 'fqa'"):
        load_benchmark("fqa")
    with pytest.raises(BenchmarkDataError, match="TFNS has no 7-class labels"):
        load_benchmark("tfns", tmp_path / "x.csv", scheme="7")
    with pytest.raises(DataNotAvailableError, match="no such file or folder"):
        load_benchmark("tfns", tmp_path / "missing.csv")
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(BenchmarkDataError, match="unsupported file type '.txt'"):
        load_benchmark("tfns", tmp_path / "data.txt")
    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(BenchmarkDataError, match="has no rows"):
        load_benchmark("tfns", empty)


def test_benchmark_argument_parsing():
    b = parse_benchmark_arg("tfns:../shared/data/tfns/sent_valid.csv", "3", 40)
    assert (b.name, b.path, b.scheme, b.limit) == ("tfns", "../shared/data/tfns/sent_valid.csv", "3", 40)
    assert parse_benchmark_arg("nwgi", "7").path is None
    with pytest.raises(BenchmarkDataError, match="empty path"):
        parse_benchmark_arg("tfns:")
