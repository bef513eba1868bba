"""Where the tests find the repository: its root (``REPO``), this folder (``TESTS``) and the shared real data
beside the checkout. Test modules import these names; none computes a path from its own ``__file__``."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SHARED_DATA = REPO.parent / "shared" / "data"
