"""Items/s of 3-class label scoring on one model, same texts, same machine, one run: our scorer (FinSentClassifier:
float32 exact at several batch sizes, plus its approximate bf16 and int8 modes) vs llama.cpp (llama-cpp-python, f16
q8_0 and q4_k_m GGUF) vs onnxruntime (the ONNX export, float32).

    .venv/bin/python eval/bench/runtimes.py --model RELEASE --n 64 --out eval/bench/runtimes --name tuned-smollm2
    .venv/bin/python eval/bench/runtimes.py --shape llama-finsent-s --n 32 --out eval/bench/runtimes \\
        --name llama-finsent-s

Every runtime scores the same TFNS validation tweets (../shared/data/tfns/sent_valid.csv, read in place) with the
same prompt and the same sums (the answer tokens' log-probabilities); the table gives each runtime's items/s and its
label agreement with FinSentClassifier float32. The exports are written first (into --work, reused when there),
then the runtimes are timed one after the other, each after a warm-up call on 4 texts. Run it on a quiet machine:
it refuses to start when the 1-minute load average is over --max-load, and records it at the start and the end.
``--shape`` builds random weights with the published model's shape (``finsent.speed.shape``, 4916 neurons a
layer; its q8_0 file pads them to 4928 and its q4_k_m file to 5120 with zero neurons; ``--round-to 32`` prunes
to 4896 instead). A model whose base widths k-quants cannot pack (SmolLM2's hidden 576) gets no q4_k_m row.

Writes ``NAME.json`` (rows, git commit, CPU, versions, seeds, load) and ``NAME.md`` (the table) into --out.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from finsent.core.provenance import cpu_flags, cpu_name, git_commit, library_versions

REPO = Path(__file__).resolve().parents[2]
TFNS = REPO.parent / "shared" / "data" / "tfns" / "sent_valid.csv"
SEED = 0  # the random weights of --shape (finsent.speed.shape.random_shape_model)


def tweets(n: int) -> list[str]:
    with open(TFNS, newline="", encoding="utf-8") as f:
        return [row["text"] for _, row in zip(range(n), csv.DictReader(f))]


def timed(fn, texts, warm: int = 4):
    fn(texts[:warm])
    t0 = time.perf_counter()
    out = fn(texts)
    return out, time.perf_counter() - t0


def versions() -> dict:
    return library_versions(("torch", "transformers", "llama-cpp-python", "onnxruntime", "gguf"))


def shape_folder(work: Path, round_to: int) -> Path:
    """The published shape (random weights, Llama 3 tokenizer) saved as a release-like fp16 folder."""
    import torch

    from finsent.build.pruning import kept_size
    from finsent.speed.shape import llama3_tokenizer, random_shape_model

    folder = work / f"shape-r{round_to}"
    if (folder / "config.json").is_file():
        return folder
    model = random_shape_model("llama-finsent-s", seed=SEED)
    width = kept_size(8192, 2048, ratio=0.4, round_to=round_to)
    if width != model.config.intermediate_size:  # drop the last neurons: speed does not depend on which
        for layer in model.model.layers:
            mlp = layer.mlp
            for name in ("gate_proj", "up_proj"):
                old = getattr(mlp, name)
                new = torch.nn.Linear(old.in_features, width, bias=False)
                new.weight.data = old.weight.data[:width].clone()
                setattr(mlp, name, new)
            old = mlp.down_proj
            new = torch.nn.Linear(width, old.out_features, bias=False)
            new.weight.data = old.weight.data[:, :width].clone()
            mlp.down_proj = new
        model.config.intermediate_size = width
    tokenizer, note = llama3_tokenizer()
    model.half().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "tokenizer_note.txt").write_text(note + "\n")
    return folder


def main(argv=None) -> int:
    import numpy as np
    import torch

    from finsent.core.classify import FinSentClassifier
    from finsent.core.errors import ExportInputError
    from finsent.core.models import locate_model
    from finsent.export.gguf import GGUFScorer, export_gguf
    from finsent.export.onnx import ONNXScorer, export_onnx

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="release folder, model folder or 'smollm2'")
    which.add_argument("--shape", choices=["llama-finsent-s"], help="random weights of the published shape")
    p.add_argument("--round-to", type=int, default=1, help="--shape: round the MLP width down to a multiple")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16],
                   help="FinSentClassifier float32 batch sizes (the best is the exact row to beat)")
    p.add_argument("--onnx-batch-size", type=int, default=16)
    p.add_argument("--skip", nargs="*", default=[], choices=["onnx", "q8_0", "q4_k_m", "bf16", "int8"])
    p.add_argument("--max-load", type=float, default=1.5)
    p.add_argument("--prepare-only", action="store_true", help="write the exports into --work and stop (no timing)")
    p.add_argument("--work", help="folder for the exported files (default: a temporary folder)")
    p.add_argument("--out", type=Path, help="folder for NAME.json and NAME.md")
    p.add_argument("--name", default="runtimes")
    args = p.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="finsent-runtimes-"))
    work.mkdir(parents=True, exist_ok=True)
    model = str(shape_folder(work, args.round_to)) if args.shape else locate_model(args.model)

    # 1. the exports (untimed; reused when --work already holds them)
    notes = {}
    paths = {}
    for quant in ("f16", "q8_0", "q4_k_m"):
        if quant in args.skip:
            continue
        path = work / f"model.{quant}.gguf"
        if not path.exists():
            try:  # q8_0 / q4_k_m pad a pruned MLP width to 32 / 256 with zero neurons (finsent.export.gguf.ffn_width)
                export_gguf(model, path, quant=quant)
            except ExportInputError as exc:
                notes[f"llama.cpp {quant}"] = f"not run: {exc}"
                continue
        paths[quant] = path
    onnx_dir = work / "onnx"
    if "onnx" not in args.skip and not (onnx_dir / "model.onnx").exists():
        export_onnx(model, onnx_dir)
    if args.prepare_only:
        print(f"exports ready in {work}; {notes or ''}")
        return 0

    load = os.getloadavg()[0]
    if load > args.max_load:
        print(f"load average {load:.2f} > {args.max_load}: not a quiet machine, no table", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    texts = tweets(args.n)
    rows = []

    def add(runtime, config, exact, secs, scores, size_mb):
        rows.append({"runtime": runtime, "config": config, "exact": exact, "seconds": round(secs, 3),
                     "items_per_second": round(args.n / secs, 3), "scores": np.asarray(scores), "size_mb": size_mb})

    weights_mb = sum(p.stat().st_size for p in Path(model).glob("*.safetensors")) / 1e6
    clf = FinSentClassifier.from_pretrained(model, dtype="float32")
    for b in args.batch_sizes:
        clf.batch_size = b
        got, secs = timed(lambda t, c=clf: c.label_logprobs(t, "3", kind="tweet").double().numpy(), texts)
        add("FinSentClassifier (torch)", f"float32 b{b}", True, secs, got, weights_mb)
    exact_rows = [r for r in rows if r["exact"]]
    best = max(exact_rows, key=lambda r: r["items_per_second"])
    ref = best["scores"]
    batch = int(best["config"].split("b")[-1])
    del clf
    for mode in ("bf16", "int8"):
        if mode in args.skip:
            continue
        kwargs = {"dtype": "bfloat16"} if mode == "bf16" else {"dtype": "float32", "quantize": "int8"}
        approx = FinSentClassifier.from_pretrained(model, batch_size=1 if mode == "int8" else batch, **kwargs)
        got, secs = timed(lambda t, c=approx: c.label_logprobs(t, "3", kind="tweet").double().numpy(), texts)
        add("FinSentClassifier (torch)", f"{mode} b{approx.batch_size}", False, secs, got, None)
        del approx
    for quant, path in paths.items():
        with GGUFScorer(path, threads=args.threads) as scorer:
            got, secs = timed(lambda t, s=scorer: s.label_logprobs(t, "3", "tweet"), texts)
        add("llama.cpp (llama-cpp-python)", quant, False, secs, got, path.stat().st_size / 1e6)
    if "onnx" not in args.skip:
        onnx = ONNXScorer(onnx_dir, threads=args.threads, batch_size=args.onnx_batch_size)
        got, secs = timed(lambda t: onnx.label_logprobs(t, "3", "tweet"), texts)
        size = sum(p.stat().st_size for p in onnx_dir.glob("model.onnx*")) / 1e6
        add("onnxruntime", f"float32 b{args.onnx_batch_size}", False, secs, got, size)
        del onnx
    end_load = os.getloadavg()[0]

    for r in rows:
        scores = r.pop("scores")
        r["agreement"] = round(float((scores.argmax(1) == ref.argmax(1)).mean()), 4)
        r["max_abs_logprob_diff"] = float(np.abs(scores - ref).max())
        r["x_best_exact"] = round(r["items_per_second"] / best["items_per_second"], 2)
    result = {"model": args.shape and f"{args.shape} shape, random weights (seed {SEED}), MLP "
                                       f"{json.loads((Path(model) / 'config.json').read_text())['intermediate_size']}"
              or str(args.model), "n": args.n, "texts": "TFNS validation (sent_valid.csv), first n tweets",
              "scheme": "3", "kind": "tweet", "threads": args.threads, "cpu": cpu_name(),
              "cpu_flags": cpu_flags(), "commit": git_commit(),
              "versions": versions(), "seed": SEED if args.shape else None, "load_start": round(load, 2),
              "load_end": round(end_load, 2), "reference": f"FinSentClassifier {best['config']}",
              "notes": notes, "rows": rows, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    table = format_table(result)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / f"{args.name}.md").write_text(table + "\n")
    return 0


def format_table(result: dict) -> str:
    lines = [f"{result['model']}: {result['n']} TFNS validation tweets, 3-class label scoring, {result['threads']} "
             f"threads, {result['cpu']} ({', '.join(result.get('cpu_flags', []))}); 1-minute load average "
             f"{result['load_start']} at the start, "
             f"{result['load_end']} at the end (the bench's own threads count); commit {str(result['commit'])[:10]}",
             "", "| runtime | configuration | exact | items/s | x best exact | same label as the reference | "
             "max abs log-prob diff | weights on disk |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        size = "–" if r["size_mb"] is None else f"{r['size_mb']:,.0f} MB"
        lines.append(f"| {r['runtime']} | {r['config']} | {'yes' if r['exact'] else 'no'} | "
                     f"{r['items_per_second']:.2f} | {r['x_best_exact']:.2f} | {100 * r['agreement']:.1f} % | "
                     f"{r['max_abs_logprob_diff']:.2g} | {size} |")
    lines.append(f"\nReference: {result['reference']} (the fastest exact row).")
    for what, note in result["notes"].items():
        lines.append(f"{what}: {note}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
