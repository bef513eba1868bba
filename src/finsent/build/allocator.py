"""Training under jemalloc: the training commands start themselves again with it preloaded, where it is installed.

A training step allocates and frees gigabytes of activation tensors whose sizes change with each batch's shape.
glibc's malloc keeps what a long batch freed and hands it out again piecemeal, so the resident set climbs whenever
a long batch meets the optimizer's state; jemalloc's size classes and its purging of unused pages keep it near what
is alive. 120 steps of the direct recipe, 2-core AMD EPYC (build/README.md, "Memory and time"): glibc 4,549 MiB,
jemalloc 3,878 MiB at the same speed (556 against 563 tokens/s). glibc's own levers fell short: ``malloc_trim``
after every step 4,422 MiB at -12 % speed, a fixed ``M_MMAP_THRESHOLD`` of 128 KiB 3,705 MiB at half the speed,
``MALLOC_ARENA_MAX=2`` 4,570 MiB.

An allocator is chosen when the process starts (``LD_PRELOAD``), so ``use_jemalloc`` replaces the running process
(``os.execve``, before any work) with the same command under jemalloc, the way PyTorch's own CPU launcher
(``python -m torch.backends.xeon.run_cpu --enable-jemalloc``) does. ``FINSENT_ALLOCATOR`` decides:

- unset or ``auto``: jemalloc where the dynamic linker finds ``libjemalloc`` (Debian/Ubuntu: ``apt-get install
  libjemalloc2``), else glibc's malloc with a log line saying what is missing;
- ``system``: the C library's malloc, no relaunch;
- ``jemalloc``: already arranged (set for the relaunched process; a user who preloads it themself may set it too):
  no relaunch, a warning if it is not loaded after all.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import platform
import sys

logger = logging.getLogger(__name__)

VARIABLE = "FINSENT_ALLOCATOR"
CHOICES = ("auto", "system", "jemalloc")


def jemalloc_loaded() -> bool:
    """Whether jemalloc is mapped into this process (preloaded or linked)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            return any("libjemalloc" in line for line in maps)
    except OSError:  # no /proc: not Linux
        return False


def allocator_name() -> str:
    """The C allocator serving this process: "jemalloc", else the C library's name ("glibc", "musl"...) or "libc"."""
    return "jemalloc" if jemalloc_loaded() else (platform.libc_ver()[0] or "libc")


def use_jemalloc() -> None:
    """Replace this process with the same command line under jemalloc, or return.

    Returns without relaunching when ``FINSENT_ALLOCATOR`` is ``system`` or ``jemalloc``, when jemalloc is
    already loaded, off Linux, or when no ``libjemalloc`` is installed. Call it before any work: nothing after
    it runs in the old process.
    """
    choice = os.environ.get(VARIABLE, "auto") or "auto"
    if choice not in CHOICES:
        logger.warning("%s=%s is none of %s: using the C library's malloc", VARIABLE, choice, ", ".join(CHOICES))
        return
    if choice == "system" or platform.system() != "Linux":
        return
    if jemalloc_loaded():
        return
    if choice == "jemalloc":
        logger.warning("%s=jemalloc, but jemalloc is not loaded: training with the C library's malloc", VARIABLE)
        return
    library = ctypes.util.find_library("jemalloc")  # the soname (libjemalloc.so.2), from the linker's cache
    if library is None:
        logger.info("jemalloc is not installed: training with the C library's malloc, which holds more memory "
                    "(apt-get install libjemalloc2; %s=system silences this)", VARIABLE)
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    env[VARIABLE] = "jemalloc"  # the relaunched process must not relaunch again, even if the preload failed
    command = [sys.executable, *sys.orig_argv[1:]]  # the interpreter's own options too
    logger.info("training under jemalloc (LD_PRELOAD=%s; %s=system keeps the C library's malloc)", library, VARIABLE)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(command[0], command, env)
