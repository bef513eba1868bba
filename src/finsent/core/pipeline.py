"""The custom ``pipeline()`` every release carries: ``finsent_pipeline.py`` (the source is ``pipeline_file.py`` beside
this module, standalone: it imports transformers only) registered in the folder's ``config.json``, so that
``pipeline("text-classification", model=RELEASE, trust_remote_code=True)`` labels texts without finsent.
"""

from __future__ import annotations

import json
from pathlib import Path

from finsent.core.errors import ExportInputError
from finsent.core.outputs import write_text_atomic

PIPELINE_FILE = "finsent_pipeline.py"
PIPELINE_TASK = "text-classification"
PIPELINE_ENTRY = {"impl": "finsent_pipeline.FinSentPipeline", "pt": ["AutoModelForCausalLM"], "tf": [],
                  "type": "text"}


def pipeline_source() -> Path:
    return Path(__file__).resolve().with_name("pipeline_file.py")


def add_pipeline(folder) -> Path:
    """Copy the custom pipeline into ``folder`` and register it in its ``config.json``; returns the file."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ExportInputError(f"{folder} is not a model folder: it has no config.json")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    target = folder / PIPELINE_FILE
    write_text_atomic(target, pipeline_source().read_text(encoding="utf-8"))
    config["custom_pipelines"] = {PIPELINE_TASK: dict(PIPELINE_ENTRY)}
    write_text_atomic(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return target
