"""``python -m finsent.cli``: the same as the ``finsent`` command."""

import sys

from finsent.cli import main

sys.exit(main())
