"""The README's `finsent classify` commands run as written (on the embedded SmolLM2)."""

import io
import json
import re
import shlex
from pathlib import Path

import pytest

from finsent.cli import main
from finsent.labels import SCHEMES

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if "finsent classify" in line]


def test_readme_names_its_two_first_commands():
    first = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1).split()
    assert first[:2] == ["make", "release"] and "make" in first[2:] and "test" in first[2:]


@pytest.mark.slow
@pytest.mark.parametrize("command", readme_commands())
def test_readme_classify_command_runs(command, smollm2_dir, monkeypatch, capsys):
    stdin = ""
    if "|" in command:
        feed, command = command.split("|", 1)
        stdin = " ".join(shlex.split(feed)[1:]) + "\n"  # echo "TEXT" -> TEXT on stdin
    argv = shlex.split(command)
    assert argv[0] == "finsent"
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(argv[1:]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    scheme = argv[argv.index("--scheme") + 1] if "--scheme" in argv else "3"
    n_texts = 1 if stdin else len([a for a in argv[2:] if not a.startswith("--") and a not in ("smollm2", scheme)])
    assert len(lines) == n_texts
    for line in lines:
        assert line["label"] in SCHEMES[scheme] and abs(sum(line["probs"].values()) - 1) < 1e-5
