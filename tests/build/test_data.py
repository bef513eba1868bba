"""Training data: every schema from small files written here, bad rows, weights, and the exact token labels."""

from __future__ import annotations

import json
import logging

import pytest

from finsent.build.data import IGNORE, Example, collate, encode_example, load_mixture, load_source
from finsent.core.prompts import PromptEncoder, instruction, training_text
from finsent.core.recipes import DataSource
from finsent.core.rows import DataError

INSTR3 = instruction("3", "news")
INSTR7 = instruction("7", "news")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


def test_fpb_jsonl_maps_codes_and_names(tmp_path):
    path = write_jsonl(tmp_path / "fpb.jsonl", [{"sentence": "Sales fell.", "label": 0},
                                                {"sentence": "Sales rose.", "label": "positive"},
                                                {"sentence": "The meeting is Monday.", "label": 1}])
    rows = load_source(DataSource(path=path, schema="fpb"))
    assert [(r.text, r.answer, r.scheme) for r in rows] == [
        ("Sales fell.", "negative", "3"), ("Sales rose.", "positive", "3"), ("The meeting is Monday.", "neutral", "3")]
    assert {r.instruction for r in rows} == {INSTR3}
    assert rows[1].where.endswith("fpb.jsonl: line 2")


def test_tfns_csv_with_crlf_and_multiline_quoted_tweet(tmp_path):
    path = tmp_path / "tfns.csv"
    path.write_bytes(b'text,label\r\n$XYZ down 5%,0\r\n"Bullish on $ABC\r\nafter earnings, ""huge"" beat",1\r\n'
                     b"Fed minutes at 2pm,2\r\n")
    rows = load_source(DataSource(path=str(path), schema="tfns"))
    assert [r.answer for r in rows] == ["negative", "positive", "neutral"]
    assert rows[1].text == 'Bullish on $ABC\r\nafter earnings, "huge" beat'
    assert {r.instruction for r in rows} == {instruction("3", "tweet")}
    assert "row 3 (line 5)" in rows[2].where


def test_fingpt_keeps_row_instruction_and_infers_scheme(tmp_path):
    odd = "What is the sentiment of this news? Please choose an answer from {negative/neutral/positive}. Be brief."
    path = write_jsonl(tmp_path / "fingpt.jsonl", [
        {"instruction": odd, "input": "Profit doubled.", "output": "positive"},
        {"instruction": INSTR7, "input": "Rates unchanged.", "output": "neutral"},
        {"instruction": INSTR7, "input": "Guidance cut.", "output": "Moderately Negative"},
    ])
    rows = load_source(DataSource(path=path, schema="fingpt"))
    assert [(r.instruction, r.answer, r.scheme) for r in rows] == [
        (odd, "positive", "3"), (INSTR7, "neutral", "7"), (INSTR7, "moderately negative", "7")]
    only7 = load_source(DataSource(path=path, schema="fingpt", scheme="7"))
    assert [r.text for r in only7] == ["Rates unchanged.", "Guidance cut."]


def test_finsent_scheme_3_learns_coarse_and_7_learns_label(tmp_path):
    row = {"id": "x1", "text": "Margins slip a little.", "label": "mildly negative", "coarse": "neutral",
           "kind": "tweet", "topic": "earnings"}
    path = write_jsonl(tmp_path / "finsent.jsonl", [row])
    (r3,) = load_source(DataSource(path=path, schema="finsent", scheme="3"))
    (r7,) = load_source(DataSource(path=path, schema="finsent", scheme="7"))
    assert (r3.answer, r3.instruction) == ("neutral", instruction("3", "tweet"))
    assert (r7.answer, r7.instruction) == ("mildly negative", instruction("7", "tweet"))


def test_finsent_inconsistent_coarse_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "Up.", "label": "strong positive", "coarse": "neutral",
                                                 "kind": "news"}])
    with pytest.raises(DataError, match=r"bad.jsonl: line 1: 'coarse' is 'neutral' but 'label'"):
        load_source(DataSource(path=path, schema="finsent", scheme="3"))


def test_fiqa_parquet_thresholds_and_kinds(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "fiqa.parquet"
    pq.write_table(pa.table({"sentence": ["a", "b", "c"], "sentiment_score": [-0.5, 0.05, 0.1],
                             "format": ["post", "headline", "post"]}), path)
    rows = load_source(DataSource(path=str(path), schema="fiqa"))
    assert [r.answer for r in rows] == ["negative", "neutral", "positive"]
    assert [r.instruction for r in rows] == [instruction("3", "tweet"), INSTR3, instruction("3", "tweet")]


def test_nwgi_seven_classes_or_coarse(tmp_path):
    path = write_jsonl(tmp_path / "nwgi.jsonl", [{"news": "Bank beats.", "label": "mildly positive"},
                                                 {"news": "Bank fails.", "label": "strong negative"}])
    assert [r.answer for r in load_source(DataSource(path=path, schema="nwgi"))] == [
        "mildly positive", "strong negative"]
    assert [r.answer for r in load_source(DataSource(path=path, schema="nwgi", scheme="3"))] == [
        "neutral", "negative"]


@pytest.mark.parametrize("row, problem", [
    ({"label": 1}, "missing field 'sentence'"),
    ({"sentence": "Fine.", "label": 7}, "unknown label 7"),
    ({"sentence": "   ", "label": 1}, "field 'sentence': text is empty"),
    ({"sentence": "Bad \ud800 byte.", "label": 1}, "field 'sentence': text is not valid Unicode (lone surrogate"),
])
def test_malformed_row_names_file_row_and_problem(tmp_path, row, problem):
    path = write_jsonl(tmp_path / "fpb.jsonl", [{"sentence": "Good.", "label": 2}, row])
    with pytest.raises(DataError) as err:
        load_source(DataSource(path=path, schema="fpb"))
    assert f"{path}: line 2: " in str(err.value) and problem in str(err.value)


def test_invalid_json_line_is_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"sentence": "Good.", "label": 2}\n{"sentence": \n')
    with pytest.raises(DataError, match=r"x.jsonl: line 2: invalid JSON"):
        load_source(DataSource(path=str(path), schema="fpb"))


def test_skip_bad_rows_keeps_good_rows_and_logs_count(tmp_path, caplog):
    path = write_jsonl(tmp_path / "fpb.jsonl", [{"sentence": "Good.", "label": 2}, {"label": 1},
                                                {"sentence": "Bad.", "label": 0}, {"sentence": "", "label": 0}])
    with caplog.at_level(logging.WARNING, logger="finsent.build.data"):
        rows = load_source(DataSource(path=path, schema="fpb"), skip_bad_rows=True)
    assert [r.text for r in rows] == ["Good.", "Bad."]
    assert "skipped 2 bad row(s)" in caplog.text and "line 2" in caplog.text


def test_missing_file_and_unknown_schema(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        load_source(DataSource(path=str(tmp_path / "nope.csv"), schema="tfns"))
    path = write_jsonl(tmp_path / "a.jsonl", [{"sentence": "Good.", "label": 2}])
    with pytest.raises(DataError, match="unknown schema 'imdb'"):
        load_source(DataSource(path=path, schema="imdb"))
    with pytest.raises(DataError, match="has no 7-class labels"):
        load_source(DataSource(path=path, schema="fpb", scheme="7"))


def test_weights_repeat_and_subsample_deterministically(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"sentence": f"a{i}", "label": 2} for i in range(10)])
    b = write_jsonl(tmp_path / "b.jsonl", [{"sentence": f"b{i}", "label": 0} for i in range(10)])
    sources = [DataSource(path=a, schema="fpb", weight=2.5), DataSource(path=b, schema="fpb", weight=0.3)]
    mix = load_mixture(sources, seed=1)
    texts = [e.text for e in mix.examples]
    assert sum(t.startswith("a") for t in texts) == 25 and sum(t.startswith("b") for t in texts) == 3
    assert all(texts.count(f"a{i}") in (2, 3) for i in range(10))
    assert [s["rows_used"] for s in mix.stats] == [25, 3]
    assert [e.text for e in load_mixture(sources, seed=1).examples] == texts
    assert [e.text for e in load_mixture(sources, seed=2).examples] != texts
    limited = load_source(DataSource(path=a, schema="fpb", limit=4))
    assert [r.text for r in limited] == ["a0", "a1", "a2", "a3"]


def test_answer_loss_masks_exactly_the_answer_tokens(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=512)
    ex = Example(INSTR7, "Acme cuts its dividend in half.", "moderately negative", "7", "test")
    item = encode_example(encoder, ex, "answer")
    answer = list(encoder.answer_ids("moderately negative"))
    n_prompt = len(item["input_ids"]) - len(answer)
    assert item["labels"] == [IGNORE] * n_prompt + answer
    assert item["input_ids"][:item["prefix_len"]] == list(encoder.prefix_ids(INSTR7))
    assert item["input_ids"][:n_prompt] == encoder.encode(INSTR7, ex.text).ids  # what the classifier scores
    assert tokenizer.decode([t for t in item["labels"] if t != IGNORE]) == " moderately negative\n"
    assert tokenizer.decode(item["input_ids"], skip_special_tokens=True) == training_text(
        INSTR7, ex.text, "moderately negative")
    full = encode_example(encoder, ex, "full")
    assert full["input_ids"] == item["input_ids"] and full["labels"] == item["input_ids"]


def test_long_text_is_cut_in_the_news_and_keeps_the_answer(tokenizer):
    encoder = PromptEncoder(tokenizer, max_length=48)
    ex = Example(INSTR3, "shares rally " * 100, "positive", "3", "test")
    item = encode_example(encoder, ex)
    assert len(item["input_ids"]) == 48
    assert tokenizer.decode(item["input_ids"][-len(encoder.answer_ids("positive")) - 3:]).startswith("\nAnswer:")
    assert tokenizer.decode([t for t in item["labels"] if t != IGNORE]) == " positive\n"


def test_collate_right_pads_with_ignored_labels():
    batch = collate([{"input_ids": [5, 6, 7], "labels": [IGNORE, IGNORE, 7]},
                     {"input_ids": [8], "labels": [8]}], pad_id=0)
    assert "prefix_len" not in batch
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, 7], [8, IGNORE, IGNORE]]
    with_prefix = collate([{"input_ids": [5, 6, 7], "labels": [5, 6, 7], "prefix_len": 2},
                           {"input_ids": [5, 6], "labels": [5, 6], "prefix_len": 2}], pad_id=0)
    assert with_prefix["prefix_len"].tolist() == [2, 2]


def test_real_tfns_and_fpb_files_load(shared_data):
    mix = load_mixture([DataSource(path=str(shared_data / "tfns" / "sent_train.csv"), schema="tfns"),
                        DataSource(path=str(shared_data / "fpb" / "train.jsonl"), schema="fpb")])
    assert [s["rows_read"] for s in mix.stats] == [9543, 3634]
    assert {e.answer for e in mix.examples} == {"negative", "neutral", "positive"}
