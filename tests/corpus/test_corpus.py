"""``finsent classify --input/--output``: a corpus file to file (finsent.corpus.engine) and on Ray Data
(finsent.corpus.ray_engine).

Real files on disk, exact assertions; the tiny random Llama (real SmolLM2 tokenizer) makes labels
deterministic and fast; a killed run, the real SmolLM2 and Ray are in tests/corpus/slow/test_corpus_runs.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from corpus_checks import OURS, Interrupting, assert_predictions, expected
from corpus_rows import headline, read_csv, read_jsonl, write_csv

from finsent.cli import main
from finsent.core.errors import UsageError
from finsent.core.outputs import OutputError
from finsent.core.prompts import InputError
from finsent.corpus.engine import classify_corpus
from finsent.corpus.inputs import parts_dir
from finsent.corpus.job import output_columns

# --- round trips: every input column kept, in order -----------------------------------------------------------


def test_csv_round_trip_keeps_every_column_and_row_order(tmp_path, tiny, tiny_llama_dir):
    texts = [headline(i) for i in range(23)]
    awkward = ['comma, "quote"', "two\nlines", "", "ünïcödé"]
    rows = [[str(i), texts[i], awkward[i % 4]] for i in range(23)]
    src = write_csv(tmp_path / "in.csv", ["id", "text", "note"], rows)
    result = classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, classifier=tiny, chunk_rows=5,
                             batch_size=3, progress=False)
    header, out = read_csv(tmp_path / "out.csv")
    assert header == ["id", "text", "note", *OURS]
    assert [[r["id"], r["text"], r["note"]] for r in out] == rows
    assert_predictions(out, expected(tiny, texts))
    assert (result.rows, result.written, result.skipped, result.errors_path) == (23, 23, 0, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]  # parts folder gone


def test_jsonl_round_trip_keeps_values_and_types(tmp_path, tiny, tiny_llama_dir):
    texts = [headline(i) for i in range(9)]
    rows = [{"id": i, "text": texts[i], "meta": {"src": "wire", "tags": ["a", i]}, "score": i / 4, "ok": i % 2 == 0}
            for i in range(9)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    classify_corpus(src, tmp_path / "out.jsonl", model=tiny_llama_dir, classifier=tiny, chunk_rows=4, progress=False)
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [list(r) for r in out] == [["id", "text", "meta", "score", "ok", *OURS]] * 9
    assert [{k: r[k] for k in ("id", "text", "meta", "score", "ok")} for r in out] == rows
    assert_predictions(out, expected(tiny, texts))


def test_parquet_round_trip_keeps_arrow_types(tmp_path, tiny, tiny_llama_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = [headline(i) for i in range(11)]
    table = pa.table({"id": pa.array(range(11), pa.int32()), "text": texts,
                      "price": pa.array([i * 1.5 for i in range(11)], pa.float32())})
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=4)
    classify_corpus(tmp_path / "in.parquet", tmp_path / "out.parquet", model=tiny_llama_dir, classifier=tiny,
                    chunk_rows=3, progress=False)
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.names == ["id", "text", "price", *OURS]
    assert [str(t) for t in out.schema.types] == ["int32", "string", "float", "string", "double", "double", "double"]
    assert out.select(["id", "text", "price"]).equals(table)
    assert_predictions(out.to_pylist(), expected(tiny, texts))


def test_folder_of_shards_to_another_format_in_name_order(tmp_path, tiny, tiny_llama_dir):
    shards = tmp_path / "shards"
    shards.mkdir()
    texts = [headline(i) for i in range(12)]
    write_csv(shards / "b.csv", ["id", "text"], [[str(i), texts[i]] for i in range(7, 12)])
    write_csv(shards / "a.csv", ["id", "text"], [[str(i), texts[i]] for i in range(7)])
    (shards / ".hidden").write_text("skipped")
    classify_corpus(shards, tmp_path / "out.jsonl", model=tiny_llama_dir, classifier=tiny, chunk_rows=4,
                    progress=False)
    out = read_jsonl(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [str(i) for i in range(12)]
    assert_predictions(out, expected(tiny, texts))


def test_7_classes_name_one_column_per_label_with_underscores(tmp_path, tiny, tiny_llama_dir):
    src = write_csv(tmp_path / "in.csv", ["text"], [["Acme beats estimates"], ["Acme misses"]])
    classify_corpus(src, tmp_path / "out.csv", scheme="7", model=tiny_llama_dir, classifier=tiny, progress=False)
    header, out = read_csv(tmp_path / "out.csv")
    assert header == ["text", *output_columns("7")] == [
        "text", "predicted_label", "p_strong_negative", "p_moderately_negative", "p_mildly_negative", "p_neutral",
        "p_mildly_positive", "p_moderately_positive", "p_strong_positive"]
    want = tiny.classify(["Acme beats estimates", "Acme misses"], "7")
    assert [r["predicted_label"] for r in out] == [p.label for p in want]


# --- rows that cannot be classified -----------------------------------------------------------------------------


def bad_csv(path: Path) -> Path:
    path.write_bytes(b"id,text\n1,Acme beats estimates\n2,   \n3,Acme misses,extra\n4,caf\xff cr\xc3\xa8me\n"
                     b"5,Acme holds\n")
    return path


def test_on_error_skip_reports_row_numbers_and_lists_them(tmp_path, tiny, tiny_llama_dir, caplog):
    src = bad_csv(tmp_path / "in.csv")
    result = classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, classifier=tiny, chunk_rows=2,
                             progress=False)
    _, out = read_csv(tmp_path / "out.csv")
    assert [r["id"] for r in out] == ["1", "5"]
    assert_predictions(out, expected(tiny, ["Acme beats estimates", "Acme holds"]))
    errors = read_jsonl(tmp_path / "out.csv.errors.jsonl")
    assert errors == [
        {"row": 2, "where": f"{src}: row 2 (line 3)",
         "problem": "text is empty (or only whitespace): nothing to classify"},
        {"row": 3, "where": f"{src}: row 3 (line 4)", "problem": "malformed row: 3 fields, the header has 2"},
        {"row": 4, "where": f"{src}: row 4 (line 5)",
         "problem": "malformed row: not UTF-8 text (byte 0xff in the column 'text')"},
    ]
    assert (result.written, result.skipped, result.errors_path) == (2, 3, tmp_path / "out.csv.errors.jsonl")
    warned = [r.getMessage() for r in caplog.records if r.name == "finsent.corpus.job" and r.levelname == "WARNING"]
    assert warned[:3] == [f"skipped {e['where']}: {e['problem']}" for e in errors]


def test_jsonl_bad_rows_are_skipped_one_by_one(tmp_path, tiny, tiny_llama_dir):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Acme beats"}\n{"text": 7}\n{not json\n{"title": "no text"}\n{"text": "\\ud800x"}\n'
                   '\n{"text": "Acme holds"}\n', encoding="utf-8")
    classify_corpus(src, tmp_path / "out.jsonl", model=tiny_llama_dir, classifier=tiny, progress=False)
    assert [r["text"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["Acme beats", "Acme holds"]
    assert [(e["row"], e["where"], e["problem"]) for e in read_jsonl(tmp_path / "out.jsonl.errors.jsonl")] == [
        (2, f"{src}: line 2", "text must be a string, got int: 7"),
        (3, f"{src}: line 3", "malformed row: invalid JSON (Expecting property name enclosed in double quotes)"),
        (4, f"{src}: line 4", "no 'text' field"),
        (5, f"{src}: line 5", "malformed row: not valid Unicode (lone surrogate '\\ud800' in the column 'text')"),
    ]


def test_on_error_fail_stops_at_the_first_bad_row(tmp_path, tiny, tiny_llama_dir):
    src = bad_csv(tmp_path / "in.csv")
    with pytest.raises(InputError) as err:
        classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, classifier=tiny, chunk_rows=1,
                        on_error="fail", progress=False)
    assert str(err.value) == (f"{src}: row 2 (line 3): text is empty (or only whitespace): nothing to classify "
                              "(nothing was written for this chunk; --on-error skip skips such rows and lists them)")
    assert not (tmp_path / "out.csv").exists()
    parts = sorted(p.name for p in parts_dir(tmp_path / "out.csv").glob("part-*"))
    assert parts == ["part-000000000000-000000000001.csv"]


def test_cli_on_error_fail_is_one_line_and_exit_2(tmp_path, tiny_llama_dir, capsys):
    src = bad_csv(tmp_path / "in.csv")
    code = main(["classify", "--input", str(src), "--output", str(tmp_path / "out.jsonl"), "--model",
                 str(tiny_llama_dir), "--on-error", "fail"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[-1] == (f"finsent classify: error: {src}: row 2 (line 3): text is empty (or only "
                                    "whitespace): nothing to classify (nothing was written for this chunk; "
                                    "--on-error skip skips such rows and lists them)")


# --- refusals before any work ------------------------------------------------------------------------------------


@pytest.mark.parametrize("clash", ["predicted_label", "p_neutral"])
def test_input_column_that_collides_with_an_output_column_is_refused(tmp_path, tiny_llama_dir, clash):
    src = write_csv(tmp_path / "in.csv", ["text", clash], [["Acme beats", "x"]])
    with pytest.raises(UsageError) as err:
        classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, progress=False)
    assert str(err.value) == (f"the input has column(s) '{clash}', which classify adds: rename them in the input "
                              "(nothing was written)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_missing_text_column_names_the_columns(tmp_path, tiny_llama_dir, capsys):
    src = write_csv(tmp_path / "in.csv", ["id", "headline"], [["1", "Acme beats"]])
    code = main(["classify", "--input", str(src), "--output", str(tmp_path / "o.csv"), "--model", str(tiny_llama_dir)])
    assert code == 2
    assert capsys.readouterr().err == ("finsent classify: error: the input has no column 'text' (its columns: 'id', "
                                       "'headline'): name the text column with --text-column\n")
    code = main(["classify", "--input", str(src), "--output", str(tmp_path / "o.csv"), "--model", str(tiny_llama_dir),
                 "--text-column", "headline"])
    assert code == 0 and read_csv(tmp_path / "o.csv")[0] == ["id", "headline", *OURS]


def test_existing_output_not_written_by_finsent_is_refused_without_overwrite(tmp_path, tiny, tiny_llama_dir):
    src = write_csv(tmp_path / "in.csv", ["text"], [["Acme beats"]])
    out = tmp_path / "out.csv"
    out.write_text("someone's results\n")
    with pytest.raises(OutputError) as err:
        classify_corpus(src, out, model=tiny_llama_dir, classifier=tiny, progress=False)
    assert str(err.value) == (f"output {out} already exists: pass --overwrite to replace it (it is replaced only "
                              "when the new output is complete), or choose another name")
    assert out.read_text() == "someone's results\n" and not parts_dir(out).exists()
    classify_corpus(src, out, model=tiny_llama_dir, classifier=tiny, overwrite=True, progress=False)
    assert read_csv(out)[1][0]["text"] == "Acme beats"


def test_a_parts_folder_finsent_did_not_write_is_refused(tmp_path, tiny_llama_dir):
    src = write_csv(tmp_path / "in.csv", ["text"], [["Acme beats"]])
    parts = parts_dir(tmp_path / "out.csv")
    parts.mkdir()
    (parts / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="was not written by finsent classify"):
        classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, progress=False)
    assert (parts / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("argv, message", [
    (["--output", "o.csv", "x"], "--output go(es) with --input (classify a corpus file to file)"),
    (["--input", "in.csv"], "--input needs --output (a .csv, .jsonl or .parquet file)"),
    (["--input", "in.csv", "--output", "o.csv", "--mode", "generate"],
     "--input classifies by label scoring only (--mode score): it writes every label's probability"),
    (["--input", "in.csv", "--output", "o.txt"], "output o.txt: unsupported file type '.txt': end the name with "
                                                  ".csv, .jsonl, .parquet"),
    (["--input", "in.csv", "--output", "o.csv", "--workers", "2"], "--workers goes with --engine ray"),
])
def test_cli_corpus_options_are_checked(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "in.csv", ["text"], [["Acme"]])
    assert main(["classify", *argv]) == 2
    assert capsys.readouterr().err == f"finsent classify: error: {message}\n"


# --- resume ---------------------------------------------------------------------------------------------------


def test_interrupted_run_resumes_and_refuses_a_changed_model_or_input(tmp_path, tiny, tiny_llama_dir,
                                                                      smollm2_dir, caplog):
    texts = [headline(i) for i in range(10)]
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[str(i), t] for i, t in enumerate(texts)])
    out = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        classify_corpus(src, out, model=tiny_llama_dir, classifier=Interrupting(tiny, 3), chunk_rows=3,
                        progress=False)
    parts = parts_dir(out)
    assert sorted(p.name for p in parts.glob("part-*")) == ["part-000000000000-000000000003.csv",
                                                            "part-000000000003-000000000006.csv"]
    assert not out.exists()

    with pytest.raises(UsageError) as err:
        classify_corpus(src, out, model=smollm2_dir, chunk_rows=3, progress=False)
    assert str(err.value) == (f"{out}: the unfinished run in {parts} used another model: run it with its own "
                              "settings to finish it, or pass --overwrite to discard it and start again")
    with pytest.raises(UsageError, match="used another scheme: "):
        classify_corpus(src, out, model=tiny_llama_dir, scheme="7", progress=False)
    with open(src, "a", encoding="utf-8") as handle:
        handle.write("10,One more row\n")
    with pytest.raises(UsageError, match="used another input: "):
        classify_corpus(src, out, model=tiny_llama_dir, progress=False)
    write_csv(src, ["id", "text"], [[str(i), t] for i, t in enumerate(texts)])
    # the size is back, the modification time is not: still another input
    with pytest.raises(UsageError, match="used another input: "):
        classify_corpus(src, out, model=tiny_llama_dir, progress=False)

    # --overwrite discards the stale parts; an interrupted run then resumes where it stopped
    with pytest.raises(KeyboardInterrupt):
        classify_corpus(src, out, model=tiny_llama_dir, classifier=Interrupting(tiny, 2), chunk_rows=4,
                        overwrite=True, progress=False)
    assert sorted(p.name for p in parts.glob("part-*")) == ["part-000000000000-000000000004.csv"]
    counting = Interrupting(tiny, 0)
    caplog.clear()
    with caplog.at_level("INFO"):
        result = classify_corpus(src, out, model=tiny_llama_dir, classifier=counting, chunk_rows=4, progress=False)
    assert f"resuming {out} at row 5 of 10" in caplog.messages
    assert counting.calls == 2 and result.resumed_at == 4 and result.classified == 6
    _, rows = read_csv(out)
    assert [r["id"] for r in rows] == [str(i) for i in range(10)]
    assert_predictions(rows, expected(tiny, texts))
    assert not parts.exists()


@pytest.mark.parametrize("stop_at", ["before the rename", "after the rename"])
def test_a_run_killed_while_finishing_completes_on_the_next_run(tmp_path, tiny, tiny_llama_dir, monkeypatch, stop_at):
    import finsent.corpus.job as corpus

    src = write_csv(tmp_path / "in.csv", ["id", "text"], [["1", "Acme beats"], ["2", " "], ["3", "Acme misses"]])
    out = tmp_path / "out.csv"

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        if stop_at == "before the rename":
            patch.setattr(corpus.CorpusJob, "_install", stop)
        else:
            patch.setattr(corpus.shutil, "rmtree", stop)
        with pytest.raises(KeyboardInterrupt):
            classify_corpus(src, out, model=tiny_llama_dir, classifier=tiny, chunk_rows=2, progress=False)
    assert out.exists() == (stop_at == "after the rename") and parts_dir(out).is_dir()
    result = classify_corpus(src, out, model=tiny_llama_dir, classifier=Interrupting(tiny, 1), progress=False)
    assert (result.rows, result.written, result.skipped, result.classified) == (3, 2, 1, 0)
    assert [r["id"] for r in read_csv(out)[1]] == ["1", "3"]
    assert [e["row"] for e in read_jsonl(tmp_path / "out.csv.errors.jsonl")] == [2]
    assert not parts_dir(out).exists()


def test_two_runs_on_one_output_at_once_are_refused(tmp_path, tiny_llama_dir):
    import fcntl

    src = write_csv(tmp_path / "in.csv", ["text"], [["Acme"]])
    parts = parts_dir(tmp_path / "out.csv")
    parts.mkdir()
    with open(parts / "lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(UsageError) as err:
            classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, progress=False)
    assert str(err.value) == f"another finsent classify is writing {parts} right now: wait for it to end"
