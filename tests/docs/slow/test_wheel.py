"""``pip install .`` (non-editable) works: the wheel carries everything read at run time (the card template,
the published reference scores, the evaluate metric module) and renders the same card as the source tree.

The wheel is built with hatchling (the build backend), installed with ``--no-deps`` into a fresh venv
(no pip, no network); the dependencies come from the project's venv through a ``.pth`` line naming its
site-packages as a plain path, so that venv's own ``.pth`` files (among them the editable finsent, which
points at ``src/``) are not processed: ``finsent`` itself can only come from the wheel. Every command
runs from a folder outside the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from checkout import REPO
from release_factory import GOLDEN_CARD, add_exports, write_reports

from finsent.core.outputs import record_written_file

PACKAGE_DATA = ("finsent/resources/MODEL_CARD.md", "finsent/resources/references.yaml",
                "finsent/evaluation/metrics/finsent_sentiment/finsent_sentiment.py")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
                   check=True, capture_output=True, cwd=str(REPO))
    return next(out.glob("llama_finsent-*.whl"))


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding finsent from the wheel only; returns its bin/ folder."""
    root = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, capture_output=True)
    python = root / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--disable-pip-version-check", str(wheel)], check=True, capture_output=True)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "finsent-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root / "bin"


def run(venv: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HF_HUB_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(args, cwd=str(cwd), env=env, capture_output=True, text=True, timeout=300)


def test_wheel_holds_the_package_data(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    assert set(PACKAGE_DATA) <= names
    assert "finsent/core/reports.py" in names and not [n for n in names if n.startswith(("src/", "tests/"))]


def test_installed_wheel_renders_the_golden_card_outside_the_repository(venv, tmp_path):
    release = add_exports(write_reports(tmp_path / "release"))  # the golden card's release carries exports
    (release / "README.md").write_text("stale\n")
    record_written_file(release, "README.md")  # a stale card finsent wrote: replaced without --overwrite
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    done = run(venv, [str(venv / "finsent"), "card", str(release)], outside)
    assert done.returncode == 0, done.stderr
    assert (release / "README.md").read_text() == GOLDEN_CARD.read_text()  # the same card as from the source tree
    check = (
        "import finsent, finsent.hub.card as c, finsent.evaluation.summary as e\n"
        "from finsent.evaluation.metrics import METRIC_DIR\n"
        "print(finsent.__file__); print(c.TEMPLATE); print(e.REFERENCES_FILE); print(METRIC_DIR)\n"
        "print(len(e.load_references()['models']))\n"
    )
    done = run(venv, [str(venv / "python"), "-c", check], outside)
    assert done.returncode == 0, done.stderr
    *paths, models = done.stdout.split()
    site = str(venv.parent / "lib")
    assert all(p.startswith(site) for p in paths), paths  # finsent and its data come from the wheel, not src/
    assert all(Path(p).exists() for p in paths) and int(models) >= 5


def test_metric_module_ships_in_the_wheel_and_loads_from_it(venv, tmp_path):
    code = ("from finsent.evaluation.metrics import load_metric\n"
            "print(load_metric().compute(predictions=['positive', 'neutral'], references=['positive', 'negative'],"
            " labels=['negative', 'neutral', 'positive'])['accuracy'])\n")
    done = run(venv, [str(venv / "python"), "-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) == pytest.approx(0.5)
