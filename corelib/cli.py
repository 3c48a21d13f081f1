"""Command line: `python -m corelib <verb>`. The only module that parses arguments.

Bad input (an InputError, or an argparse error) prints one line on stderr and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message}\n")


def _data(args) -> int:
    if args.data_verb == "check":
        from .data import check_fasta

        summary = check_fasta(args.file, args.modality, args.max_tokens)
        print(json.dumps(summary, indent=2))
    elif args.data_verb == "build":
        from .sources import build_dataset

        names = args.names or ["rna_demo", "protein_demo"]
        for name in names:
            print(f"built {build_dataset(name, full=args.full, out_dir=args.out)}")
    elif args.data_verb == "verify":
        from .sources import verify_datasets

        for line in verify_datasets():
            print(line)
    return 0


def _run_notebooks(args) -> int:
    from .runner import run_notebooks

    only = args.only.split(",") if args.only else None
    try:
        run_notebooks(args.preset, args.out, only)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """All verbs and their options."""
    p = _Parser(prog="corelib", description="Influence-guided data pruning for biological foundation models.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    d = sub.add_parser("data", help="check, build and verify sequence pools")
    dsub = d.add_subparsers(dest="data_verb", required=True, parser_class=_Parser)
    c = dsub.add_parser("check", help="validate a FASTA file; print counts and a length summary")
    c.add_argument("file")
    c.add_argument("--modality", required=True, choices=["rna", "protein"])
    c.add_argument("--max-tokens", type=int, default=1024, help="crop limit incl. <cls>/<eos> (default 1024)")
    b = dsub.add_parser("build", help="rebuild data sets from Debian packages (default: both demo pools)")
    b.add_argument("names", nargs="*", help="rna_demo, protein_demo")
    b.add_argument("--full", action="store_true", help="every sequence, written to the cache (not committed)")
    b.add_argument("--out", default=None, help="output folder (default: data_manifests/files, or the cache for --full)")
    dsub.add_parser("verify", help="check the committed demo files against their manifests' sha256")
    d.set_defaults(func=_data)

    r = sub.add_parser("run-notebooks", help="execute every notebook headless with papermill")
    r.add_argument("--preset", default="smoke", help="smoke / demo / paper")
    r.add_argument("--out", default=None, help="folder for executed copies (default runs/<preset>)")
    r.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 00,03")
    r.set_defaults(func=_run_notebooks)
    return p


def main(argv=None) -> int:
    """Entry point; returns the exit status."""
    from .errors import InputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept on disk", file=sys.stderr)
        return 130
