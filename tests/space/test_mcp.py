"""The Space as an MCP server: Gradio's MCP server (``mcp_server=True``) serves /classify as a tool; an agent's
``mcp`` client on 127.0.0.1 gets the same labels and probabilities as the Gradio API and the classifier."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from space_app import app, serve

from finsent.core.classify import FinSentClassifier

pytest.importorskip("mcp", reason='the MCP server needs the mcp package: pip install "gradio[mcp]"')


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
