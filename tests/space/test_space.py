"""The Gradio Space: input handling, the batched /classify API, CSV round trips, assembly and deploy.

Fast tests use the tiny random Llama; the `slow` ones launch the app once (module fixture) on the real
SmolLM2 at 127.0.0.1 and talk to it through gradio_client, or run the deployed folder's `python app.py`.
"""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from finsent import SCHEMES, FinSentClassifier
from finsent.cli import main as cli_main
from finsent.core.models import PUBLISHED_MODEL
from finsent.hub.space import (
    SPACE_DIR,
    SpaceDeployError,
    assemble_space,
    check_self_contained,
    deploy_space,
    load_app,
)

app = load_app()
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def front_matter(text: str) -> dict:
    _, meta, _ = text.split("---", 2)
    return yaml.safe_load(meta)


def tfns_rows(shared_data: Path, n: int) -> list[dict]:
    with open(shared_data / "tfns" / "sent_valid.csv", encoding="utf-8", newline="") as handle:
        return [row for _, row in zip(range(n), csv.DictReader(handle))]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture(scope="module")
def tiny_clf(tiny_llama_dir):
    return FinSentClassifier.from_pretrained(str(tiny_llama_dir))


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


def batch_of_twenty(shared_data: Path, bad: str, at: int = 7) -> list[str]:
    texts = [row["text"] for row in tfns_rows(shared_data, 19)]
    return [*texts[:at], bad, *texts[at:]]


def lone_surrogate_error() -> str:
    from finsent.core.prompts import InputError, check_text

    with pytest.raises(InputError) as err:
        check_text("\ud800 Acme beats estimates")
    assert "surrogate" in str(err.value)
    return str(err.value)


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


def test_each_csv_job_deletes_the_earlier_result_folders_older_than_the_age(tmp_path):
    mine = app.ResultFolders(tmp_path, age=0)
    first = mine.new()
    (first / "a-finsent.csv").write_text("text\n")
    foreign = tmp_path / "job-not-ours"
    foreign.mkdir()
    second = mine.new()
    assert not first.exists() and second.is_dir() and foreign.is_dir()  # only what it made is deleted
    keep = app.ResultFolders(tmp_path / "keep", age=3600)
    a, b = keep.new(), keep.new()
    assert a.is_dir() and b.is_dir() and keep.sweep() == []
    default = app.ResultFolders(age=None)
    assert default.root.is_dir() and default.root.name.startswith("finsent-space-results-")
    root = default.root
    del default
    import gc

    gc.collect()
    assert not root.exists()  # a default root is removed with its ResultFolders


def launched(demo):
    """Launch a demo on 127.0.0.1 at a free port; its URL."""
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                           quiet=True)
    return url


def test_a_running_csv_job_does_not_hold_up_classify(tiny_clf, monkeypatch, tmp_path):
    from gradio_client import Client, handle_file

    started, gate, real = threading.Event(), threading.Event(), app.classify_csv_file

    def held(*args, **kwargs):  # the CSV job runs until the test releases it
        started.set()
        assert gate.wait(120), "the test never released the CSV job"
        return real(*args, **kwargs)

    monkeypatch.setattr(app, "classify_csv_file", held)
    demo = app.build_demo(tiny_clf, results_dir=tmp_path / "results")
    url = launched(demo)
    try:
        client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
        path = write_csv(tmp_path / "news.csv", ["text"], [["Acme beats estimates"], ["Zenith slumps"]])
        job = client.submit(handle_file(str(path)), "3", api_name="/classify_csv")
        assert started.wait(60), "the CSV job never started"
        label, _, _ = client.submit("Orion swings to a loss", "3", api_name="/classify").result(timeout=60)
        assert label["label"] == tiny_clf.classify("Orion swings to a loss", "3").label
        assert job.status().code.name == "PROCESSING" and not job.done()  # answered while the CSV job ran
        gate.set()
        with open(job.result(timeout=60), encoding="utf-8", newline="") as handle:
            assert [row["text"] for row in csv.DictReader(handle)] == ["Acme beats estimates", "Zenith slumps"]
    finally:
        gate.set()
        demo.close()


def test_uploads_and_results_of_a_finished_job_are_deleted_after_the_age(tiny_clf, tmp_path):
    import uuid

    from gradio_client import Client, handle_file

    age = 3  # seconds; Gradio checks every second, the app at the next CSV job
    demo = app.build_demo(tiny_clf, delete_cache=(1, age), results_dir=tmp_path / "results")
    url = launched(demo)
    try:
        client = Client(url, verbose=False, download_files=False)  # the server's paths, not downloaded copies
        names = [f"news-{uuid.uuid4().hex}" for _ in range(2)]
        uploads = [write_csv(tmp_path / f"{name}.csv", ["text"], [["Acme beats estimates"]]) for name in names]
        first = client.predict(handle_file(str(uploads[0])), "3", api_name="/classify_csv")
        served_copy = Path(first["path"])  # Gradio's copy in its cache
        assert served_copy.name == f"{names[0]}-finsent.csv" and served_copy.is_file()
        cache = Path(demo.GRADIO_CACHE)
        assert sorted(p.name for p in cache.rglob(f"{names[0]}*")) == [f"{names[0]}-finsent.csv", f"{names[0]}.csv"]
        (job_folder,) = (tmp_path / "results").iterdir()  # the app's own result folder
        assert (job_folder / f"{names[0]}-finsent.csv").is_file()
        deadline = time.monotonic() + 60
        while list(cache.rglob(f"{names[0]}*")) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert list(cache.rglob(f"{names[0]}*")) == []  # Gradio deleted the upload and its copy of the result
        second = client.predict(handle_file(str(uploads[1])), "3", api_name="/classify_csv")
        assert Path(second["path"]).name == f"{names[1]}-finsent.csv"
        assert not job_folder.exists()  # the new job deleted the earlier job's folder
        assert [p.name for p in (tmp_path / "results").rglob("*.csv")] == [f"{names[1]}-finsent.csv"]
    finally:
        demo.close()


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


def test_a_full_queue_refuses_new_requests_and_finishes_the_queued_ones(tiny_clf, monkeypatch):
    from gradio_client import Client
    from gradio_client.utils import QueueError

    gate, real = threading.Event(), tiny_clf.classify

    def held(*args, **kwargs):  # keeps the worker busy until the queue has been tested
        assert gate.wait(60), "the test never released the model"
        return real(*args, **kwargs)

    monkeypatch.setattr(tiny_clf, "classify", held)
    demo = app.build_demo(tiny_clf, queue_size=1)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                           quiet=True)
    try:
        client = Client(url, verbose=False)
        running = client.submit("Acme beats estimates", "3", api_name="/classify")
        deadline = time.monotonic() + 60
        while running.status().code.name != "PROCESSING" and time.monotonic() < deadline:
            time.sleep(0.05)
        waiting = client.submit("Zenith slumps", "3", api_name="/classify")
        while waiting.status().code.name != "IN_QUEUE" and time.monotonic() < deadline:
            time.sleep(0.05)
        refused = client.submit("Orion swings to a loss", "3", api_name="/classify")
        with pytest.raises(QueueError, match="Queue is full"):
            refused.result(timeout=60)
        gate.set()
        assert running.result(timeout=60)[0]["label"] == real("Acme beats estimates", "3").label
        assert waiting.result(timeout=60)[0]["label"] == real("Zenith slumps", "3").label
    finally:
        gate.set()
        demo.close()


# --- assembly and deploy -------------------------------------------------------------------------------


def test_assembled_space_holds_the_app_card_requirements_and_inference_code(tmp_path):
    files = assemble_space(tmp_path, "alice/finsent-test")
    src = Path(__file__).parents[1] / "src" / "finsent"
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
    core = sorted((Path(__file__).parents[1] / "src" / "finsent" / "core").rglob("*.py"))
    assert out.splitlines()[0] == f"Space alice/demo (model bob/model): would upload {4 + len(core)} files"
    assert "  finsent/core/classify.py" in out and "  finsent/core/tables.py" in out and "  requirements.txt" in out


@pytest.fixture()
def hub(tmp_path, monkeypatch):
    from hub_server import HubServer

    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")  # the classic upload path the test server speaks
    with HubServer(tmp_path / "hub") as server:
        yield server


def test_deploy_creates_a_gradio_space_in_one_commit_and_replaces_stale_files(hub):
    first = deploy_space("alice/finsent-demo", "alice/model-a", token=hub.token, endpoint=hub.url)
    repo = hub.repo("alice/finsent-demo", "space")
    assert repo.sdk == "gradio" and len(repo.commits) == 2  # the Hub's initial commit + ours
    head = repo.resolve("main")
    assert head.oid == first.commit and sorted(head.files) == sorted([".gitattributes", *first.files])
    card = hub.read_file("alice/finsent-demo", "README.md", repo_type="space").decode()
    assert front_matter(card)["models"] == ["alice/model-a"]
    assert hub.read_file("alice/finsent-demo", "app.py", repo_type="space") == (SPACE_DIR / "app.py").read_bytes()

    from huggingface_hub import HfApi  # a leftover of an older deployment is deleted by the next one

    HfApi(endpoint=hub.url, token=hub.token).upload_file(path_or_fileobj=b"old", path_in_repo="finsent/old.py",
                                                         repo_id="alice/finsent-demo", repo_type="space")
    second = deploy_space("alice/finsent-demo", "alice/model-b", token=hub.token, endpoint=hub.url)
    assert second.deleted == ["finsent/old.py"] and len(repo.commits) == 4
    assert second.to_dict()["commit"] == repo.resolve("main").oid
    assert sorted(repo.resolve("main").files) == sorted([".gitattributes", *second.files])
    card = hub.read_file("alice/finsent-demo", "README.md", repo_type="space").decode()
    assert front_matter(card)["models"] == ["alice/model-b"]


# --- the running app (real SmolLM2) -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(smollm2_dir):
    """One launch per module: (classifier, demo, gradio_client.Client) on 127.0.0.1."""
    from gradio_client import Client

    clf = FinSentClassifier.from_pretrained(str(smollm2_dir))
    demo = app.build_demo(clf)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                           quiet=True)
    yield clf, demo, Client(url, verbose=False)
    demo.close()


@pytest.mark.slow
def test_classify_endpoint_returns_every_label_probability_like_direct_calls(served):
    clf, _, client = served
    label, table, notice = client.predict("Halcyon Pharma shares tumble after FDA rejection", "3",
                                          api_name="/classify")
    direct = clf.classify("Halcyon Pharma shares tumble after FDA rejection", "3")
    assert label["label"] == direct.label and notice.startswith(f"**{direct.label}** (probability")
    assert {c["label"]: c["confidence"] for c in label["confidences"]} == pytest.approx(direct.probs, abs=1e-5)
    assert table["headers"] == ["text", "label", "p_negative", "p_neutral", "p_positive"]
    texts = ["Northwind raises guidance", "Orion Steel suspends its dividend", "Meridian Bank sets AGM date"]
    label, table, notice = client.predict("\n".join(texts), "7", api_name="/classify")
    assert label == {} and notice == "3 texts classified: see the table." and len(table["headers"]) == 9
    assert [row[1] for row in table["data"]] == [p.label for p in clf.classify(texts, "7")]


@pytest.mark.slow
def test_twenty_concurrent_requests_are_batched_and_all_match_direct_calls(served, shared_data, monkeypatch):
    clf, _, client = served
    texts = [row["text"] for row in tfns_rows(shared_data, 20)]
    sizes, real = [], clf.classify
    monkeypatch.setattr(clf, "classify", lambda items, *a, **k: sizes.append(len(items)) or real(items, *a, **k))
    with ThreadPoolExecutor(20) as pool:
        jobs = list(pool.map(lambda t: client.submit(t, "3", api_name="/classify"), texts))
        results = [job.result(timeout=120) for job in jobs]
    monkeypatch.undo()
    direct = clf.classify(texts, "3")
    assert [r[0]["label"] for r in results] == [p.label for p in direct]
    for (label, _, _), pred in zip(results, direct):
        assert {c["label"]: c["confidence"] for c in label["confidences"]} == pytest.approx(pred.probs, abs=1e-4)
    assert sum(sizes) == 20 and len(sizes) < 20 and max(sizes) <= app.MAX_BATCH  # requests shared model calls


@pytest.mark.slow
def test_one_invalid_request_beside_nineteen_good_ones_fails_alone_on_the_server(served, shared_data, monkeypatch):
    import json

    clf, _, client = served
    raws = batch_of_twenty(shared_data, "\ud800 Acme beats estimates")
    # httpx cannot UTF-8 encode a lone surrogate; sent as the JSON escape \ud800, as any raw HTTP client can.
    monkeypatch.setattr("httpx._content.json_dumps", lambda obj, **kw: json.dumps(obj, **{**kw, "ensure_ascii": True}))
    with ThreadPoolExecutor(20) as pool:
        jobs = list(pool.map(lambda t: client.submit(t, "3", api_name="/classify"), raws))
        results = [job.result(timeout=120) for job in jobs]
    label, table, notice = results.pop(7)
    assert label == {} and table["data"] == []
    assert notice == f"Nothing was classified.\n\n⚠️ Text 1 was not classified: {lone_surrogate_error()}"
    direct = clf.classify(raws[:7] + raws[8:], "3")
    assert [r[0]["label"] for r in results] == [p.label for p in direct]  # all 19 good requests answered
    for (label, _, notice), pred in zip(results, direct):
        assert {c["label"]: c["confidence"] for c in label["confidences"]} == pytest.approx(pred.probs, abs=1e-4)
        assert notice.startswith(f"**{pred.label}** (probability")


@pytest.mark.slow
def test_empty_and_oversized_texts_get_friendly_notices(served):
    _, _, client = served
    label, table, notice = client.predict("   ", "3", api_name="/classify")
    assert label == {} and table["data"] == [] and notice.startswith("Type or paste a financial headline")
    long = "Acme beats estimates " * 200
    _, table, notice = client.predict(long, "3", api_name="/classify")
    assert f"⚠️ Text 1 is longer than {app.MAX_CHARS:,} characters" in notice
    assert table["data"][0][0] == long[: app.MAX_CHARS].strip()


@pytest.mark.slow
def test_csv_endpoint_returns_labels_and_refuses_a_file_without_text_column(served, shared_data, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    clf, _, client = served
    rows = tfns_rows(shared_data, 12)
    path = write_csv(tmp_path / "tfns12.csv", ["text", "label"], [[r["text"], r["label"]] for r in rows])
    out = client.predict(handle_file(str(path)), "3", api_name="/classify_csv")
    with open(out, encoding="utf-8", newline="") as handle:
        result = list(csv.DictReader(handle))
    assert Path(out).name == "tfns12-finsent.csv"
    assert [r["predicted_label"] for r in result] == [p.label for p in clf.classify([r["text"] for r in rows], "3")]
    bad = write_csv(tmp_path / "headlines.csv", ["headline"], [["Acme beats"]])
    with pytest.raises(AppError, match="headlines.csv has no 'text' column"):
        client.predict(handle_file(str(bad)), "3", api_name="/classify_csv")


def wait_for_server(proc: subprocess.Popen, url: str, log: list[str], seconds: float = 120):
    """Collect the process's output lines until its server answers at url (or it dies)."""
    import urllib.request

    reader = threading.Thread(target=lambda: log.extend(proc.stdout), daemon=True)
    reader.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            reader.join(5)
            raise AssertionError(f"server exited with {proc.returncode}:\n{''.join(log)}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no server at {url} after {seconds} s:\n{''.join(log)}")


def run_server(cmd, cwd, env, port, check):
    from gradio_client import Client

    url, log = f"http://127.0.0.1:{port}/", []
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_server(proc, url, log)
        check(Client(url, verbose=False), log)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.slow
def test_deployed_space_downloads_and_runs_python_app_py_from_a_clean_folder(hub, tmp_path, smollm2_dir):
    from huggingface_hub import snapshot_download

    deploy_space("alice/finsent-demo", "alice/model-a", token=hub.token, endpoint=hub.url)
    folder = Path(snapshot_download("alice/finsent-demo", repo_type="space", endpoint=hub.url, token=hub.token,
                                    local_dir=tmp_path / "space"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(FINSENT_MODEL=str(smollm2_dir), GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False")

    def check(client, log):
        label, _, _ = client.predict("Brightwater Energy wins a $2.1 billion contract", "3", api_name="/classify")
        assert label["label"] in SCHEMES["3"]
        # The app imported the finsent copy inside the downloaded Space, not the project's src/.
        assert any(f"finsent code from {folder.resolve() / 'finsent'}" in line for line in log), "".join(log)

    run_server([sys.executable, "app.py"], folder, env, port, check)


@pytest.mark.slow
def test_serve_command_runs_the_app_on_a_local_model_folder(tiny_llama_dir, tmp_path):
    port = free_port()
    finsent = Path(sys.executable).parent / "finsent"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}

    def check(client, log):
        assert any(f"serving {tiny_llama_dir} on http://127.0.0.1:{port}" in line for line in log)
        _, table, _ = client.predict("Acme beats\nZenith slumps", "3", api_name="/classify")
        assert [row[0] for row in table["data"]] == ["Acme beats", "Zenith slumps"]

    run_server([str(finsent), "space", "serve", "--model", str(tiny_llama_dir), "--port", str(port)], tmp_path,
               env, port, check)
