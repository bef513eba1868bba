"""argparse types shared by every command."""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    """argparse ``type`` for counts and sizes: an integer >= 1 (``--batch-size 0`` is refused, never a default)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value
