"""``finsent <command>``: one command line over the library's functions.

Each stage module exposes ``register(subparsers)`` that adds its command with
``set_defaults(func=...)``; modules import their heavy dependencies inside the handlers, so
``finsent --help`` stays fast. ``print`` lives here and in those handlers only.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys

from . import __version__

# Stage modules that contribute commands, in the order `--help` lists them.
COMMAND_MODULES = [
    "finsent.cli",  # classify (below)
    "finsent.pruning",
    "finsent.finetune",
    "finsent.merge",
    "finsent.evaluation",
    "finsent.speed",
    "finsent.card",
    "finsent.publish",
    "finsent.spaces",
    "finsent.release",
]


def register(sub) -> None:
    p = sub.add_parser(
        "classify",
        help="label financial texts (JSON lines out)",
        description="Classify texts given as arguments, or one per line on stdin, and print one JSON object per text.",
    )
    p.add_argument("texts", nargs="*", help="texts to classify; none = read lines from stdin")
    p.add_argument("--model",
                   help="folder, Hub id or 'smollm2' (default: $FINSENT_MODEL, newest release, published model)")
    p.add_argument("--scheme", choices=["3", "7"], default="3", help="3 or 7 classes (default 3)")
    p.add_argument("--kind", choices=["news", "tweet"], default="news", help="word used in the instruction")
    p.add_argument("--mode", choices=["score", "generate"], default="score",
                   help="score = label scoring with probabilities; generate = the published card's greedy generation")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=_classify)


def _classify(args) -> int:
    from .classify import FinSentClassifier

    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise SystemExit("finsent classify: no text given (pass texts as arguments or lines on stdin)")
    clf = FinSentClassifier.from_pretrained(args.model)
    for pred in clf.classify(texts, args.scheme, kind=args.kind, mode=args.mode, batch_size=args.batch_size):
        print(json.dumps(pred.to_dict(), ensure_ascii=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finsent", description="Build, evaluate, publish and demo Llama-FinSent-S.")
    parser.add_argument("--version", action="version", version=f"finsent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # a stage not built yet; a missing dependency inside one is a real error
                continue
            raise
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .errors import FinsentError

    try:
        return args.func(args) or 0
    except FinsentError as exc:  # every error the toolkit can name: one line, no traceback
        print(f"finsent {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"finsent {args.command}: interrupted", file=sys.stderr)
        return 130

if __name__ == "__main__":
    sys.exit(main())
