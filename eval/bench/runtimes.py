"""Items/s of 3-class label scoring on one model, same texts, same machine, one run: FinSentClassifier (float32,
exact, shared-prefix KV cache) vs llama.cpp (llama-cpp-python, f16 and q8_0 GGUF) vs onnxruntime (ONNX export).

    .venv/bin/python eval/bench/runtimes.py --model smollm2 --n 128 --threads 2

Every runtime scores the same TFNS validation tweets (../shared/data/tfns/sent_valid.csv, read in place) with the
same prompt; the table also gives each runtime's label agreement with FinSentClassifier. Run it on a quiet machine
(it refuses to start when the 1-minute load average is over --max-load).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TFNS = REPO.parent / "shared" / "data" / "tfns" / "sent_valid.csv"


def tweets(n: int) -> list[str]:
    with open(TFNS, newline="", encoding="utf-8") as f:
        return [row["text"] for _, row in zip(range(n), csv.DictReader(f))]


def timed(fn, texts, warm: int = 4):
    fn(texts[:warm])
    t0 = time.perf_counter()
    out = fn(texts)
    return out, time.perf_counter() - t0


def main(argv=None) -> int:
    import numpy as np
    import torch

    from finsent.classify import FinSentClassifier
    from finsent.export_gguf import GGUFScorer, export_gguf
    from finsent.export_onnx import ONNXScorer, export_onnx
    from finsent.models import locate_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16, help="FinSentClassifier / onnxruntime texts per call")
    p.add_argument("--max-load", type=float, default=1.5)
    p.add_argument("--work", help="folder for the exported files (default: a temporary folder)")
    args = p.parse_args(argv)
    load = os.getloadavg()[0]
    if load > args.max_load:
        print(f"load average {load:.2f} > {args.max_load}: not a quiet machine, no table", file=sys.stderr)
        return 1
    torch.set_num_threads(args.threads)
    model = locate_model(args.model)
    texts = tweets(args.n)
    work = Path(args.work or tempfile.mkdtemp(prefix="finsent-runtimes-"))
    paths = {q: work / f"model.{q}.gguf" for q in ("f16", "q8_0")}
    for quant, path in paths.items():
        if not path.exists():
            export_gguf(model, path, quant=quant)
    onnx_dir = work / "onnx"
    if not (onnx_dir / "model.onnx").exists():
        export_onnx(model, onnx_dir)

    clf = FinSentClassifier.from_pretrained(model, batch_size=args.batch_size)
    rows = []
    ref, secs = timed(lambda t: clf.label_logprobs(t, "3", kind="tweet").numpy(), texts)
    rows.append((f"FinSentClassifier float32 b{args.batch_size} (torch {torch.__version__})", secs, ref))
    for quant, path in paths.items():
        with GGUFScorer(path, threads=args.threads) as scorer:
            got, secs = timed(lambda t, s=scorer: s.label_logprobs(t, "3", "tweet"), texts)
        rows.append((f"llama.cpp {quant} (llama-cpp-python)", secs, got))
    onnx = ONNXScorer(onnx_dir, threads=args.threads, batch_size=args.batch_size)
    got, secs = timed(lambda t: onnx.label_logprobs(t, "3", "tweet"), texts)
    rows.append((f"onnxruntime float32 b{args.batch_size}", secs, got))

    print(f"\n{args.model}: {args.n} TFNS validation tweets, 3-class label scoring, {args.threads} threads, "
          f"1-minute load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at the end (the bench's own "
          f"{args.threads} threads count; much more means something else ran meanwhile and the figures are not "
          "comparable)\n")
    print("| runtime | items/s | label agreement with FinSentClassifier | max abs log-prob diff |")
    print("|---|---:|---:|---:|")
    for name, secs, scores in rows:
        agree = float((np.asarray(scores).argmax(1) == ref.argmax(1)).mean())
        diff = float(np.abs(np.asarray(scores) - ref).max())
        print(f"| {name} | {args.n / secs:.1f} | {agree:.3f} | {diff:.2g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
