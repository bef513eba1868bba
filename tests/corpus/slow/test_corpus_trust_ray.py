"""``finsent classify --engine ray`` writes what the local engine writes for the cases of issue 30 (a Ray cluster
on 2 local CPUs, the tiny random Llama)."""

from __future__ import annotations

import json

import pytest
from corpus_checks import OURS, assert_predictions, expected
from corpus_rows import read_csv, read_jsonl

from finsent.corpus.engine import classify_corpus

# --- the Ray engine fails as fast and as cleanly as the local engine ------------------------------------------


def test_ray_writes_what_the_local_engine_writes_for_these_cases(tmp_path, tiny, tiny_llama_dir):
    """One real Ray run: formula cells escaped, JSON types as the local reader sees them, a bad row skipped."""
    ray = pytest.importorskip("ray")
    from finsent.corpus.ray_engine import classify_with_ray

    src = tmp_path / "in.jsonl"
    rows = [{"id": 1, "text": "=Acme beats", "day": "2024-01-02"}, {"id": 2, "text": " ", "day": "2024-01-03"},
            {"id": 3, "text": "-Zenith slumps", "day": None}]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        classify_with_ray(src, tmp_path / "ray.csv", model=tiny_llama_dir, num_workers=1, cpus_per_worker=1,
                          progress=False)
        classify_with_ray(src, tmp_path / "ray.parquet", model=tiny_llama_dir, num_workers=1, cpus_per_worker=1,
                          progress=False)
    finally:
        ray.shutdown()
    classify_corpus(src, tmp_path / "local.csv", model=tiny_llama_dir, classifier=tiny, progress=False)
    header, got = read_csv(tmp_path / "ray.csv")
    assert header == read_csv(tmp_path / "local.csv")[0] == ["id", "text", "day", *OURS]
    assert [[r["id"], r["text"], r["day"]] for r in got] == [["1", "'=Acme beats", "2024-01-02"],
                                                             ["3", "'-Zenith slumps", ""]]
    assert [r["predicted_label"] for r in got] == [r["predicted_label"] for r in read_csv(tmp_path / "local.csv")[1]]
    assert_predictions(got, expected(tiny, ["=Acme beats", "-Zenith slumps"]))
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "ray.parquet")
    assert [str(t) for t in table.schema.types][:3] == ["int64", "string", "string"]
    assert table.select(["id", "text", "day"]).to_pylist() == [
        {"id": 1, "text": "=Acme beats", "day": "2024-01-02"}, {"id": 3, "text": "-Zenith slumps", "day": None}]
    assert read_jsonl(tmp_path / "ray.csv.errors.jsonl") == [
        {"row": 2, "where": "input row 2", "problem": "text is empty (or only whitespace): nothing to classify"}]
