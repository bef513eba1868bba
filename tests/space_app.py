"""The Space's app module as the tests load it, and what its tests share: free ports, launches, CSV files, real
tweets, the refusal of a lone surrogate, and the MCP client that checks the server against the API."""

from __future__ import annotations

import ast
import asyncio
import csv
import os
import socket
from pathlib import Path

import pytest
import yaml

from finsent.hub.space import load_app

app = load_app()
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


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


def batch_of_twenty(shared_data: Path, bad: str, at: int = 7) -> list[str]:
    texts = [row["text"] for row in tfns_rows(shared_data, 19)]
    return [*texts[:at], bad, *texts[at:]]


def lone_surrogate_error() -> str:
    from finsent.core.prompts import InputError, check_text

    with pytest.raises(InputError) as err:
        check_text("\ud800 Acme beats estimates")
    assert "surrogate" in str(err.value)
    return str(err.value)


def launched(demo):
    """Launch a demo on 127.0.0.1 at a free port; its URL."""
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                           quiet=True)
    return url


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


def front_matter(text: str) -> dict:
    _, meta, _ = text.split("---", 2)
    return yaml.safe_load(meta)
