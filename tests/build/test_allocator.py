"""Training under jemalloc (finsent.build.allocator): real relaunches of fresh interpreters, read back from
/proc/self/maps in the relaunched process."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys

import pytest

needs_jemalloc = pytest.mark.skipif(ctypes.util.find_library("jemalloc") is None,
                                    reason="libjemalloc is not installed (make test installs libjemalloc2)")

# Prints whether jemalloc is loaded and which allocator the report would name, relaunches, and prints again: a
# relaunched process runs the same code once more, so two lines mean one relaunch.
PROBE = ("from finsent.build.allocator import allocator_name, use_jemalloc; "
         "print(allocator_name(), flush=True); use_jemalloc()")


def run(args: list[str], allocator: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("FINSENT_ALLOCATOR", "LD_PRELOAD")}
    if allocator is not None:
        env["FINSENT_ALLOCATOR"] = allocator
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, timeout=120)


@needs_jemalloc
@pytest.mark.parametrize("allocator", [None, "auto", ""])
def test_the_process_starts_once_more_under_jemalloc(allocator):
    out = run(["-c", PROBE + "; import os; print(os.environ['FINSENT_ALLOCATOR'], os.environ['LD_PRELOAD'])"],
              allocator)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["glibc", "jemalloc", f"jemalloc {ctypes.util.find_library('jemalloc')}"]


@pytest.mark.parametrize("allocator, warning", [
    ("system", None),
    ("jemalloc", "FINSENT_ALLOCATOR=jemalloc, but jemalloc is not loaded"),
    ("tcmalloc", "FINSENT_ALLOCATOR=tcmalloc is none of auto, system, jemalloc"),
])
def test_no_relaunch_when_the_variable_says_so(allocator, warning):
    out = run(["-c", "import logging; logging.basicConfig(); " + PROBE], allocator)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["glibc"]
    assert (warning in out.stderr) if warning else out.stderr == ""


@needs_jemalloc
def test_a_preload_of_the_users_own_is_kept_and_not_relaunched():
    env = {**os.environ, "LD_PRELOAD": ctypes.util.find_library("jemalloc")}
    env.pop("FINSENT_ALLOCATOR", None)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["jemalloc"]


@needs_jemalloc
def test_training_commands_relaunch_and_others_do_not(tmp_path):
    """``finsent finetune`` relaunches before its work (here: a missing recipe, refused in the new process with
    its one-line error); ``finsent merge`` does not."""
    missing = tmp_path / "missing.yaml"
    out = run(["-m", "finsent.cli", "finetune", "--recipe", str(missing), "--base", "smollm2", "--out",
               str(tmp_path / "out")])
    lines = out.stderr.splitlines()
    assert out.returncode != 0 and sum("training under jemalloc" in line for line in lines) == 1
    assert lines[-1].startswith("finsent finetune: error:") and str(missing) in lines[-1]
    out = run(["-m", "finsent.cli", "merge", "--recipe", str(missing), "--base", "smollm2", "--adapter",
               str(tmp_path), "--out", str(tmp_path / "merged")])
    assert out.returncode != 0 and "jemalloc" not in out.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "merged").exists()
