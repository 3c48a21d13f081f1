"""Shared fixtures: in-process CLI runs and small FASTA files."""
from __future__ import annotations

import gzip
import os
import tempfile

import pytest

from corelib.cli import main


def pytest_configure(config):
    """Tests write only into temporary folders: runs and figures (the notebooks under nbval included, whose
    kernels inherit this environment) go to a fresh temporary folder unless the caller chose one."""
    tmp = tempfile.mkdtemp(prefix="corelib-tests-")
    os.environ.setdefault("CORELIB_RUNS", os.path.join(tmp, "runs"))
    os.environ.setdefault("CORELIB_FIGURES", os.path.join(tmp, "figures"))
    os.environ.setdefault("CORELIB_TOKENS", os.path.join(tmp, "tokens"))


@pytest.fixture
def cli(capsys):
    """Run `python -m corelib ARGS` in-process; returns (status, stdout, stderr)."""

    def run(*args):
        try:
            status = main([str(a) for a in args])
        except SystemExit as exc:  # argparse usage errors
            status = exc.code
        out = capsys.readouterr()
        return status, out.out, out.err

    return run


@pytest.fixture
def fasta(tmp_path):
    """Write text (or bytes) to a FASTA file, gzip-compressed if the name ends in .gz."""

    def write(content, name="x.fa"):
        path = tmp_path / name
        data = content.encode() if isinstance(content, str) else content
        if name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)
        path.write_bytes(data)
        return path

    return write
