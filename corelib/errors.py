"""The one exception type that the CLI turns into a single line on stderr and exit status 2, and the argument
parser whose usage errors are such a line too."""
from __future__ import annotations

import argparse


class InputError(ValueError):
    """Bad user input: a file, record or argument that cannot be used (message = the one line shown)."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")
