"""Inputs of the export tests: a few headlines, a tiny recipe with an ``export:`` section, and a folder copy."""

from __future__ import annotations

import shutil
from pathlib import Path

from finsent.core.recipes import load_recipe

TEXTS = [
    "Acme Corp beats third-quarter estimates and raises full-year guidance",
    "$ZEN down 9% premarket as the CEO resigns amid an accounting review",
    "The board will meet on Thursday to discuss the agenda",
    "Lakeside Bank fined $2bn over money-laundering failures",
    "Crude oil slips 1.2% as OPEC+ weighs output; Brent at $81.40",
]
RECIPE_TEXT = """
name: tiny
model: {base: smollm2}
prune: {method: ppm, ratio: 0.4, round_to: ROUND}
finetune: {data: [{path: TEXTS, schema: finsent, scheme: 3}], max_steps: 1}
eval: {benchmarks: [{name: finsent, path: TEXTS}], speed_texts: TEXTS}
export: EXPORT
"""


def recipe(tmp_path: Path, texts: Path, export: str, round_to: int = 32):
    path = tmp_path / "tiny.yaml"
    path.write_text(RECIPE_TEXT.replace("TEXTS", str(texts)).replace("ROUND", str(round_to))
                    .replace("EXPORT", export))
    return load_recipe(path)


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
