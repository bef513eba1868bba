"""Corpus files for the ``finsent classify --input/--output`` tests: headlines, and CSV and JSONL files written and
read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

WORDS = ["beats", "misses", "keeps", "raises", "cuts", "holds"]


def headline(i: int) -> str:
    return f"Company {i} {WORDS[i % len(WORDS)]} its outlook" + " as analysts watch" * (i % 5)


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
