"""Provenance of results: the commit (dirty or not) and the CPU every results JSON records."""

from __future__ import annotations

import os
import re
import subprocess

from finsent.core import provenance


def test_git_commit_names_head_and_a_dirty_tree(tmp_path, monkeypatch):
    repo = tmp_path / "checkout"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@e"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.txt").write_text("one\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    monkeypatch.setattr(provenance, "REPO", repo)
    assert provenance.git_commit() == head
    (repo / "new.txt").write_text("untracked files do not change what the commit rebuilds\n")
    assert provenance.git_commit() == head
    (repo / "a.txt").write_text("two\n")
    assert provenance.git_commit() == head + "+dirty"
    monkeypatch.setattr(provenance, "REPO", tmp_path / "installed")  # a wheel has no checkout
    assert provenance.git_commit() is None


def test_cpu_name_and_flags_come_from_this_machine():
    assert provenance.cpu_name().startswith("CPU ") and provenance.cpu_name().endswith(f", {os.cpu_count()} cores")
    flags = provenance.cpu_flags()
    assert flags == sorted(flags) and all(f.startswith(("avx", "amx", "fma")) for f in flags)
    if os.path.exists("/proc/cpuinfo"):
        listed = open("/proc/cpuinfo").read()
        assert all(f" {f}" in listed for f in flags)
        family = re.search(r"^cpu family\s*: (\d+)$", listed, re.M)
        model = re.search(r"^model\s*: (\d+)$", listed, re.M)
        if family and model:  # the generation, not only the brand a virtual machine reports
            assert f" (family {family[1]}, model {model[1]}), " in provenance.cpu_name()
