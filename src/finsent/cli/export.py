"""``finsent export RELEASE --format gguf|onnx|pipeline``: one command over the three exporters."""

from __future__ import annotations

import argparse
from pathlib import Path

from finsent.core.errors import ExportInputError
from finsent.core.pipeline import add_pipeline
from finsent.core.recipe_values import QUANTS
from finsent.export.formats import __doc__ as FORMATS_DOC
from finsent.export.formats import check_exportable
from finsent.export.gguf import export_gguf
from finsent.export.onnx import export_onnx

FORMATS = ("gguf", "onnx", "pipeline")
RUN_IT = """run the exports (the prompt: Instruction: ...\\nInput: TEXT\\nAnswer:, its first line is the label):
  llama.cpp     llama-server -m smollm2-135m.f16.gguf   then POST /completion {"prompt": ..., "n_predict": 3}
                llama-completion -m smollm2-135m.f16.gguf -no-cnv --temp 0 -n 3 -p $'Instruction: ...\\nAnswer:'
  Ollama        printf 'FROM ./smollm2-135m.f16.gguf\\n' > Modelfile && ollama create finsent -f Modelfile
  label scores  finsent.export.gguf.GGUFScorer(FILE).classify(texts)   (llama-cpp-python, the FinGPT prompt)
  onnxruntime   finsent.export.onnx.ONNXScorer(DIR).label_logprobs(texts)
  transformers  pipeline("text-classification", model=RELEASE, trust_remote_code=True)(texts)

in a release: the recipe's export section (export: {gguf: [f16, q8_0], onnx: true}) makes `finsent release` write
them into the release folder (reports/exports.json: sizes, label agreement), the card show how to run them and
`finsent push` upload them in the release's one commit. q8_0 pads a pruned MLP width that is no multiple of 32
(4916 -> 4928) with zero neurons: the same outputs, no re-pruning."""


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="export a release for llama.cpp (GGUF), onnxruntime (ONNX) or a plain transformers pipeline",
        description="\n\n".join(FORMATS_DOC.split("\n\n")[:3]), epilog=RUN_IT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    release = check_exportable(args.release)
    if args.format == "pipeline":
        path = add_pipeline(release)
        print(f"custom pipeline: {path} (registered in {release / 'config.json'})")
        return 0
    # Default outputs are named after the folder's real name: "." or "releases/x/.." name none themselves.
    named = release.resolve()
    if not named.name and not args.out:
        raise ExportInputError(f"{release} has no folder name to name the export after: pass --out")
    if args.format == "gguf":
        out = Path(args.out) if args.out else named.with_name(f"{named.name}.{args.quant}.gguf")
        path = export_gguf(release, out, quant=args.quant, overwrite=args.overwrite)
        print(f"GGUF ({args.quant}): {path} ({path.stat().st_size / 1e6:.1f} MB)")
        return 0
    out = Path(args.out) if args.out else named.with_name(f"{named.name}-onnx")
    path = export_onnx(release, out, overwrite=args.overwrite)
    print(f"ONNX: {path}")
    return 0
