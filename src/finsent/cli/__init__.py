"""``finsent <command>``: one command line over the library's functions.

One module per command group (classify, build, evaluation, speed, hub, release, export), each with
``register(subparsers)`` that adds its commands with ``set_defaults(func=...)``. The libraries' heavy imports
(torch, transformers, gradio, ray) stay inside the functions that need them, so ``finsent --help`` stays fast.
``print`` lives in this package only.
"""

from __future__ import annotations

import argparse
import logging
import sys

from finsent.build.allocator import use_jemalloc
from finsent.cli import build, classify, evaluation, export, hub, release, speed
from finsent.core import __version__
from finsent.core.errors import FinsentError

# Command groups in the order `--help` lists them.
COMMAND_GROUPS = (classify, build, evaluation, speed, hub, release, export)
# The commands that train, and so start again under jemalloc where it is installed (finsent.build.allocator).
TRAINING_COMMANDS = {"finetune", "release"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finsent", description="Build, evaluate, publish and demo Llama-FinSent-S.")
    parser.add_argument("--version", action="version", version=f"finsent {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if argv is None and args.command in TRAINING_COMMANDS:  # the process's own command line, not a caller's list
        use_jemalloc()

    try:
        return args.func(args) or 0
    except FinsentError as exc:  # every error the toolkit can name: one line, no traceback
        print(f"finsent {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"finsent {args.command}: interrupted", file=sys.stderr)
        return 130
