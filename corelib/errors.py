"""The one exception type that the CLI turns into a single line on stderr and exit status 2, the one-line warning,
the write failures that are the machine's and not the program's, and the argument parser whose usage errors are
such a line too."""
from __future__ import annotations

import argparse
import errno
import sys

# a write refused by the machine: a full disk or quota, a folder without write permission, read-only media, a size
# limit; each is one line naming the file, never a traceback
WRITE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG})


class InputError(ValueError):
    """Bad user input: a file, record or argument that cannot be used (message = the one line shown)."""


def warn(line: str) -> None:
    """One warning line on stderr (a damaged intermediate recomputed, an older file read as it is)."""
    print(f"warning: {line}", file=sys.stderr, flush=True)


def write_fault(exc: BaseException) -> OSError | None:
    """The OSError of `WRITE_FAULTS` behind an exception (itself, or its cause or context: torch reports a failed
    write as a RuntimeError raised while handling the OSError), else None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in WRITE_FAULTS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")
