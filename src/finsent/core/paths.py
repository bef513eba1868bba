"""Where the package's own files are, and the source checkout around it: found here once, used everywhere.

``PACKAGE_DIR`` is ``.../finsent`` wherever it is installed; ``RESOURCES`` its data files. ``REPO_ROOT`` is the
checkout that holds ``src/finsent`` for an editable install; an installed wheel has none, so
every use of it is optional (a recipe's data found from the checkout, the git commit of a result, the Space's
source folder). Data outside the repository is never a default: commands and recipes name it.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
RESOURCES = PACKAGE_DIR / "resources"
REPO_ROOT = PACKAGE_DIR.parents[1]  # src/finsent -> the repository, for an editable install
