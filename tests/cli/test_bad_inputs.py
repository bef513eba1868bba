"""Every bad input gets an error that names it, through the library and through ``finsent <command>``.

One section per class of input: texts (the one rule, ``prompts.check_text``), ``finsent classify``'s
stdin, arguments and options, recipes, model folders, and data files (training, benchmarks, speed
texts: one reader, ``finsent.core.tables``, one schema mapping, ``data.schema_row``). Real files are
written in ``tmp_path``; the command-line tests check the exit code and the one-line message.
"""

from __future__ import annotations

import io
import json
import shutil
import sys

import pytest
from checkout import REPO

from finsent.build.data import load_source
from finsent.cli import main
from finsent.core.models import ModelNotAvailableError, load_model_and_tokenizer, locate_model
from finsent.core.prompts import InputError, check_text
from finsent.core.recipes import DataSource, RecipeError, load_recipe
from finsent.core.rows import DataError
from finsent.core.texts import SpeedTextsError, load_texts
from finsent.evaluation.benchmarks import BenchmarkDataError, load_benchmark


def run_cli(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def binary_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# --- texts: one rule, an error naming the problem and the position -----------------------------------------


@pytest.mark.parametrize("text, message", [
    ("", "text is empty (or only whitespace): nothing to classify"),
    (" \n\t ", "text is empty (or only whitespace): nothing to classify"),
    (None, "text must be a string, got NoneType: None"),
    (b"bytes", "text must be a string, got bytes: b'bytes'"),
    ("Shares \ud800 fell", r"text is not valid Unicode (lone surrogate '\ud800' at character 8): send UTF-8 text"),
    ("caf\udcc3\udca9", "text is not valid UTF-8 (byte 0xc3 at character 4): send UTF-8 text"),
    # invisible characters only: as empty as a blank line (a model still gave them "neutral" at 0.99)
    ("\u200b", "text is empty (only invisible characters, such as U+200B ZERO WIDTH SPACE): nothing to classify"),
    ("\ufeff", "text is empty (only invisible characters, such as U+FEFF ZERO WIDTH NO-BREAK SPACE): "
                "nothing to classify"),
    (" \u200c\u200d\u2060\ufeff\n", "text is empty (only invisible characters, such as U+200C ZERO WIDTH NON-JOINER): "
                                "nothing to classify"),
    ("\u00ad\u202e\u2066\U000e0041", "text is empty (only invisible characters, such as U+00AD SOFT HYPHEN): "
                                  "nothing to classify"),
    ("\x00\x07", "text is empty (only invisible characters, such as U+0000 CONTROL): nothing to classify"),
    ("\u3164\ufe0f", "text is empty (only invisible characters, such as U+3164 HANGUL FILLER): nothing to classify"),
])
def test_check_text_names_the_problem_and_where(text, message):
    with pytest.raises(InputError) as err:
        check_text(text)
    assert str(err.value) == message


def test_check_text_strips_and_keeps_long_texts_for_the_encoder_to_cut():
    assert check_text("  Acme beats estimates \n") == "Acme beats estimates"
    # invisible characters beside a visible one stay: the text is the user's, only its whitespace is trimmed
    assert check_text("\u200bAcme\u200d beats\ufeff") == "\u200bAcme\u200d beats\ufeff"
    long = "revenue grew " * 5000  # no length limit here: the prompt encoder truncates (truncated=True)
    assert check_text(long) == long.strip()


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from finsent.core.classify import FinSentClassifier

    return FinSentClassifier.from_pretrained(str(tiny_llama_dir))


def test_classify_names_the_bad_item_and_per_item_checks_keep_the_good_ones(tiny):
    texts = ["Acme beats estimates", "Bad \ud800 byte", "Rates unchanged"]
    with pytest.raises(InputError, match=r"^text #1: text is not valid Unicode \(lone surrogate"):
        tiny.classify(texts, "3")
    # What a server does (the Space): check each request's text, classify the good ones together.
    good = []
    for text in texts:
        try:
            good.append(check_text(text))
        except InputError:
            continue
    preds = tiny.classify(good, "3")
    assert [p.text for p in preds] == ["Acme beats estimates", "Rates unchanged"]
    alone = tiny.classify(["Acme beats estimates"], "3")[0]
    assert preds[0].probs == pytest.approx(alone.probs, abs=1e-5)


# --- finsent classify: stdin, arguments, options, streaming -------------------------------------------------


def test_classify_stdin_not_utf8_is_one_line_naming_the_line(monkeypatch, capsys, tmp_path):
    binary_stdin(monkeypatch, b"Acme beats estimates\n\nNet loss \xff widens\n")
    # The input is checked before any model loads: the model named here does not even exist.
    code, out, err = run_cli(["classify", "--model", str(tmp_path / "no-model")], capsys)
    assert (code, out) == (2, "")
    assert err == ("finsent classify: error: stdin line 3: not UTF-8 text (byte 0xff at byte 10 of the line): "
                   "send UTF-8 text\n")


def test_classify_argument_that_is_not_utf8_is_one_line(capsys, tmp_path):
    # Python hands an argument with a byte that is not UTF-8 over as a lone surrogate (surrogateescape).
    code, out, err = run_cli(["classify", "--model", str(tmp_path / "no-model"), "fine", "caf\udcff"], capsys)
    assert (code, out) == (2, "")
    assert err == ("finsent classify: error: argument 2: text is not valid UTF-8 (byte 0xff at character 4): "
                   "send UTF-8 text\n")
    code, _, err = run_cli(["classify", "--model", str(tmp_path / "no-model"), "   "], capsys)
    assert code == 2 and err == ("finsent classify: error: argument 1: text is empty (or only whitespace): "
                                 "nothing to classify\n")


def test_classify_refuses_a_text_of_invisible_characters_as_empty(monkeypatch, capsys, tmp_path):
    empty = "text is empty (only invisible characters, such as U+200B ZERO WIDTH SPACE): nothing to classify"
    code, out, err = run_cli(["classify", "--model", str(tmp_path / "no-model"), "Acme beats", "\u200b\ufeff"], capsys)
    assert (code, out, err) == (2, "", f"finsent classify: error: argument 2: {empty}\n")
    binary_stdin(monkeypatch, "Acme beats estimates\n\n\u200b\u200b\n".encode())
    code, out, err = run_cli(["classify", "--model", str(tmp_path / "no-model")], capsys)
    assert (code, out, err) == (2, "", f"finsent classify: error: stdin line 3: {empty}\n")


def test_classify_without_text_is_a_usage_error(monkeypatch, capsys, tmp_path):
    binary_stdin(monkeypatch, b"\n  \n")
    code, out, err = run_cli(["classify", "--model", str(tmp_path / "no-model")], capsys)
    assert (code, out) == (2, "")
    assert err == "finsent classify: error: no text given (pass texts as arguments or lines on stdin)\n"


@pytest.mark.parametrize("value, problem", [("0", "must be an integer >= 1, got 0"),
                                            ("-1", "must be an integer >= 1, got -1"),
                                            ("two", "'two' is not an integer")])
def test_classify_batch_size_must_be_positive(capsys, value, problem):
    with pytest.raises(SystemExit) as exit_:
        main(["classify", "--batch-size", value, "text"])
    assert exit_.value.code == 2
    assert f"finsent classify: error: argument --batch-size: {problem}" in capsys.readouterr().err


def test_classify_streams_each_batch_as_it_finishes(monkeypatch, tiny_llama_dir):
    lines = ["\ufeffAcme beats estimates", "Net loss widens", "Rates unchanged", "Dividend cut", "Shares flat"]
    out = io.StringIO()
    seen_when_line_3_was_read = []

    class Stdin:  # a pipe whose third line arrives after the first batch is printed
        def __init__(self):
            self.buffer = self

        def __iter__(self):
            for n, line in enumerate(lines, 1):
                if n == 3:
                    seen_when_line_3_was_read.append(out.getvalue())
                yield (line + "\n").encode()

    monkeypatch.setattr(sys, "stdin", Stdin())
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["classify", "--model", str(tiny_llama_dir), "--batch-size", "2"]) == 0
    first_batch = seen_when_line_3_was_read[0].splitlines()
    assert [json.loads(line)["text"] for line in first_batch] == ["Acme beats estimates", "Net loss widens"]
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [p["text"] for p in printed] == ["Acme beats estimates", *lines[1:]]  # BOM dropped, order kept
    assert all(set(p["probs"]) == {"negative", "neutral", "positive"} for p in printed)


# --- recipes: typed, range-checked, YAML errors with file and line ------------------------------------------


BASE = "name: t\nfinetune:\n  data: [{path: x.jsonl, schema: fpb}]\n"


@pytest.mark.parametrize("text, message", [
    (BASE + 'prune: {ratio: "0.4"}\n', "prune.ratio must be a number, got the text '0.4' (write a number without "
                                       "quotes)"),
    (BASE + "prune: {ratio: 1.0}\n", "prune.ratio must be a fraction in (0, 1)"),
    (BASE + "prune: {ratio: -0.2}\n", "prune.ratio must be a fraction in (0, 1)"),
    (BASE + "  learning_rate: fast\n", "finetune.learning_rate must be a number, got the text 'fast'"),
    (BASE + "  learning_rate: .nan\n", "finetune.learning_rate must be in (0, 1), got nan"),
    (BASE.replace("schema: fpb}", "schema: fpb, limit: 0}"),
     "finetune.data[0].limit must be >= 1 (or null for every row), got 0"),
    (BASE + "  batch_size: -4\n", "finetune.batch_size must be >= 1, got -4"),
    (BASE + "  batch_size: 16.0\n", "finetune.batch_size must be an integer, got 16.0 (float)"),
    (BASE + "  lora_r: 0\n", "finetune.lora_r must be >= 1, got 0"),
    (BASE + "eval: {batch_size: -1}\n", "eval.batch_size must be >= 1, got -1"),
    (BASE + "eval: {benchmarks: [{name: tfns, limit: 0}]}\n", "eval.benchmarks[0].limit must be >= 1"),
    (BASE + "eval: {benchmarks: [{name: imdb}]}\n", "eval.benchmarks[0].name must be one of fpb, fiqa"),
    (BASE.replace("name: t", "name: ''"), "name: recipe name '' is not a safe folder name"),
    (BASE.replace("name: t", "name: ../.."), "name: recipe name '../..' is not a safe folder name"),
    (BASE.replace("name: t", "name: /"), "name: recipe name '/' is not a safe folder name"),
    (BASE + "eval: [unclosed\n", "line 5, column 1: not a valid recipe YAML: while parsing a flow sequence; "
                                 "expected ',' or ']', but got '<stream end>'"),
    (BASE + "description: !!python/object/apply:os.system [echo hi]\n",
     "line 4, column 14: not a valid recipe YAML: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object/apply:os.system'"),
    (BASE + "name: u\n", "line 4, column 1: not a valid recipe YAML: key 'name' is given twice (first on line 1)"),
    (BASE + "merge: 3\n", "merge must be a mapping of keys for MergeSection, got 3"),
])
def test_bad_recipe_values_name_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)


def test_recipe_numbers_are_numbers(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(BASE + "  learning_rate: 1e-3\n  weight_decay: 5E-2\n")
    f = load_recipe(path).finetune
    assert (f.learning_rate, f.weight_decay) == (0.001, 0.05) and type(f.learning_rate) is float
    # the same text as a command-line override (parsed by YAML 1.1, which leaves "2e-4" a string)
    assert load_recipe(path, {"finetune.learning_rate": "2e-4"}).finetune.learning_rate == 0.0002


def test_bad_recipe_through_the_command_line_is_one_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(BASE + 'prune: {ratio: "0.4"}\n')
    code, out, err = run_cli(["eval", "--recipe", str(path)], capsys)
    assert (code, out) == (2, "")
    assert err == (f"finsent eval: error: {path}: prune.ratio must be a number, got the text '0.4' "
                   "(write a number without quotes)\n")


# --- model folders: a broken file is named, never a traceback ----------------------------------------------


@pytest.fixture()
def model_copy(tiny_llama_dir, tmp_path):
    return shutil.copytree(tiny_llama_dir, tmp_path / "model")


def test_empty_and_truncated_safetensors_are_named(model_copy):
    weights = model_copy / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelNotAvailableError) as err:
        locate_model(model_copy)
    assert str(err.value) == (f"{weights}: truncated ({len(data) // 2:,} bytes, its header lists {len(data):,}): "
                              "copy or download the weights again")
    weights.write_bytes(data[:5])
    with pytest.raises(ModelNotAvailableError, match="truncated \\(5 bytes, shorter than its own header\\)"):
        load_model_and_tokenizer(str(model_copy))
    weights.write_bytes(b"")
    with pytest.raises(ModelNotAvailableError) as err:
        load_model_and_tokenizer(str(model_copy))
    assert str(err.value) == f"{weights}: empty (0 bytes): copy or download the weights again"


@pytest.mark.parametrize("config, message", [
    ("", "empty"),
    ("{'model_type': 'llama'}", "not valid JSON (Expecting property name enclosed in double quotes, line 1)"),
    ('{"hidden_size": 64}', "no 'model_type' (a transformers config names its architecture, e.g. \"llama\")"),
    ('["llama"]', "not a JSON object, so not a model config"),
])
def test_bad_config_json_is_named(model_copy, config, message):
    (model_copy / "config.json").write_text(config)
    with pytest.raises(ModelNotAvailableError) as err:
        load_model_and_tokenizer(str(model_copy))
    assert str(err.value) == f"{model_copy / 'config.json'}: {message}"


def test_broken_model_through_the_command_line_is_one_line(model_copy, capsys):
    (model_copy / "model.safetensors").write_bytes(b"")
    code, out, err = run_cli(["classify", "--model", str(model_copy), "Acme beats estimates"], capsys)
    assert (code, out) == (1, "")
    assert err == (f"finsent classify: error: {model_copy / 'model.safetensors'}: empty (0 bytes): "
                   "copy or download the weights again\n")


HEADLINES = REPO / "data" / "finsent-headlines" / "test.jsonl"
EMPTY_MODEL = ("the model name is empty ('{}'): give --model a model folder, a Hub id (owner/name) or 'smollm2', "
               "or leave --model out for the default ($FINSENT_MODEL, the newest release under releases/, then "
               "oopere/Llama-FinSent-S)")


@pytest.mark.parametrize("command", [
    ["classify", "Acme beats estimates"],
    ["eval", "--benchmark", f"finsent:{HEADLINES}", "--limit", "2", "--out", "OUT"],
    ["prune", "--ratio", "0.1", "--out", "OUT"],
], ids=lambda c: c[0])
def test_empty_model_is_refused_at_once_not_read_as_unset(command, tiny_llama_dir, tmp_path, monkeypatch, capsys):
    # Read as unset, '' would pick $FINSENT_MODEL (or the newest release, or a Hub download): set it to a real
    # model, so that only a refusal gives exit 2 here.
    monkeypatch.setenv("FINSENT_MODEL", str(tiny_llama_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    argv = [command[0], "--model", "", *(str(out) if word == "OUT" else word for word in command[1:])]
    code, stdout, err = run_cli(argv, capsys)
    assert (code, stdout) == (2, "")
    assert err == f"finsent {command[0]}: error: {EMPTY_MODEL.format('')}\n"
    assert not out.exists()


@pytest.mark.parametrize("name", ["", "  "])
def test_empty_model_name_is_a_usage_error_in_the_library_too(name, tiny_llama_dir, monkeypatch):
    from finsent.core.classify import FinSentClassifier
    from finsent.core.errors import UsageError

    monkeypatch.setenv("FINSENT_MODEL", str(tiny_llama_dir))
    with pytest.raises(UsageError) as err:
        FinSentClassifier.from_pretrained(name)
    assert str(err.value) == EMPTY_MODEL.format(name)


# --- data files: one reader and one mapping for training, benchmarks and speed texts ------------------------


def tfns_rows(tmp_path, name: str, body: bytes):
    path = tmp_path / name
    path.write_bytes(body)
    return path


def all_readers(path, schema="tfns"):
    """The three readers of a table file, each as a zero-argument call."""
    return {
        "benchmark": lambda: load_benchmark(schema, path),
        "training": lambda: load_source(DataSource(path=str(path), schema=schema)),
        "speed": lambda: load_texts(path, 10),
    }


@pytest.mark.parametrize("reader", ["benchmark", "training", "speed"])
def test_latin1_csv_is_named_by_every_reader(tmp_path, reader):
    path = tfns_rows(tmp_path, "latin.csv", "text,label\nCaf\u00e9 chain beats,1\n".encode("latin-1"))
    with pytest.raises((BenchmarkDataError, DataError, SpeedTextsError)) as err:
        all_readers(path)[reader]()
    assert str(err.value) == f"{path}: not UTF-8 text (byte 0xe9 at offset 14): save it as UTF-8"


@pytest.mark.parametrize("reader", ["benchmark", "training", "speed"])
def test_corrupt_parquet_and_two_text_columns_are_named(tmp_path, reader):
    broken = tfns_rows(tmp_path, "broken.parquet", b"PAR1 this is not a parquet file PAR1")
    with pytest.raises((BenchmarkDataError, DataError, SpeedTextsError)) as err:
        all_readers(broken)[reader]()
    assert str(err.value).startswith(f"{broken}: not a readable parquet file (")
    twice = tfns_rows(tmp_path, "twice.csv", b"text,label,text\nAcme up,1,other\n")
    with pytest.raises((BenchmarkDataError, DataError, SpeedTextsError)) as err:
        all_readers(twice)[reader]()
    assert str(err.value) == (f"{twice}: the header names column(s) 'text' more than once: rename them so each "
                              "column has one name")


def test_bom_csv_is_read_like_the_same_file_without_bom(tmp_path):
    body = b"text,label\r\n$ACME up 5%,1\r\nFed holds rates,2\r\n"
    plain, bom = tfns_rows(tmp_path, "plain.csv", body), tfns_rows(tmp_path, "bom.csv", b"\xef\xbb\xbf" + body)
    assert load_benchmark("tfns", bom).rows == load_benchmark("tfns", plain).rows
    assert [(e.text, e.answer) for e in load_source(DataSource(path=str(bom), schema="tfns"))] == [
        ("$ACME up 5%", "positive"), ("Fed holds rates", "neutral")]
    assert load_texts(bom, 5) == ["$ACME up 5%", "Fed holds rates"]


def test_malformed_rows_and_unknown_labels_name_file_and_row(tmp_path):
    extra = tfns_rows(tmp_path, "extra.csv", b"text,label\nfine,1\n\"a, b\",1,surplus\n")
    with pytest.raises(BenchmarkDataError) as err:
        load_benchmark("tfns", extra)
    assert str(err.value) == f"{extra}: row 2 (line 3): 3 fields, the header has 2"
    with pytest.raises(DataError) as err:
        load_source(DataSource(path=str(extra), schema="tfns"))
    assert str(err.value).startswith(f"{extra}: row 2 (line 3): 3 fields, the header has 2")
    unknown = tfns_rows(tmp_path, "unknown.csv", b"text,label\nfine,1\nmeh,bullish\n")
    with pytest.raises(BenchmarkDataError) as err:
        load_benchmark("tfns", unknown)
    assert str(err.value) == (f"{unknown}: row 2 (line 3): TFNS: unknown label 'bullish'; expected one of "
                              "[0, 1, 2] or ['negative', 'positive', 'neutral']")
    twice = tfns_rows(tmp_path, "twice.jsonl", b'{"text": "a", "label": 1, "text": "b"}\n')
    with pytest.raises(BenchmarkDataError) as err:
        load_benchmark("tfns", twice)
    assert str(err.value) == f"{twice}: line 1: field(s) 'text' given more than once"


def test_json_array_and_json_lines_are_the_same_rows_everywhere(tmp_path):
    rows = [{"text": "$X up", "label": 1}, {"text": "$Y down", "label": 0}]
    array = tfns_rows(tmp_path, "array.json", json.dumps(rows).encode())
    lines = tfns_rows(tmp_path, "lines.json", "".join(json.dumps(r) + "\n" for r in rows).encode())
    assert load_benchmark("tfns", array).rows == load_benchmark("tfns", lines).rows
    examples = [load_source(DataSource(path=str(p), schema="tfns")) for p in (array, lines)]
    assert [(e.text, e.answer) for e in examples[0]] == [(e.text, e.answer) for e in examples[1]]
    assert load_texts(array, 5) == load_texts(lines, 5) == ["$X up", "$Y down"]


def test_fiqa_rows_without_format_are_the_same_kind_in_training_and_evaluation(tmp_path):
    from finsent.core.prompts import instruction

    rows = [{"sentence": "Acme beats", "sentiment_score": 0.5},
            {"sentence": "$ACME to the moon", "sentiment_score": 0.6, "format": "post"},
            {"sentence": "Acme misses", "sentiment_score": -0.4, "format": "headline"}]
    path = tfns_rows(tmp_path, "fiqa.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    evaluated = [r.kind for r in load_benchmark("fiqa", path).rows]
    trained = [e.instruction for e in load_source(DataSource(path=str(path), schema="fiqa"))]
    assert evaluated == ["news", "tweet", "news"]
    assert trained == [instruction("3", kind) for kind in evaluated]


def test_bad_data_file_through_the_command_line_is_one_line(tmp_path, tiny_llama_dir, capsys):
    path = tfns_rows(tmp_path, "latin.csv", "text,label\nCaf\u00e9 chain beats,1\n".encode("latin-1"))
    code, out, err = run_cli(["eval", "--model", str(tiny_llama_dir), "--benchmark", f"tfns:{path}",
                              "--out", str(tmp_path / "out")], capsys)
    assert (code, out) == (2, "")
    assert err == f"finsent eval: error: {path}: not UTF-8 text (byte 0xe9 at offset 14): save it as UTF-8\n"
    assert not (tmp_path / "out").exists()
