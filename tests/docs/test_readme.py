"""The README names its two first commands; they run in tests/docs/slow/test_readme_commands.py."""

import re

from checkout import REPO

README = REPO / "README.md"


def test_readme_names_its_two_first_commands():
    first = re.search(r"```bash\n(.*?)```", README.read_text(), re.S).group(1).split()
    assert first[:2] == ["make", "release"] and "make" in first[2:] and "test" in first[2:]
