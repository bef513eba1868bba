"""``finsent classify --input/--output`` never mixes results and never writes wrong ones (issue 30).

Each test is a reproducer from the issue: formula cells, an output inside a parts folder or an input that is
the output, a resume after an edit that kept the file's size and time, a header-only CSV, parquet types that
differ between chunks, a CSV field over the csv module's limit, and the Ray engine on a bad row. Real files,
the tiny random Llama (real tokenizer), exact values.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from corpus_checks import OURS, Interrupting, assert_predictions, expected
from corpus_rows import headline, read_csv, read_jsonl, write_csv

from finsent.cli import main
from finsent.core.errors import UsageError
from finsent.core.prompts import InputError
from finsent.corpus.engine import classify_corpus
from finsent.corpus.inputs import parts_dir


class NoClassifier:
    """Stands for the model where a run must stop before any classification."""

    def classify(self, *args, **kwargs):
        raise AssertionError("nothing may be classified")


# --- one CSV-writing rule: formula cells are escaped ---------------------------------------------------------


def test_csv_output_cells_and_header_are_spreadsheet_safe(tmp_path, tiny, tiny_llama_dir):
    texts = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+Acme beats estimates", "-Zenith slumps",
             "@SUM(A1:A9) Orion swings", "Apex cuts jobs"]
    notes = ["=1+1", "-5", "ok", "\tx", "Acme =1"]
    src = write_csv(tmp_path / "in.csv", ["text", "=cmd|' /C calc'!A0"], [list(r) for r in zip(texts, notes)])
    classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, classifier=tiny, chunk_rows=2, progress=False)
    header, rows = read_csv(tmp_path / "out.csv")
    assert header == ["text", "'=cmd|' /C calc'!A0", *OURS]
    assert [[r["text"], r["'=cmd|' /C calc'!A0"]] for r in rows] == [
        ["'=HYPERLINK(\"http://evil.example\",\"click\")", "'=1+1"], ["'+Acme beats estimates", "'-5"],
        ["'-Zenith slumps", "ok"], ["'@SUM(A1:A9) Orion swings", "'\tx"], ["Apex cuts jobs", "Acme =1"]]
    assert_predictions(rows, expected(tiny, texts))  # the model still reads the texts as they were


def test_json_values_written_into_csv_are_spreadsheet_safe(tmp_path, tiny, tiny_llama_dir):
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Acme beats", "delta": -3, "f": "@x"}\n{"text": "Acme holds", "delta": 2, "f": "y"}\n',
                   encoding="utf-8")
    classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, classifier=tiny, progress=False)
    _, rows = read_csv(tmp_path / "out.csv")
    assert [(r["delta"], r["f"]) for r in rows] == [("'-3", "'@x"), ("2", "y")]


# --- an output a run would read back or mix up ------------------------------------------------------------------


def interrupted_run(tmp_path, tiny, tiny_llama_dir) -> tuple[Path, Path]:
    """in.csv (8 rows) -> out.csv killed after its first part of 4 rows: the parts folder is on disk."""
    src = write_csv(tmp_path / "in.csv", ["id", "text"], [[str(i), headline(i)] for i in range(8)])
    with pytest.raises(KeyboardInterrupt):
        classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, classifier=Interrupting(tiny, 2),
                        chunk_rows=4, progress=False)
    return src, tmp_path / "out.csv"


def test_an_output_inside_a_parts_folder_is_refused(tmp_path, tiny, tiny_llama_dir, capsys):
    src, out = interrupted_run(tmp_path, tiny, tiny_llama_dir)
    parts = parts_dir(out)
    before = sorted(p.name for p in parts.iterdir())
    other = write_csv(tmp_path / "other.csv", ["id", "text"], [["x", "Zenith misses"]])
    inside = parts / "part-000000000004-000000000008.csv"
    code = main(["classify", "--input", str(other), "--output", str(inside), "--model", str(tiny_llama_dir)])
    assert code == 2
    assert capsys.readouterr().err == (f"finsent classify: error: the output {inside} is inside {parts.resolve()}, "
                                       "the work folder of a finsent classify run: write the output elsewhere\n")
    with pytest.raises(UsageError) as err:
        classify_corpus(other, parts / "sub" / "o.jsonl", model=tiny_llama_dir, classifier=NoClassifier(),
                        progress=False)
    assert str(err.value).startswith(f"the output {parts / 'sub' / 'o.jsonl'} is inside {parts.resolve()}, ")
    assert sorted(p.name for p in parts.iterdir()) == before

    # the interrupted run then resumes with its own rows only
    result = classify_corpus(src, out, model=tiny_llama_dir, classifier=tiny, chunk_rows=4, progress=False)
    assert (result.rows, result.resumed_at, result.written) == (8, 4, 8)
    _, rows = read_csv(out)
    assert [r["id"] for r in rows] == [str(i) for i in range(8)]
    assert_predictions(rows, expected(tiny, [headline(i) for i in range(8)]))


def test_an_input_that_is_the_output_or_its_work_files_is_refused(tmp_path, tiny, tiny_llama_dir):
    src, out = interrupted_run(tmp_path, tiny, tiny_llama_dir)
    part = parts_dir(out) / "part-000000000000-000000000004.csv"
    cases = {
        part: f"the input {part} is inside {parts_dir(out).resolve()}, the work folder of a finsent classify run: "
              "classify the original input, or the finished output",
        parts_dir(out): f"the input {parts_dir(out)} is inside {parts_dir(out).resolve()}, the work folder of a "
                        "finsent classify run: classify the original input, or the finished output",
    }
    for bad_input, message in cases.items():
        with pytest.raises(UsageError) as err:
            classify_corpus(bad_input, out, model=tiny_llama_dir, classifier=NoClassifier(), progress=False)
        assert str(err.value) == message
    link = tmp_path / "link.csv"
    link.symlink_to(src)
    hard = tmp_path / "hard.csv"
    os.link(src, hard)
    for output in (link, hard):
        with pytest.raises(UsageError) as err:
            classify_corpus(src, output, model=tiny_llama_dir, classifier=NoClassifier(), progress=False)
        assert str(err.value) == f"the output {output} is the input: choose another output file"
    errors = tmp_path / "done.csv.errors.jsonl"
    errors.write_text('{"text": "Acme"}\n')
    with pytest.raises(UsageError) as err:
        classify_corpus(errors, tmp_path / "done.csv", model=tiny_llama_dir, classifier=NoClassifier(),
                        progress=False)
    assert str(err.value) == (f"the input {errors} is the skipped-rows list of the output {tmp_path / 'done.csv'}, "
                              "which this run replaces: copy it elsewhere first")
    with pytest.raises(UsageError) as err:
        classify_corpus(src, tmp_path / "x.errors.jsonl", model=tiny_llama_dir, classifier=NoClassifier(),
                        progress=False)
    assert str(err.value) == (f"the output {tmp_path / 'x.errors.jsonl'} is named like the skipped-rows list of a "
                              "finsent classify output (.errors.jsonl): choose another name")
    assert not (tmp_path / "x.errors.jsonl").exists() and src.read_text().count("\n") == 9


# --- resume checks the input's contents ---------------------------------------------------------------------------


def test_resume_refuses_an_input_edited_to_the_same_size_and_time(tmp_path, tiny, tiny_llama_dir):
    src, out = interrupted_run(tmp_path, tiny, tiny_llama_dir)
    stat = src.stat()
    edited = src.read_bytes().replace(b"Company 1 misses", b"Company 1 shines")  # row 2, in the finished part
    assert len(edited) == stat.st_size
    src.write_bytes(edited)
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (src.stat().st_size, src.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    with pytest.raises(UsageError) as err:
        classify_corpus(src, out, model=tiny_llama_dir, classifier=NoClassifier(), chunk_rows=4, progress=False)
    assert str(err.value) == (f"{out}: the unfinished run in {parts_dir(out)} used another input: run it with its own "
                              "settings to finish it, or pass --overwrite to discard it and start again")
    classify_corpus(src, out, model=tiny_llama_dir, classifier=tiny, chunk_rows=4, overwrite=True, progress=False)
    _, rows = read_csv(out)
    assert rows[1]["text"] == "Company 1 shines its outlook as analysts watch"
    assert_predictions(rows, expected(tiny, [r["text"] for r in rows]))


# --- zero rows and parquet types --------------------------------------------------------------------------------


def test_a_header_only_csv_keeps_its_columns_in_every_format(tmp_path, tiny_llama_dir):
    import pyarrow.parquet as pq

    src = tmp_path / "in.csv"
    src.write_text("id,text,note\n", encoding="utf-8")
    result = classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, classifier=NoClassifier(),
                             progress=False)
    assert (result.rows, result.written, result.skipped) == (0, 0, 0)
    assert (tmp_path / "out.csv").read_text() == "id,text,note,predicted_label,p_negative,p_neutral,p_positive\n"
    classify_corpus(src, tmp_path / "out.parquet", model=tiny_llama_dir, classifier=NoClassifier(), progress=False)
    table = pq.read_table(tmp_path / "out.parquet")
    assert table.num_rows == 0
    assert [(f.name, str(f.type)) for f in table.schema] == [
        ("id", "string"), ("text", "string"), ("note", "string"), ("predicted_label", "string"),
        ("p_negative", "double"), ("p_neutral", "double"), ("p_positive", "double")]


def test_parquet_types_are_decided_from_every_row_before_the_work(tmp_path, tiny, tiny_llama_dir):
    import pyarrow.parquet as pq

    rows = [{"id": 1, "text": "Acme beats", "day": "2024-01-02", "meta": {"a": 1}},
            {"id": 2, "text": "Acme holds", "day": None, "meta": {"a": 2}},
            {"id": 2.5, "text": "Acme misses", "day": "2024-01-03", "meta": {"b": "x"}}]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    classify_corpus(src, tmp_path / "out.parquet", model=tiny_llama_dir, classifier=tiny, chunk_rows=2,
                    progress=False)
    table = pq.read_table(tmp_path / "out.parquet")
    assert [(f.name, str(f.type)) for f in table.schema][:4] == [
        ("id", "double"), ("text", "string"), ("day", "string"), ("meta", "struct<a: int64, b: string>")]
    assert table.select(["id", "day", "meta"]).to_pylist() == [
        {"id": 1.0, "day": "2024-01-02", "meta": {"a": 1, "b": None}},
        {"id": 2.0, "day": None, "meta": {"a": 2, "b": None}},
        {"id": 2.5, "day": "2024-01-03", "meta": {"a": None, "b": "x"}}]
    assert_predictions(table.to_pylist(), expected(tiny, ["Acme beats", "Acme holds", "Acme misses"]))


@pytest.mark.parametrize("values, message", [
    ([1, 2, "A-3"], "column 'id' holds int64 ({src}: line 1) and string ({src}: line 3), which one parquet column "
                    "cannot hold: give the column one type, or write .jsonl or .csv (nothing was written)"),
    ([1, "x", 3], "column 'id' holds int64 ({src}: line 1) and string ({src}: line 2), which one parquet column "
                  "cannot hold: give the column one type, or write .jsonl or .csv (nothing was written)"),
    ([2**60 + 1, 2, 2.5], "column 'id' holds an integer beyond 2**53 ({src}: line 1) and double ({src}: line 3), "
                          "which one parquet column cannot hold exactly: give the column one type, or write .jsonl "
                          "or .csv (nothing was written)"),
])
def test_parquet_output_of_a_column_with_conflicting_types_is_refused_before_the_work(tmp_path, tiny_llama_dir,
                                                                                     values, message):
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": v, "text": f"Acme {i}"}) + "\n" for i, v in enumerate(values)),
                   encoding="utf-8")
    out = tmp_path / "out.parquet"
    with pytest.raises(UsageError) as err:
        classify_corpus(src, out, model=tiny_llama_dir, classifier=NoClassifier(), chunk_rows=2, progress=False)
    assert str(err.value) == message.format(src=src)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_a_skipped_rows_values_do_not_decide_parquet_types(tmp_path, tiny, tiny_llama_dir):
    import pyarrow.parquet as pq

    src = tmp_path / "in.jsonl"
    src.write_text('{"id": 1, "text": "Acme beats"}\n{"id": "A-2", "text": " "}\n', encoding="utf-8")
    result = classify_corpus(src, tmp_path / "out.parquet", model=tiny_llama_dir, classifier=tiny, progress=False)
    assert (result.written, result.skipped) == (1, 1)
    assert pq.read_table(tmp_path / "out.parquet").select(["id", "text"]).to_pylist() == [
        {"id": 1, "text": "Acme beats"}]


# --- a CSV field over the csv module's limit is one bad row ----------------------------------------------------


def test_a_200k_character_field_is_one_bad_row(tmp_path, tiny, tiny_llama_dir):
    big = "Acme " + "x" * 200_000
    src = write_csv(tmp_path / "in.csv", ["id", "text", "note"],
                    [["1", "Acme beats", "a"], ["2", big, "two\nlines"], ["3", "Acme holds", "b"],
                     ["4", "Zenith misses", "line\n" + "y" * 140_000]])
    result = classify_corpus(src, tmp_path / "out.csv", model=tiny_llama_dir, classifier=tiny, progress=False)
    _, rows = read_csv(tmp_path / "out.csv")
    assert [r["id"] for r in rows] == ["1", "3"]
    assert_predictions(rows, expected(tiny, ["Acme beats", "Acme holds"]))
    assert read_jsonl(tmp_path / "out.csv.errors.jsonl") == [
        {"row": 2, "where": f"{src}: row 2 (line 4)",
         "problem": "malformed row: column 'text' holds 200,005 characters, more than the 131,072 a CSV field may "
                    "hold"},
        {"row": 4, "where": f"{src}: row 4 (line 7)",
         "problem": "malformed row: column 'note' holds 140,005 characters, more than the 131,072 a CSV field may "
                    "hold"}]
    assert (result.written, result.skipped) == (2, 2)
    with pytest.raises(InputError) as err:
        classify_corpus(src, tmp_path / "fail.csv", model=tiny_llama_dir, classifier=tiny, on_error="fail",
                        progress=False)
    assert str(err.value) == (f"{src}: row 2 (line 4): malformed row: column 'text' holds 200,005 characters, more "
                              "than the 131,072 a CSV field may hold (nothing was written for this chunk; "
                              "--on-error skip skips such rows and lists them)")


# --- the Ray engine fails as fast and as cleanly as the local engine ------------------------------------------


def thirteen_rows(tmp_path, bad: str) -> Path:
    lines = ["id,text"] + [f"{i},Company {i} beats its outlook" for i in range(13)]
    lines[6] = bad
    path = tmp_path / "in.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("on_error", ["skip", "fail"])
def test_ray_refuses_a_malformed_row_before_starting(tmp_path, tiny_llama_dir, capsys, on_error):
    ray = pytest.importorskip("ray")
    src = thirteen_rows(tmp_path, "5,Acme,extra")
    code = main(["classify", "--input", str(src), "--output", str(tmp_path / "out.csv"), "--engine", "ray",
                 "--model", str(tiny_llama_dir), "--on-error", on_error])
    assert code == 2 and not ray.is_initialized()
    assert capsys.readouterr().err.splitlines() == [
        f"finsent classify: error: {src}: row 6 (line 7): malformed row: 3 fields, the header has 2: --engine ray "
        "cannot skip such a row (its pyarrow readers stop at it or read it otherwise): fix it, or use --engine "
        "local, which skips and lists such rows"]


def test_ray_on_error_fail_names_the_first_bad_row_before_starting(tmp_path, tiny_llama_dir):
    ray = pytest.importorskip("ray")
    from finsent.corpus.ray_engine import classify_with_ray

    src = thirteen_rows(tmp_path, "5,   ")
    with pytest.raises(InputError) as err:
        classify_with_ray(src, tmp_path / "out.csv", model=tiny_llama_dir, on_error="fail", progress=False)
    assert str(err.value) == (f"{src}: row 6 (line 7): text is empty (or only whitespace): nothing to classify "
                              "(nothing was written for this chunk; --on-error skip skips such rows and lists them)")
    assert not ray.is_initialized()


def test_ray_refuses_a_json_column_with_two_types_before_starting(tmp_path, tiny_llama_dir):
    ray = pytest.importorskip("ray")
    from finsent.corpus.ray_engine import classify_with_ray

    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "Acme beats"}\n{"text": 7}\n', encoding="utf-8")
    with pytest.raises(UsageError) as err:
        classify_with_ray(src, tmp_path / "out.jsonl", model=tiny_llama_dir, progress=False)
    assert str(err.value) == (f"column 'text' holds string ({src}: line 1) and int64 ({src}: line 2), which Ray's "
                              "JSON reader (one type a column) cannot hold: give the column one type, or write "
                              ".jsonl or .csv (nothing was written)")
    assert not ray.is_initialized()
