"""``finsent classify``: label texts given as arguments or on stdin, or a corpus file to file."""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator

from finsent.core.args import positive_int
from finsent.core.classify import FinSentClassifier, iter_chunks
from finsent.core.errors import UsageError
from finsent.core.prompts import InputError, check_text
from finsent.corpus.engine import classify_corpus
from finsent.corpus.ray_engine import classify_with_ray


def register(sub) -> None:
    p = sub.add_parser(
        "classify",
        help="label financial texts (JSON lines out, or a corpus file to file)",
        description="Classify texts given as arguments, or one per line on stdin (UTF-8), and print one JSON "
                    "object per text, each batch as soon as it is done. With --input/--output: classify a CSV, "
                    "JSON-lines or parquet file (or a folder of shards) into a file of the output's format, "
                    "keeping every column and adding predicted_label and one p_<label> column per label; "
                    "resumable (run the same command again after an interruption), see finsent.corpus.engine.",
    )
    p.add_argument("texts", nargs="*", help="texts to classify; none = read lines from stdin")
    corpus = p.add_argument_group("a corpus, file to file")
    corpus.add_argument("--input", help="a .csv, .jsonl or .parquet file, or a folder of them (shards)")
    corpus.add_argument("--output", help="the output file; its suffix (.csv, .jsonl, .parquet) sets the format")
    corpus.add_argument("--text-column", default=None, help="the column holding the texts (default: text)")
    corpus.add_argument("--on-error", choices=["skip", "fail"], default=None,
                        help="a row that cannot be classified (empty text, not UTF-8, malformed): skip it, "
                             "report it on stderr and list it in OUTPUT.errors.jsonl (default), or stop the run")
    corpus.add_argument("--overwrite", action="store_true",
                        help="replace an existing output, or discard an unfinished run with other settings")
    corpus.add_argument("--engine", choices=["local", "ray"], default=None,
                        help="local = this process (default); ray = Ray Data, an actor pool of classifiers on "
                             "this machine or the cluster at $RAY_ADDRESS (pip install 'llama-finsent[scale]')")
    corpus.add_argument("--workers", type=positive_int, default=None,
                        help="--engine ray: classifier actors (default: one per GPU, else one per 4 CPUs)")
    corpus.add_argument("--chunk-rows", type=positive_int, default=None,
                        help="rows per chunk, the unit of progress saved to disk (default 1024)")
    p.add_argument("--model",
                   help="folder, Hub id or 'smollm2' (default: $FINSENT_MODEL, newest release, published model)")
    p.add_argument("--scheme", choices=["3", "7"], default="3", help="3 or 7 classes (default 3)")
    p.add_argument("--kind", choices=["news", "tweet"], default="news", help="word used in the instruction")
    p.add_argument("--mode", choices=["score", "generate"], default="score",
                   help="score = label scoring with probabilities; generate = the published card's greedy generation")
    p.add_argument("--batch-size", type=positive_int, default=16,
                   help="texts per model call; results are printed after each batch (default 16)")
    p.set_defaults(func=_classify)


def argument_texts(texts: list[str]) -> Iterator[tuple[str, str]]:
    """``(where, text)`` of texts given as arguments, each checked by ``prompts.check_text``.

    Python hands arguments that are not UTF-8 over as lone surrogates (surrogateescape): refused here,
    naming the argument, before any model is loaded.
    """

    for n, text in enumerate(texts, 1):
        try:
            yield f"argument {n}", check_text(text)
        except InputError as exc:
            raise InputError(f"argument {n}: {exc}") from None


def stdin_texts(stream) -> Iterator[tuple[str, str]]:
    """``(where, text)`` of the non-blank lines of a binary stream, decoded as strict UTF-8 (a leading BOM is
    dropped); a line that is not UTF-8 is an InputError naming the line and the byte."""

    for n, raw in enumerate(stream, 1):
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin line {n}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte "
                             f"{exc.start + 1} of the line): send UTF-8 text") from None
        if not line.strip():
            continue
        try:
            yield f"stdin line {n}", check_text(line)
        except InputError as exc:
            raise InputError(f"stdin line {n}: {exc}") from None


def _classify(args) -> int:
    corpus_only = {"--output": args.output, "--text-column": args.text_column, "--on-error": args.on_error,
                   "--overwrite": args.overwrite or None, "--engine": args.engine, "--workers": args.workers,
                   "--chunk-rows": args.chunk_rows}
    if args.input is not None:
        return _classify_corpus(args)
    given = [name for name, value in corpus_only.items() if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)} go(es) with --input (classify a corpus file to file)")
    if args.texts:
        items = argument_texts(args.texts)
    else:
        items = stdin_texts(getattr(sys.stdin, "buffer", None) or (line.encode() for line in sys.stdin))
    chunks = iter_chunks(items, args.batch_size)
    first = next(chunks, None)  # bad input or no input is refused before the model loads
    if first is None:
        raise UsageError("no text given (pass texts as arguments or lines on stdin)")
    clf = FinSentClassifier.from_pretrained(args.model)
    for chunk in itertools.chain([first], chunks):
        texts = [text for _, text in chunk]
        for pred in clf.classify(texts, args.scheme, kind=args.kind, mode=args.mode, batch_size=args.batch_size):
            print(json.dumps(pred.to_dict(), ensure_ascii=False))
        sys.stdout.flush()  # each batch as soon as it is done: a long input streams
    return 0


def _classify_corpus(args) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm


    if args.texts:
        raise UsageError("give texts as arguments or --input, not both")
    if args.output is None:
        raise UsageError("--input needs --output (a .csv, .jsonl or .parquet file)")
    if args.mode != "score":
        raise UsageError("--input classifies by label scoring only (--mode score): it writes every label's probability")
    if args.workers is not None and args.engine != "ray":
        raise UsageError("--workers goes with --engine ray")
    options = dict(text_column=args.text_column or "text", kind=args.kind, scheme=args.scheme, model=args.model,
                   batch_size=args.batch_size, chunk_rows=args.chunk_rows or 1024, on_error=args.on_error or "skip",
                   overwrite=args.overwrite)
    with logging_redirect_tqdm():
        if args.engine == "ray":
            result = classify_with_ray(args.input, args.output, num_workers=args.workers, **options)
        else:
            result = classify_corpus(args.input, args.output, **options)
    rate = f", {result.items_per_s:.1f} rows/s" if result.classified and result.seconds else ""
    skipped = f", {result.skipped} skipped (listed in {result.errors_path})" if result.skipped else ""
    resumed = f" (resumed at row {result.resumed_at + 1})" if result.resumed_at else ""
    print(f"{result.output}: {result.written} rows written{skipped}{rate}{resumed}", file=sys.stderr)
    return 0
