"""The Space as an MCP server, served: the tool gives the same labels and probabilities as the Gradio API and the
classifier, on the tiny random Llama and on the real SmolLM2."""

from __future__ import annotations

import pytest
from space_app import check_same_as_api_and_classifier

from finsent.core.classify import FinSentClassifier

pytest.importorskip("mcp", reason='the MCP server needs the mcp package: pip install "gradio[mcp]"')

TEXTS = ["Acme Corp beats third-quarter estimates and raises full-year guidance",
         "$ZEN down 9% premarket as the CEO resigns amid an accounting review",
         "The board will meet on Thursday to discuss the agenda"]


def test_mcp_tool_gives_the_api_labels_real_smollm2(smollm2_dir, shared_data):
    import csv

    with open(shared_data / "tfns" / "sent_valid.csv", newline="", encoding="utf-8") as f:
        tweets = [row["text"] for _, row in zip(range(12), csv.DictReader(f))]
    labels = check_same_as_api_and_classifier(FinSentClassifier.from_pretrained(str(smollm2_dir)), tweets)
    assert len(labels) == 12


def test_mcp_tool_gives_the_api_labels_tiny_model(tiny_llama_dir):
    check_same_as_api_and_classifier(FinSentClassifier.from_pretrained(str(tiny_llama_dir)), TEXTS)
