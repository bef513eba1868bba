"""The one error family of the toolkit, caught once at the command line's edge.

Every problem the toolkit can name (a bad argument, a malformed row, a missing model, a refused
output folder, a failed push) is a ``FinsentError``. ``finsent <command>`` prints it as one line,
``finsent <command>: error: <message>``, and exits with ``exit_code``: 2 for what the user can fix in
the command or its input (``UsageError``), 1 for a failure of the work itself. Library callers
catch ``FinsentError`` (or a subclass) the same way; each subclass also derives from the builtin of its
kind (``ValueError``, ``RuntimeError``, ``FileNotFoundError``), so ``except`` clauses written for those
builtins match it too.
"""

from __future__ import annotations


class FinsentError(Exception):
    """A failure the toolkit can explain in one line; the command exits with 1."""

    exit_code = 1


class UsageError(FinsentError):
    """Bad arguments or input that the user can fix; the command exits with 2."""

    exit_code = 2


class ExportError(FinsentError, RuntimeError):
    """The export could not be written or does not reproduce the release."""


class ExportInputError(UsageError, ValueError):
    """The release folder or an option cannot be exported as asked (the user can fix it)."""


class RecipeError(UsageError, ValueError):
    """A recipe that cannot be used: unknown key, wrong type, impossible value."""
