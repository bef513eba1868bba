"""finsent.build.memory: a CPU training hands freed heap back after every optimizer step."""

from __future__ import annotations

import platform

import pytest

from finsent.build import memory


def test_freed_heap_is_handed_back_after_every_step(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "malloc_trim", lambda: calls.append)
    callback = memory.ReturnFreedMemory()
    for _ in range(3):
        callback.on_step_end(None, None, None)
    assert calls == [0, 0, 0]

    monkeypatch.setattr(memory, "malloc_trim", lambda: None)  # a C library without it: nothing to do, no error
    memory.ReturnFreedMemory().on_step_end(None, None, None)


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_malloc_trim_is_found_and_runs():
    trim = memory.malloc_trim()
    assert trim is not None and trim(0) in (0, 1)  # 1: memory was released, 0: there was none to release
    assert memory.peak_memory_mb("cpu") > 10  # this process's resident set, in MiB
