"""The one exception type that the CLI turns into a single line on stderr and exit status 2."""
from __future__ import annotations


class InputError(ValueError):
    """Bad user input: a file, record or argument that cannot be used (message = the one line shown)."""
