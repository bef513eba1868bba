"""``finsent export RELEASE --format gguf|onnx|pipeline``: run a release outside finsent.

    finsent export releases/smollm2-135m --format gguf --quant f16 --out smollm2-135m.f16.gguf
    finsent export releases/smollm2-135m --format onnx --out smollm2-135m-onnx/
    finsent export releases/smollm2-135m --format pipeline        # (re)adds finsent_pipeline.py in place

- ``gguf`` (``gguf.export_gguf``): one GGUF file for llama.cpp / Ollama / llama-cpp-python, written with the
  ``gguf`` package's ``GGUFWriter`` (f16 or q8_0).
- ``onnx`` (``onnx.export_onnx``): an ONNX graph (``torch.onnx``) of the release that returns the logits
  for input ids, position ids and an additive attention mask, plus the tokenizer files, for onnxruntime.
- ``pipeline``: ships ``finsent_pipeline.py`` (the source of ``finsent.core.pipeline_file``) into the folder and
  registers it in ``config.json`` under ``custom_pipelines``, so that
  ``pipeline("text-classification", model=FOLDER, trust_remote_code=True)`` works without finsent. Every
  release folder gets it at merge time; this format adds it to a folder built before.

Each runtime scores labels exactly as ``FinSentClassifier`` does (the same prompt pieces and token ids):
``gguf.GGUFScorer`` and ``onnx.ONNXScorer`` are the scorers the tests, the export stage and ``eval/bench/`` use.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from finsent.core.errors import ExportInputError
from finsent.core.models import ModelNotAvailableError, check_model_folder
from finsent.core.outputs import write_text_atomic

logger = logging.getLogger(__name__)

RUNTIMES_EXTRA = "pip install 'llama-finsent[runtimes]'"


def check_exportable(folder) -> Path:
    """``folder`` as a Path if it holds a model (config.json + safetensors + tokenizer), else ExportInputError.

    The files are read, not only listed (``models.check_model_folder``: config.json a JSON object naming its
    model_type, safetensors headers matching their sizes; tokenizer.json JSON), so a truncated or damaged file
    is named here, before a model is loaded or an output written.
    """

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ExportInputError(f"{folder} is not a model folder: it has no config.json")
    if not list(folder.glob("*.safetensors")):
        raise ExportInputError(f"{folder} holds no *.safetensors weights")
    if not (folder / "tokenizer.json").is_file():
        raise ExportInputError(f"{folder} has no tokenizer.json (a fast tokenizer file is needed to export)")
    try:
        check_model_folder(folder)
    except ModelNotAvailableError as exc:
        raise ExportInputError(f"{exc} (fix or replace the file, then export again)") from None
    tokenizer = folder / "tokenizer.json"
    try:
        json.loads(tokenizer.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportInputError(f"{tokenizer}: not a tokenizer file ({exc}): copy or save the tokenizer again") from None
    return folder


def copy_tokenizer(release: Path, folder: Path) -> None:
    """The tokenizer files of ``release`` into ``folder`` (for the ONNX export)."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "generation_config.json"):
        if (release / name).is_file():
            shutil.copy2(release / name, folder / name)
    config = json.loads((release / "config.json").read_text(encoding="utf-8"))
    config.pop("custom_pipelines", None)  # the pipeline needs the safetensors weights, which stay in the release
    write_text_atomic(folder / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
