"""The Gradio Space: input handling, the batched /classify API, CSV round trips, assembly and deploy.

On the tiny random Llama; the app served on the real SmolLM2, the deployed folder's `python app.py` and the
clean-up of finished jobs are in tests/space/slow/test_space_server.py.
"""

from __future__ import annotations

import csv
from importlib.metadata import version

import pytest
from checkout import REPO
from space_app import app, batch_of_twenty, front_matter, lone_surrogate_error, tfns_rows, write_csv

from finsent import SCHEMES
from finsent.cli import main as cli_main
from finsent.core.models import PUBLISHED_MODEL
from finsent.hub.space import (
    SPACE_DIR,
    SpaceDeployError,
    assemble_space,
    check_self_contained,
    deploy_space,
)

# --- the Space's metadata ------------------------------------------------------------------------


def test_space_readme_front_matter_pins_the_tested_gradio():
    meta = front_matter((SPACE_DIR / "README.md").read_text(encoding="utf-8"))
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == version("gradio") == "6.31.0"
    assert (SPACE_DIR / meta["app_file"]).is_file()
    assert meta["models"] == [PUBLISHED_MODEL]
    assert {"title", "emoji", "colorFrom", "colorTo", "python_version", "license"} <= set(meta)
    assert 0 < len(meta["short_description"]) <= 60  # the Hub's limit


def test_requirements_are_inference_only_and_pin_the_installed_versions():
    lines = [line.strip() for line in (SPACE_DIR / "requirements.txt").read_text().splitlines()]
    pins = dict(line.split("==") for line in lines if line and not line.startswith(("#", "--")))
    assert {"torch", "transformers", "safetensors", "tokenizers", "huggingface_hub", "gradio"} <= set(pins)
    assert not {"peft", "datasets", "accelerate", "evaluate", "scikit-learn", "optipfair"} & set(pins)
    for name, pinned in pins.items():
        assert version(name).split("+")[0] == pinned, name  # torch reports 2.13.0+cpu


# --- input handling (no model) ---------------------------------------------------------------------


def test_split_box_drops_blank_lines_clips_long_texts_and_caps_the_line_count():
    texts, notices = app.split_box("  Acme beats estimates \n\n   \nZenith slumps\n")
    assert texts == ["Acme beats estimates", "Zenith slumps"] and notices == []
    long = "x" * (app.MAX_CHARS + 5)
    texts, notices = app.split_box(f"short\n{long}")
    assert texts == ["short", "x" * app.MAX_CHARS]
    assert notices == [f"Text 2 is longer than {app.MAX_CHARS:,} characters: only its first {app.MAX_CHARS:,} "
                       "were classified."]
    texts, notices = app.split_box("\n".join(f"line {i}" for i in range(app.MAX_LINES + 3)))
    assert len(texts) == app.MAX_LINES and texts[-1] == f"line {app.MAX_LINES - 1}"
    assert notices[0].startswith(f"{app.MAX_LINES + 3} lines given: only the first {app.MAX_LINES}")
    assert app.split_box(None) == ([], []) and app.split_box(" \n ") == ([], [])


@pytest.mark.parametrize(("header", "rows", "message"), [
    (["headline", "label"], [["Acme beats", "1"]], "has no 'text' column (its columns: 'headline', 'label')"),
    (["text"], [["Acme beats"], ["  "], ["Zenith slumps"]], "empty text in row 2 (line 3)"),
    (["text"], [["Acme beats"], ["Zenith", "extra"]], "news.csv: row 2 (line 3) has 2 fields, the header has 1."),
    (["text", "predicted_label"], [["Acme beats", "x"]], "already has result column(s) predicted_label"),
    (["text", "P_Positive"], [["Acme beats", "x"]], "already has result column(s) P_Positive"),
    (["text"], [], "has no data rows"),
    # two text columns: refused naming them, never one picked (the same name twice, or differing in case/space)
    (["text", "label", "text"], [["Acme beats", "1", "Zenith"]], "the header names column(s) 'text' more than once"),
    (["text", " Text "], [["Acme beats", "Zenith"]], "news.csv has 2 text columns ('text', 'Text'): keep one"),
])
def test_bad_csv_files_get_errors_naming_file_row_and_problem(tmp_path, header, rows, message):
    path = write_csv(tmp_path / "news.csv", header, rows)
    with pytest.raises(app.CsvInputError, match="news.csv") as err:
        app.read_csv_texts(path)
    assert message in str(err.value)


def test_csv_over_the_row_limit_and_non_utf8_csv_are_refused(tmp_path, shared_data):
    with pytest.raises(app.CsvInputError, match=f"sent_valid.csv has more than {app.MAX_CSV_ROWS} rows"):
        app.read_csv_texts(shared_data / "tfns" / "sent_valid.csv")  # the real 2,388-row TFNS file
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text\nCaf\xe9 chain beats estimates\n".encode("latin-1"))
    with pytest.raises(app.CsvInputError) as err:
        app.read_csv_texts(latin)
    # finsent.core.tables' message, naming the file without the server's upload folder
    assert str(err.value) == "latin.csv: not UTF-8 text (byte 0xe9 at offset 8): save it as UTF-8"


def test_a_bom_csv_reads_like_the_same_csv_without_bom_and_like_finsent_tables(tmp_path):
    from finsent.core.tables import read_table

    body = 'text,label\r\n"Acme beats, again",1\r\nZenith slumps,0\r\n'
    plain, bom = tmp_path / "plain.csv", tmp_path / "excel.csv"
    plain.write_text(body, encoding="utf-8", newline="")
    bom.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))  # what a spreadsheet's "CSV UTF-8" saves
    columns, rows, text_col = app.read_csv_texts(bom)
    assert (columns, text_col) == (["text", "label"], "text")
    assert rows == [{"text": "Acme beats, again", "label": "1"}, {"text": "Zenith slumps", "label": "0"}]
    assert app.read_csv_texts(plain) == (columns, rows, text_col)
    assert rows == [row for _, row in read_table(bom)]


def test_only_csv_files_are_read_and_errors_never_show_the_server_folder(tmp_path):
    text = write_csv(tmp_path / "news.txt", ["text"], [["Acme beats"]])
    with pytest.raises(app.CsvInputError) as err:
        app.read_csv_texts(text)
    assert str(err.value) == "news.txt is not a .csv file: upload a CSV (UTF-8) with a 'text' column."
    dupe = write_csv(tmp_path / "news.csv", ["text", "text"], [["Acme beats", "Zenith"]])
    with pytest.raises(app.CsvInputError) as err:
        app.read_csv_texts(dupe)
    assert str(err.value).startswith("news.csv: the header names column(s) 'text' more than once")
    assert str(tmp_path) not in str(err.value)


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"http://evil.example\",\"x\")", "'=HYPERLINK(\"http://evil.example\",\"x\")"),
    ("+1+1", "'+1+1"), ("-2+3", "'-2+3"), ("@SUM(A1:A2)", "'@SUM(A1:A2)"), ("\tAcme", "'\tAcme"),
    ("\rAcme", "'\rAcme"), ("Acme =1", "Acme =1"), ("'quoted", "'quoted"), ("", ""), (None, ""), (0.25, "0.25"),
    (True, "True"),
])
def test_spreadsheet_safe_quotes_every_cell_a_spreadsheet_would_evaluate(value, cell):
    assert app.spreadsheet_safe(value) == cell


# --- the batched handler and the CSV pipeline on a tiny model ---------------------------------------------


def test_batched_handler_equals_direct_classify_calls_and_isolates_bad_requests(tiny_clf):
    raws = ["Acme beats estimates", "", "Acme beats estimates\nZenith slumps <b>hard</b>", "Orion swings to a loss",
            "Acme beats estimates"]
    schemes = ["3", "3", "3", "7", "9"]
    labels, tables, notices = app.classify_requests(tiny_clf, raws, schemes)
    one = tiny_clf.classify("Acme beats estimates", "3")
    assert labels[0] == pytest.approx(one.probs, abs=1e-5) and notices[0].startswith(f"**{one.label}**")
    assert labels[1] is None and notices[1].startswith("Type or paste a financial headline")
    assert tables[1].empty and list(tables[1].columns) == ["text", "label", "p_negative", "p_neutral", "p_positive"]
    two = tiny_clf.classify(["Acme beats estimates", "Zenith slumps <b>hard</b>"], "3")
    assert labels[2] is None and notices[2] == "2 texts classified: see the table."
    assert tables[2]["text"].tolist() == ["Acme beats estimates", "Zenith slumps <b>hard</b>"]
    assert tables[2]["label"].tolist() == [p.label for p in two]
    seven = tiny_clf.classify("Orion swings to a loss", "7")
    assert list(labels[3]) == list(SCHEMES["7"]) and labels[3] == pytest.approx(seven.probs, abs=1e-5)
    assert labels[4] is None and notices[4] == "Unknown label scheme '9': choose 3 or 7 classes."


@pytest.mark.parametrize("bad", ["\ud800 Acme beats estimates", "   ", "Acme\nZenith \udcff slumps\n\ud800"])
def test_one_bad_request_beside_nineteen_good_ones_fails_alone(tiny_clf, shared_data, monkeypatch, bad):
    raws = batch_of_twenty(shared_data, bad)
    calls, real = [], tiny_clf.classify
    monkeypatch.setattr(tiny_clf, "classify", lambda texts, *a, **k: calls.append(list(texts)) or real(texts, *a, **k))
    labels, tables, notices = app.classify_requests(tiny_clf, raws, ["3"] * 20)
    monkeypatch.undo()
    good = [i for i in range(20) if i != 7]
    direct = tiny_clf.classify([raws[i] for i in good], "3")
    for i, pred in zip(good, direct):
        assert labels[i] == pytest.approx(pred.probs, abs=1e-5) and tables[i]["label"].tolist() == [pred.label]
        assert notices[i] == f"**{pred.label}** (probability {pred.probs[pred.label]:.2f})"
    assert len(calls) == 1  # the good texts still share one model call; the bad text never reaches it
    assert labels[7] is None
    if bad.strip() == "":
        assert tables[7].empty and notices[7].startswith("Type or paste a financial headline")
    elif "\n" not in bad:
        assert tables[7].empty
        assert notices[7] == f"Nothing was classified.\n\n⚠️ Text 1 was not classified: {lone_surrogate_error()}"
    else:  # its good line is classified; each bad line is named
        assert tables[7]["text"].tolist() == ["Acme"] and notices[7].startswith("1 text classified: see the table.")
        assert "⚠️ Text 2 was not classified: text is not valid UTF-8 (byte 0xff" in notices[7]
        assert f"⚠️ Text 3 was not classified: {lone_surrogate_error()}" in notices[7]


def test_a_text_the_classifier_rejects_fails_alone(tiny_clf, shared_data, monkeypatch):
    """Beyond the text check: whatever the model call raises for one text stays that text's error."""
    raws = batch_of_twenty(shared_data, "POISON headline")
    real = tiny_clf.classify

    def picky(texts, *args, **kwargs):
        if any("POISON" in text for text in texts):
            raise RuntimeError("the tokenizer choked on POISON")
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(tiny_clf, "classify", picky)
    labels, tables, notices = app.classify_requests(tiny_clf, raws, ["3"] * 20)
    monkeypatch.undo()
    good = [i for i in range(20) if i != 7]
    for i, pred in zip(good, tiny_clf.classify([raws[i] for i in good], "3")):
        assert labels[i] == pytest.approx(pred.probs, abs=1e-5)
    assert labels[7] is None and tables[7].empty
    assert notices[7] == ("Nothing was classified.\n\n⚠️ Text 1 was not classified: "
                          "RuntimeError: the tokenizer choked on POISON")


def test_output_csv_is_spreadsheet_safe_and_never_overwrites_a_column(tiny_clf, tmp_path):
    texts = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+Acme beats estimates", "-Zenith slumps",
             "@SUM(A1:A9) Orion swings", "\tMeridian sets AGM date", "Apex cuts jobs"]
    notes = ["=1+1", "-5", "ok", "@x", "+y", "\rz"]
    path = write_csv(tmp_path / "evil.csv", ["text", "=cmd|' /C calc'!A0"], [list(r) for r in zip(texts, notes)])
    out = app.classify_csv_file(tiny_clf, path, "3", out_dir=tmp_path)
    with open(out, encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == ["text", "'=cmd|' /C calc'!A0", "predicted_label", "p_negative", "p_neutral", "p_positive",
                      "text_truncated"]
    preds = tiny_clf.classify([t.strip() for t in texts], "3")
    assert [row[:2] for row in rows] == [
        ["'=HYPERLINK(\"http://evil.example\",\"click\")", "'=1+1"], ["'+Acme beats estimates", "'-5"],
        ["'-Zenith slumps", "ok"], ["'@SUM(A1:A9) Orion swings", "'@x"], ["'\tMeridian sets AGM date", "'+y"],
        ["Apex cuts jobs", "'\rz"],
    ]
    assert [row[2:] for row in rows] == [
        [p.label, *(f"{p.probs[label]:.6f}" for label in SCHEMES["3"]), "False"] for p in preds]


def test_csv_round_trip_keeps_every_input_column_and_reports_progress(tiny_clf, shared_data, tmp_path):
    rows = tfns_rows(shared_data, 20)
    rows[3]["text"] = "y" * (app.MAX_CHARS + 1)  # cut with a flag, not dropped
    path = write_csv(tmp_path / "tweets.csv", ["text", "label"], [[r["text"], r["label"]] for r in rows])
    calls = []
    out = app.classify_csv_file(tiny_clf, path, "3", progress=lambda *a, **k: calls.append(a[0]))
    assert out.name == "tweets-finsent.csv"
    with open(out, encoding="utf-8", newline="") as handle:
        result = list(csv.DictReader(handle))
    assert list(result[0]) == ["text", "label", "predicted_label", "p_negative", "p_neutral", "p_positive",
                               "text_truncated"]
    assert [(r["text"], r["label"]) for r in result] == [(r["text"], r["label"]) for r in rows]
    direct = tiny_clf.classify([r["text"][: app.MAX_CHARS] for r in rows], "3")
    assert [r["predicted_label"] for r in result] == [p.label for p in direct]
    for r, p in zip(result, direct):
        assert sum(float(r[f"p_{label}"]) for label in SCHEMES["3"]) == pytest.approx(1, abs=1e-5)
        assert float(r[f"p_{p.label}"]) == pytest.approx(p.probs[p.label], abs=1e-5)
    assert [r["text_truncated"] for r in result].count("True") == 1 and result[3]["text_truncated"] == "True"
    assert calls == [(0, 20), (16, 20), (20, 20)]


# --- assembly and deploy -------------------------------------------------------------------------------


def test_assembled_space_holds_the_app_card_requirements_and_inference_code(tmp_path):
    files = assemble_space(tmp_path, "alice/finsent-test")
    src = REPO / "src" / "finsent"
    core = sorted(f"finsent/core/{p.relative_to(src / 'core').as_posix()}" for p in (src / "core").rglob("*.py"))
    assert files == sorted(["README.md", "app.py", "requirements.txt", "finsent/__init__.py", *core])
    assert (tmp_path / "app.py").read_bytes() == (SPACE_DIR / "app.py").read_bytes()
    for name in ["__init__.py", *(c.removeprefix("finsent/") for c in core)]:
        assert (tmp_path / "finsent" / name).read_bytes() == (src / name).read_bytes()
    meta = front_matter((tmp_path / "README.md").read_text(encoding="utf-8"))
    assert meta["models"] == ["alice/finsent-test"] and meta["sdk_version"] == "6.31.0"
    assert "## API" in (tmp_path / "README.md").read_text(encoding="utf-8")  # the body survives


def test_a_copied_module_importing_training_code_is_caught(tmp_path):
    assemble_space(tmp_path)
    with open(tmp_path / "finsent" / "core" / "classify.py", "a") as handle:
        handle.write("\nfrom finsent.build.data import training_data\n")
    with pytest.raises(SpaceDeployError, match="classify.py imports finsent.build.data"):
        check_self_contained(tmp_path)


def test_deploy_rejects_a_local_folder_as_model_and_a_missing_token(tmp_path, monkeypatch, capsys):
    with pytest.raises(SpaceDeployError, match="must be a Hub id"):
        deploy_space("alice/demo", str(tmp_path), dry_run=True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    assert cli_main(["space", "deploy", "--repo-id", "alice/demo"]) == 2
    assert "no Hugging Face token: set HF_TOKEN" in capsys.readouterr().err


def test_deploy_dry_run_lists_the_files(capsys):
    assert cli_main(["space", "deploy", "--repo-id", "alice/demo", "--model", "bob/model", "--dry-run"]) == 0
    out = capsys.readouterr().out
    core = sorted((REPO / "src" / "finsent" / "core").rglob("*.py"))
    assert out.splitlines()[0] == f"Space alice/demo (model bob/model): would upload {4 + len(core)} files"
    assert "  finsent/core/classify.py" in out and "  finsent/core/tables.py" in out and "  requirements.txt" in out
