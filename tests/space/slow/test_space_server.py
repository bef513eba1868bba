"""The Gradio Space served: the app launched once (module fixture) on the real SmolLM2 at 127.0.0.1 and driven
through gradio_client, the deployed folder's `python app.py`, `finsent space serve`, CSV jobs that run beside
classify, a full queue, the deploy to the loopback Hub, and the clean-up of finished jobs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from space_app import (
    app,
    batch_of_twenty,
    free_port,
    front_matter,
    launched,
    lone_surrogate_error,
    tfns_rows,
    write_csv,
)

from finsent import SCHEMES, FinSentClassifier
from finsent.hub.space import (
    SPACE_DIR,
    deploy_space,
)

# --- the batched handler and the CSV pipeline on a tiny model ---------------------------------------------


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


def test_empty_and_oversized_texts_get_friendly_notices(served):
    _, _, client = served
    label, table, notice = client.predict("   ", "3", api_name="/classify")
    assert label == {} and table["data"] == [] and notice.startswith("Type or paste a financial headline")
    long = "Acme beats estimates " * 200
    _, table, notice = client.predict(long, "3", api_name="/classify")
    assert f"⚠️ Text 1 is longer than {app.MAX_CHARS:,} characters" in notice
    assert table["data"][0][0] == long[: app.MAX_CHARS].strip()


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
