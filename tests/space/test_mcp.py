"""The Space as an MCP server: Gradio's MCP server (``mcp_server=True``) serves /classify as a tool; an agent's
``mcp`` client on 127.0.0.1 gets the same labels and probabilities as the Gradio API and the classifier."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import os
import socket

import pytest

from finsent.core.classify import FinSentClassifier
from finsent.hub.space import load_app

pytest.importorskip("mcp", reason='the MCP server needs the mcp package: pip install "gradio[mcp]"')
app = load_app()
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

TEXTS = ["Acme Corp beats third-quarter estimates and raises full-year guidance",
         "$ZEN down 9% premarket as the CEO resigns amid an accounting review",
         "The board will meet on Thursday to discuss the agenda"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def mcp_session(url: str, calls: list[dict]):
    """(tool names, [parsed result of each call]) from the MCP server at ``url`` (streamable HTTP)."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async with streamablehttp_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            results = []
            for args in calls:
                result = await session.call_tool("on_classify", args)
                assert not result.isError, result
                results.append(ast.literal_eval(result.content[0].text))  # [label, table, notice]
            return tools, results


def serve(classifier):
    demo = app.build_demo(classifier)
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                           mcp_server=True, quiet=True)
    return demo, url


def check_same_as_api_and_classifier(classifier, texts):
    from gradio_client import Client

    demo, url = serve(classifier)
    try:
        calls = [{"text": "\n".join(texts), "scheme": "3"}, {"text": texts[0], "scheme": "7"}]
        tools, results = asyncio.run(mcp_session(url + "gradio_api/mcp/", calls))
        client = Client(url, verbose=False)
        api = [client.predict(c["text"], c["scheme"], api_name="/classify") for c in calls]
    finally:
        demo.close()
    assert "on_classify" in tools and "Financial sentiment" in tools["on_classify"].description
    assert set(tools["on_classify"].inputSchema["properties"]) == {"text", "scheme"}
    many, one = results
    assert [row[:2] for row in many[1]["data"]] == [row[:2] for row in api[0][1]["data"]]
    assert many[1]["data"] == api[0][1]["data"] and one[0] == api[1][0]  # probabilities too (4 decimals / exact)
    direct = classifier.classify(list(texts), "3")
    assert [row[1] for row in many[1]["data"]] == [p.label for p in direct]
    single = classifier.classify(texts[0], "7")
    assert one[0]["label"] == single.label  # gr.Label's value: the top label and every label's confidence
    assert {c["label"]: c["confidence"] for c in one[0]["confidences"]} == pytest.approx(single.probs, abs=1e-6)
    return [row[1] for row in many[1]["data"]]


def test_mcp_tool_gives_the_api_labels_tiny_model(tiny_llama_dir):
    check_same_as_api_and_classifier(FinSentClassifier.from_pretrained(str(tiny_llama_dir)), TEXTS)


@pytest.mark.slow
def test_mcp_tool_gives_the_api_labels_real_smollm2(smollm2_dir, shared_data):
    import csv

    with open(shared_data / "tfns" / "sent_valid.csv", newline="", encoding="utf-8") as f:
        tweets = [row["text"] for _, row in zip(range(12), csv.DictReader(f))]
    labels = check_same_as_api_and_classifier(FinSentClassifier.from_pretrained(str(smollm2_dir)), tweets)
    assert len(labels) == 12


def test_the_space_launches_its_mcp_server_when_mcp_is_installed(monkeypatch):
    seen = {}
    monkeypatch.setattr(app.FinSentClassifier, "from_pretrained", classmethod(lambda cls, model: "clf"))
    monkeypatch.setattr(app, "build_demo", lambda classifier: "demo")
    monkeypatch.setattr(app, "launch", lambda demo, **kwargs: seen.update(kwargs, demo=demo))
    monkeypatch.setenv("FINSENT_MODEL", "smollm2")
    app.main()
    assert seen == {"demo": "demo", "mcp_server": True}
    monkeypatch.setenv("FINSENT_MCP", "0")
    app.main()
    assert seen["mcp_server"] is False


# --- bad input: the CLI's message, a 4xx, one log line and never a traceback --------------------------------

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def tool_call(text) -> dict:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "on_classify", "arguments": {"text": text, "scheme": "3"}}}


@pytest.fixture(scope="module")
def mcp_url(tiny_llama_dir):
    demo, url = serve(FinSentClassifier.from_pretrained(str(tiny_llama_dir)))
    yield url + "gradio_api/mcp/"
    demo.close()


def refusals(caplog) -> list[str]:
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    return [r.getMessage() for r in caplog.records if r.name == "finsent.space"]


def test_a_lone_surrogate_gets_the_cli_message_from_the_mcp_tool(mcp_url, monkeypatch, capfd, caplog):
    import httpx

    from finsent.core.prompts import InputError, check_text

    with pytest.raises(InputError) as err:
        check_text("Acme\n\ud800 beats")
    expected = f"argument 'text': {err.value}"
    assert expected == r"argument 'text': text is not valid Unicode (lone surrogate '\ud800' at character 6): send " \
                       "UTF-8 text"
    # Sent as the JSON escape \ud800, as any JSON client can (the server's own loopback call could not send it on).
    body = json.dumps(tool_call("Acme\n\ud800 beats")).encode("ascii")
    with caplog.at_level(logging.WARNING):
        answer = httpx.post(mcp_url, content=body, headers=HEADERS, timeout=60)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"jsonrpc": "2.0", "id": 7,
                             "result": {"content": [{"type": "text", "text": expected}], "isError": True}}
    assert refusals(caplog) == [f"MCP tool call refused: {expected}"]
    assert "Traceback" not in capfd.readouterr().err

    async def call():  # an agent's client (mcp over httpx) reads the answer as the tool's error
        from mcp import ClientSession
        from mcp.client.streamable_http import streamablehttp_client

        async with streamablehttp_client(mcp_url) as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await session.call_tool("on_classify", {"text": "Acme\n\ud800 beats", "scheme": "3"})

    monkeypatch.setattr("httpx._content.json_dumps", lambda obj, **kw: json.dumps(obj, **{**kw, "ensure_ascii": True}))
    result = asyncio.run(call())
    assert result.isError and [c.text for c in result.content] == [expected]


def test_a_body_that_is_not_utf8_gets_400_and_one_log_line(mcp_url, capfd, caplog):
    import httpx

    body = json.dumps(tool_call("Caf\u00e9 chain beats estimates"), ensure_ascii=False).encode("latin-1")
    offset = body.index(b"\xe9")
    with caplog.at_level(logging.WARNING):
        answer = httpx.post(mcp_url, content=body, headers=HEADERS, timeout=60)
    message = f"Parse error: the request body is not UTF-8 (byte 0xe9 at offset {offset})"
    assert answer.status_code == 400
    error = {"code": -32700, "message": f"{message}: send UTF-8"}
    assert answer.json() == {"jsonrpc": "2.0", "id": None, "error": error}
    assert refusals(caplog) == [f"MCP request refused: {message}"]
    assert "Traceback" not in capfd.readouterr().err
    good = httpx.post(mcp_url, json=tool_call("Caf\u00e9 chain beats estimates"), headers=HEADERS, timeout=60)
    assert good.status_code == 200 and "chain beats estimates" in good.text  # a UTF-8 body is served as before
