"""The README's `finsent classify` commands run as written (on the embedded SmolLM2)."""

import io
import json
import re
import shlex
from pathlib import Path

import pytest
from checkout import REPO

from finsent.cli import main
from finsent.core.labels import SCHEMES

README = REPO / "README.md"


def readme_commands() -> list[str]:
    """Every `finsent classify` line of the README's bash blocks, except the Ray ones (they name a cluster's
    shared folders; tests/corpus/slow/test_corpus_runs.py runs the Ray engine on 2 local CPUs)."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines()
            if "finsent classify" in line and "--engine ray" not in line]


@pytest.mark.parametrize("command", readme_commands())
def test_readme_classify_command_runs(command, smollm2_dir, monkeypatch, capsys, tmp_path):
    stdin = ""
    if "|" in command:
        feed, command = command.split("|", 1)
        stdin = " ".join(shlex.split(feed)[1:]) + "\n"  # echo "TEXT" -> TEXT on stdin
    argv = shlex.split(command)
    assert argv[0] == "finsent"
    if "--input" in argv:  # a corpus: write the file it names, in a scratch folder, and classify it with SmolLM2
        return run_corpus_command(argv, smollm2_dir, monkeypatch, tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(argv[1:]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    scheme = argv[argv.index("--scheme") + 1] if "--scheme" in argv else "3"
    n_texts = 1 if stdin else len([a for a in argv[2:] if not a.startswith("--") and a not in ("smollm2", scheme)])
    assert len(lines) == n_texts
    for line in lines:
        assert line["label"] in SCHEMES[scheme] and abs(sum(line["probs"].values()) - 1) < 1e-5


def run_corpus_command(argv: list[str], smollm2_dir, monkeypatch, folder: Path) -> None:
    import csv

    import pyarrow.parquet as pq

    monkeypatch.chdir(folder)
    monkeypatch.setenv("FINSENT_MODEL", str(smollm2_dir))  # the README's command names no model
    source, column = argv[argv.index("--input") + 1], argv[argv.index("--text-column") + 1]
    heads = ["Acme Corp beats estimates and raises guidance", "Zenith Bank shares slump after fraud probe",
             "The board will meet on Thursday"]
    with open(source, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("id", column), *enumerate(heads)])
    assert main(argv[1:]) == 0
    table = pq.read_table(argv[argv.index("--output") + 1]).to_pylist()
    assert [(r["id"], r[column]) for r in table] == [(str(i), h) for i, h in enumerate(heads)]
    for row in table:
        assert row["predicted_label"] in SCHEMES["3"]
        assert abs(row["p_negative"] + row["p_neutral"] + row["p_positive"] - 1) < 1e-5
