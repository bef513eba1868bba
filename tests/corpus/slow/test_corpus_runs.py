"""``finsent classify --input/--output``, the slow part: a real run killed and resumed in a subprocess, the real
SmolLM2 on a corpus, and the Ray engine row for row against the local one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from corpus_checks import OURS, P3, Interrupting, assert_predictions
from corpus_rows import headline, read_csv, read_jsonl, write_csv

from finsent.cli import main
from finsent.core.classify import FinSentClassifier
from finsent.corpus.engine import classify_corpus
from finsent.corpus.inputs import parts_dir

# --- resume ---------------------------------------------------------------------------------------------------


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "finsent.cli", "classify", *map(str, args)]


def test_killed_run_resumes_with_no_row_lost_or_duplicated(tmp_path, tiny_llama_dir):
    """SIGKILL a real run once its first parts are on disk, run the same command again: the same output."""
    n = 600
    texts = [headline(i) for i in range(n)]
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[str(i), t] for i, t in enumerate(texts)])
    args = ["--model", tiny_llama_dir, "--chunk-rows", 8, "--batch-size", 4]
    out = tmp_path / "out.jsonl"
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(cli("--input", src, "--output", out, *args), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    parts = parts_dir(out)
    deadline = time.monotonic() + 240
    try:
        while len(list(parts.glob("part-*.jsonl"))) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no part file after 240 s"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = len(list(parts.glob("part-*.jsonl")))
    assert proc.returncode == -signal.SIGKILL and not out.exists() and done_before * 8 < n

    resumed = subprocess.run(cli("--input", src, "--output", out, *args), env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {out} at row " in resumed.stderr
    first = int(resumed.stderr.split(f"resuming {out} at row ")[1].split()[0])
    assert first - 1 >= done_before * 8 and (first - 1) % 8 == 0
    assert resumed.stderr.splitlines()[-1].startswith(f"{out}: {n} rows written, ")

    # an uninterrupted run of the same command gives the same file, byte for byte
    whole = tmp_path / "whole.jsonl"
    assert main(["classify", "--input", str(src), "--output", str(whole), *map(str, args)]) == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [str(i) for i in range(n)]  # every row once, in order
    assert out.read_bytes() == whole.read_bytes()
    assert not parts.exists()


# --- the real model, once ----------------------------------------------------------------------------------------


def test_real_smollm2_corpus_matches_the_classifier(tmp_path, shared_data, smollm2_dir):
    _, rows = read_csv(shared_data / "tfns" / "sent_valid.csv")
    rows = rows[:12]
    src = write_csv(tmp_path / "in.csv", list(rows[0]), [list(r.values()) for r in rows])
    assert main(["classify", "--input", str(src), "--output", str(tmp_path / "out.parquet"), "--model", "smollm2",
                 "--kind", "tweet"]) == 0
    import pyarrow.parquet as pq

    out = pq.read_table(tmp_path / "out.parquet").to_pylist()
    clf = FinSentClassifier.from_pretrained(smollm2_dir)
    want = [{"predicted_label": p.label, **{f"p_{k}": v for k, v in p.probs.items()}}
            for p in clf.classify([r["text"] for r in rows], kind="tweet")]
    assert [{k: r[k] for k in rows[0]} for r in out] == rows
    assert_predictions(out, want)


# --- Ray Data --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_engine_matches_the_local_engine_row_for_row(tmp_path, tiny, tiny_llama_dir, ray_local):
    from finsent.corpus.ray_engine import classify_with_ray

    n = 150
    rows = [[str(i), headline(i), "two\nlines" if i == 3 else f"n{i}"] for i in range(n)]
    rows[40][1] = "  "  # skipped by both engines
    src = write_csv(tmp_path / "in.csv", ["id", "text", "note"], rows)
    classify_corpus(src, tmp_path / "local.csv", model=tiny_llama_dir, classifier=tiny, chunk_rows=32,
                    progress=False)
    result = classify_with_ray(src, tmp_path / "ray.csv", model=tiny_llama_dir, chunk_rows=32, num_workers=2,
                               cpus_per_worker=0.5, progress=False)
    assert (result.written, result.skipped) == (n - 1, 1)
    assert read_jsonl(tmp_path / "ray.csv.errors.jsonl") == [
        {"row": 41, "where": "input row 41", "problem": "text is empty (or only whitespace): nothing to classify"}]
    header, local = read_csv(tmp_path / "local.csv")
    ray_header, ray_rows = read_csv(tmp_path / "ray.csv")
    assert ray_header == header == ["id", "text", "note", *OURS]
    assert len(ray_rows) == len(local) == n - 1
    for a, b in zip(ray_rows, local):
        assert {k: a[k] for k in ("id", "text", "note", "predicted_label")} == \
               {k: b[k] for k in ("id", "text", "note", "predicted_label")}
        for col in P3:
            assert abs(float(a[col]) - float(b[col])) <= 1e-6

    # a run interrupted in the local engine resumes on Ray: every row once, the same labels
    with pytest.raises(KeyboardInterrupt):
        classify_corpus(src, tmp_path / "resumed.csv", model=tiny_llama_dir, classifier=Interrupting(tiny, 3),
                        chunk_rows=32, progress=False)
    result = classify_with_ray(src, tmp_path / "resumed.csv", model=tiny_llama_dir, chunk_rows=32, num_workers=2,
                               cpus_per_worker=0.5, progress=False)
    assert (result.resumed_at, result.written, result.skipped) == (64, n - 1, 1)
    _, resumed = read_csv(tmp_path / "resumed.csv")
    assert [(r["id"], r["predicted_label"]) for r in resumed] == [(r["id"], r["predicted_label"]) for r in local]

    # parquet shards in, parquet out: the same rows and arrow types as the local engine
    import pyarrow as pa
    import pyarrow.parquet as pq

    shards = tmp_path / "shards"
    shards.mkdir()
    for k in range(3):
        pq.write_table(pa.table({"id": pa.array(range(k * 20, k * 20 + 20), pa.int64()),
                                 "text": [headline(i) for i in range(k * 20, k * 20 + 20)]}), shards / f"{k}.parquet")
    classify_corpus(shards, tmp_path / "local.parquet", model=tiny_llama_dir, classifier=tiny, progress=False)
    classify_with_ray(shards, tmp_path / "ray.parquet", model=tiny_llama_dir, num_workers=2, cpus_per_worker=0.5,
                      progress=False)
    a, b = pq.read_table(tmp_path / "ray.parquet"), pq.read_table(tmp_path / "local.parquet")
    assert a.schema == b.schema
    assert a.select(["id", "text", "predicted_label"]).equals(b.select(["id", "text", "predicted_label"]))
    for col in P3:
        assert max(abs(x - y) for x, y in zip(a[col].to_pylist(), b[col].to_pylist())) <= 1e-6
