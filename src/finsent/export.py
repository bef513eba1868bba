"""``finsent export RELEASE --format gguf|onnx|pipeline``: run a release outside finsent.

    finsent export releases/smollm2-135m --format gguf --quant f16 --out smollm2-135m.f16.gguf
    finsent export releases/smollm2-135m --format onnx --out smollm2-135m-onnx/
    finsent export releases/smollm2-135m --format pipeline        # (re)adds finsent_pipeline.py in place

- ``gguf`` (``export_gguf``): one GGUF file for llama.cpp / Ollama / llama-cpp-python, written with the
  ``gguf`` package's ``GGUFWriter`` (f16 or q8_0).
- ``onnx`` (``export_onnx``): an ONNX graph (``torch.onnx``) of the release that returns the logits
  for input ids, position ids and an additive attention mask, plus the tokenizer files, for onnxruntime.
- ``pipeline``: ships ``finsent_pipeline.py`` (the source of ``finsent.hf_pipeline``) into the folder and
  registers it in ``config.json`` under ``custom_pipelines``, so that
  ``pipeline("text-classification", model=FOLDER, trust_remote_code=True)`` works without finsent. Every
  release folder gets it at merge time; this format adds it to a folder built before.

Each runtime scores labels exactly as ``FinSentClassifier`` does (the same prompt pieces and token ids):
``score_gguf`` and ``score_onnx`` below are the reference scorers the tests and ``eval/bench/`` use.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from .errors import FinsentError, UsageError
from .outputs import write_text_atomic

logger = logging.getLogger(__name__)

FORMATS = ("gguf", "onnx", "pipeline")
# GGUF weight types (export_gguf) and the block each packs a weight row in: the base's row lengths must be multiples
# of it, the pruned MLP width is padded to one with zero neurons. f16 has none; q8_0 packs 32 values a block;
# q4_k_m (llama.cpp's k-quant mix, 4-6 bits a weight, what Ollama ships by default) super-blocks of 256.
QUANT_BLOCK = {"f16": 1, "q8_0": 32, "q4_k_m": 256}
QUANTS = tuple(QUANT_BLOCK)
RUN_IT = """run the exports (the prompt: Instruction: ...\\nInput: TEXT\\nAnswer:, its first line is the label):
  llama.cpp     llama-server -m smollm2-135m.f16.gguf   then POST /completion {"prompt": ..., "n_predict": 3}
                llama-completion -m smollm2-135m.f16.gguf -no-cnv --temp 0 -n 3 -p $'Instruction: ...\\nAnswer:'
  Ollama        printf 'FROM ./smollm2-135m.f16.gguf\\n' > Modelfile && ollama create finsent -f Modelfile
  label scores  finsent.export_gguf.GGUFScorer(FILE).classify(texts)   (llama-cpp-python, the FinGPT prompt)
  onnxruntime   finsent.export_onnx.ONNXScorer(DIR).label_logprobs(texts)
  transformers  pipeline("text-classification", model=RELEASE, trust_remote_code=True)(texts)

in a release: the recipe's export section (export: {gguf: [f16, q8_0], onnx: true}) makes `finsent release` write
them into the release folder (reports/exports.json: sizes, label agreement), the card show how to run them and
`finsent push` upload them in the release's one commit. q8_0 pads a pruned MLP width that is no multiple of 32
(4916 -> 4928) with zero neurons: the same outputs, no re-pruning."""
PIPELINE_FILE = "finsent_pipeline.py"
PIPELINE_TASK = "text-classification"
PIPELINE_ENTRY = {"impl": "finsent_pipeline.FinSentPipeline", "pt": ["AutoModelForCausalLM"], "tf": [],
                  "type": "text"}


class ExportError(FinsentError, RuntimeError):
    """The export could not be written or does not reproduce the release."""


class ExportInputError(UsageError, ValueError):
    """The release folder or an option cannot be exported as asked (the user can fix it)."""


def check_release(folder) -> Path:
    """``folder`` as a Path if it holds a model (config.json + safetensors + tokenizer), else ExportInputError.

    The files are read, not only listed (``models.check_model_folder``: config.json a JSON object naming its
    model_type, safetensors headers matching their sizes; tokenizer.json JSON), so a truncated or damaged file
    is named here, before a model is loaded or an output written.
    """
    from .models import ModelNotAvailableError, check_model_folder

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


# --- plain transformers: the custom pipeline shipped in the folder -----------------------------------


def pipeline_source() -> Path:
    return Path(__file__).resolve().with_name("hf_pipeline.py")


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


# --- command line ------------------------------------------------------------------------------------


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a release for llama.cpp (GGUF), onnxruntime (ONNX) or a plain transformers pipeline",
        description="\n\n".join(__doc__.split("\n\n")[:3]), epilog=RUN_IT,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("release", help="release folder (or any Llama-architecture model folder with a tokenizer.json)")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="gguf: one GGUF file (llama.cpp, Ollama, llama-cpp-python); onnx: a folder with model.onnx "
                        "and the tokenizer (onnxruntime); pipeline: add finsent_pipeline.py to the folder in place")
    p.add_argument("--quant", default="f16", choices=QUANTS,
                   help="GGUF weight type: f16 (default), q8_0 (8-bit blocks of 32) or q4_k_m (llama.cpp's 4-bit "
                        "k-quant mix, blocks of 256, made by llama.cpp's own quantizer: needs llama-cpp-python). A "
                        "pruned MLP width is padded to the block with zero neurons, which change no output")
    p.add_argument("--out", help="GGUF file or ONNX folder to write (default: beside the release folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out (any GGUF file; an ONNX folder even if finsent did not write it)")
    p.set_defaults(func=_export)


def _export(args) -> int:
    release = check_release(args.release)
    if args.format == "pipeline":
        path = add_pipeline(release)
        print(f"custom pipeline: {path} (registered in {release / 'config.json'})")
        return 0
    # Default outputs are named after the folder's real name: "." or "releases/x/.." name none themselves.
    named = release.resolve()
    if not named.name and not args.out:
        raise ExportInputError(f"{release} has no folder name to name the export after: pass --out")
    if args.format == "gguf":
        from .export_gguf import export_gguf

        out = Path(args.out) if args.out else named.with_name(f"{named.name}.{args.quant}.gguf")
        path = export_gguf(release, out, quant=args.quant, overwrite=args.overwrite)
        print(f"GGUF ({args.quant}): {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    from .export_onnx import export_onnx

    out = Path(args.out) if args.out else named.with_name(f"{named.name}-onnx")
    path = export_onnx(release, out, overwrite=args.overwrite)
    print(f"ONNX: {path}")
    return 0


def copy_tokenizer(release: Path, folder: Path) -> None:
    """The tokenizer files of ``release`` into ``folder`` (for the ONNX export)."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "generation_config.json"):
        if (release / name).is_file():
            shutil.copy2(release / name, folder / name)
    config = json.loads((release / "config.json").read_text(encoding="utf-8"))
    config.pop("custom_pipelines", None)  # the pipeline needs the safetensors weights, which stay in the release
    write_text_atomic(folder / "config.json", json.dumps(config, indent=2, sort_keys=True) + "\n")
