"""A CPU training's memory: its peak, and the freed heap handed back to the system after every step.

glibc's malloc keeps freed blocks for reuse instead of returning them to the system. A training whose batches
change shape every step (length-grouped rows, passes split by ``finetune.pass_tokens``) frees activation buffers
of one size and asks for another, so the resident set creeps up to the sum of the shapes it has met rather than
the largest step's need. ``malloc_trim(0)`` after each optimizer step returns every free page of every arena, so
the resident set follows the memory in use; the next step touches those pages again (page faults, a few percent
of a step: build/README.md). Elsewhere (musl, macOS, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource

from transformers import TrainerCallback


def peak_memory_mb(device: str) -> float:
    """GPU: peak allocated by torch; CPU: the process's peak resident set (ru_maxrss, KiB on Linux)."""
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


class ReturnFreedMemory(TrainerCallback):
    """Hands the heap freed by each optimizer step back to the system (CPU training; see the module's note)."""

    def __init__(self):
        self.trim = malloc_trim()

    def on_step_end(self, args, state, control, **kwargs):
        if self.trim is not None:
            self.trim(0)
