"""Bad input to the running Space gets a clear answer and one log line, never a traceback: its HTTP API on a real
localhost server (raw JSON requests, as any client can send), the CSV endpoint, and ``finsent space serve``'s
address. The MCP tool's refusals are in test_mcp.py."""

from __future__ import annotations

import json
import logging
import os
import socket

import httpx
import pytest

from finsent import FinSentClassifier
from finsent.cli import main as cli_main
from finsent.hub.space import load_app

app = load_app()
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, api: str, data: list) -> tuple[str, object]:
    """(event, data) of one call to the Space's HTTP API (/gradio_api/call/<api>), the JSON sent as it is."""
    with httpx.Client(base_url=url, timeout=60) as http:
        posted = http.post(f"gradio_api/call/{api}", json={"data": data})
        posted.raise_for_status()
        stream = http.get(f"gradio_api/call/{api}/{posted.json()['event_id']}").text
    event, payload = None, None
    for line in stream.splitlines():
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event in ("complete", "error"):
            payload = json.loads(line[len("data: "):])
    return event, payload


@pytest.fixture(scope="module")
def space(tiny_llama_dir):
    """(URL, classifier) of the app on the tiny Llama, launched once on 127.0.0.1."""
    clf = FinSentClassifier.from_pretrained(str(tiny_llama_dir))
    demo = app.build_demo(clf)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                           quiet=True)
    yield url, clf
    demo.close()


NOT_CLASSIFIED = "Nothing was classified.\n\n⚠️ "
NOT_A_STRING = NOT_CLASSIFIED + "The text must be a string (one text per line), got {}: send the text as a JSON string."


@pytest.mark.parametrize(("text", "scheme", "notice"), [
    (["Acme beats", "Zenith slumps"], "3", NOT_A_STRING.format("list")),
    (42, "3", NOT_A_STRING.format("int")),
    ({"text": "Acme beats"}, "7", NOT_A_STRING.format("dict")),
    (True, "3", NOT_A_STRING.format("bool")),
    ("Acme beats", 3, 'The label scheme must be the string "3" or "7", got int: 3.'),
    ("Acme beats", ["3"], "The label scheme must be the string \"3\" or \"7\", got list: ['3']."),
    ("Acme beats", "9", "Unknown label scheme '9': choose 3 or 7 classes."),
    ("\u200b\ufeff", "3", f"{NOT_CLASSIFIED}Text 1 was not classified: text is empty (only invisible characters, "
                          "such as U+200B ZERO WIDTH SPACE): nothing to classify"),
])
def test_the_api_refuses_what_is_not_a_text_instead_of_classifying_its_str(space, capfd, text, scheme, notice):
    url, _ = space
    event, (label, table, answer) = call(url, "classify", [text, scheme])
    assert event == "complete" and answer == notice
    assert label == {} and table["data"] == []
    assert "Traceback" not in capfd.readouterr().err


def test_the_api_still_classifies_strings_alike(space):
    url, clf = space
    event, (label, table, answer) = call(url, "classify", ["Acme beats\n\u200b\nZenith slumps", "3"])
    assert event == "complete" and [row[0] for row in table["data"]] == ["Acme beats", "Zenith slumps"]
    assert [row[1] for row in table["data"]] == [p.label for p in clf.classify(["Acme beats", "Zenith slumps"], "3")]
    assert answer == ("2 texts classified: see the table.\n\n⚠️ Text 2 was not classified: text is empty (only "
                      "invisible characters, such as U+200B ZERO WIDTH SPACE): nothing to classify")


def test_a_refused_csv_is_one_log_line_not_a_traceback(space, tmp_path, capfd, caplog):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    url, _ = space
    bad = tmp_path / "headlines.csv"
    bad.write_text("headline\nAcme beats\n", encoding="utf-8")
    client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
    with caplog.at_level(logging.WARNING, logger="finsent.space"):
        with pytest.raises(AppError, match="headlines.csv has no 'text' column"):
            client.predict(handle_file(str(bad)), "3", api_name="/classify_csv")
        event, payload = call(url, "classify_csv", [None, "3"])
    assert event == "error" and payload["error"] == "Upload a CSV file with a 'text' column first."
    assert "Traceback" not in capfd.readouterr().err
    assert [r.getMessage() for r in caplog.records if r.name == "finsent.space"] == [
        "/classify_csv refused an input: headlines.csv has no 'text' column (its columns: 'headline'). Put the "
        "texts to classify in a column named text.",
        "/classify_csv refused an input: Upload a CSV file with a 'text' column first."]


# --- finsent space serve: the address -----------------------------------------------------------------


@pytest.fixture()
def busy_port():
    """A port a server on 127.0.0.1 listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_serve_on_a_busy_port_is_one_line_before_the_model_loads(busy_port, tmp_path, capsys):
    # The model named does not exist: the address is checked first.
    code = cli_main(["space", "serve", "--model", str(tmp_path / "no-model"), "--port", str(busy_port)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err == (f"finsent space: error: port {busy_port} on 127.0.0.1 is already in use (another server, or an "
                   "earlier `finsent space serve`?): stop it, or pass another port with --port\n")
    code = cli_main(["space", "serve", "--host", "no-such-host.invalid", "--port", str(free_port())])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("finsent space: error: cannot listen on --host 'no-such-host.invalid': ")
    with pytest.raises(SystemExit):
        cli_main(["space", "serve", "--port", "70000"])
    assert "argument --port: must be a port number from 1 to 65535, got '70000'" in capsys.readouterr().err


def test_serve_on_a_port_taken_while_the_model_loads_is_one_line(busy_port, tiny_llama_dir, monkeypatch, capsys):
    import finsent.hub.space

    monkeypatch.setattr(finsent.hub.space, "check_address", lambda host, port: None)  # the port is taken after it
    code = cli_main(["space", "serve", "--model", str(tiny_llama_dir), "--port", str(busy_port)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.endswith(f"finsent space: error: port {busy_port} on 127.0.0.1 is already in use (another server, "
                        "or an earlier `finsent space serve`?): stop it, or pass another port with --port\n")
