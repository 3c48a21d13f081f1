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

        names = args.names or ["rna_typecls", "rna_ss", "protein_loc", "protein_struct", "rna_demo", "protein_demo"]
        for name in names:
            print(f"built {build_dataset(name, full=args.full, out_dir=args.out)}")
    elif args.data_verb == "leakage":
        from .labelled import leakage_report

        print(leakage_report(args.names or None, args.min_seq_id).to_string(index=False))
    elif args.data_verb == "verify":
        from .sources import verify_datasets

        for line in verify_datasets():
            print(line)
    return 0


def _select(args) -> int:
    from . import __version__
    from .coreset import read_scores, score_file, select_indices, write_coreset
    from .errors import InputError
    from .sources import sha256_file

    scores, meta = read_scores(args.scores)
    fasta = args.fasta or meta.get("fasta")
    modality = args.modality or meta.get("modality")
    if not fasta or not modality:
        raise InputError(f"{args.scores}: scores.json names no pool FASTA/modality; pass --fasta and --modality")
    official = args.method == "cci-official"
    seed = args.seed if args.seed is not None else (42 if official else 0)
    beta = args.hard_cutoff if args.hard_cutoff is not None else (0.1 if official else 0.05)
    budget = args.budget if args.budget is not None else args.rate
    clusters = None
    if args.method == "cluster":
        from .clusters import mmseqs_clusters

        table = mmseqs_clusters(fasta, args.min_seq_id).set_index("id")["cluster"]
        clusters = table.reindex(scores["id"]).to_numpy()
    rows = select_indices(args.method, scores, budget, seed=seed, hard_cutoff=beta, strata=args.strata,
                          cap=args.cap, clusters=clusters, column=args.column)
    path = score_file(args.scores)
    manifest = {"method": args.method, "seed": seed, "budget": int(len(rows)), "n_pool": int(len(scores)),
                "parameters": {"budget": args.budget, "rate": args.rate, "hard_cutoff": beta, "strata": args.strata,
                               "cap": args.cap, "min_seq_id": args.min_seq_id, "column": args.column},
                "scores_file": str(path), "scores_sha256": sha256_file(path),
                "fasta": str(fasta), "modality": modality, "corelib_version": __version__}
    out = write_coreset(args.out, scores, rows, fasta, modality, manifest)
    print(f"{args.method}: {len(rows)} of {len(scores)} sequences -> {out}")
    return 0


def _preset_from(args):
    from .config import get_preset

    overrides = {k: v for k, v in {"seed": args.seed, "subset_size": getattr(args, "subset_size", None),
                                   "pool_limit": args.limit, "max_tokens": args.max_tokens}.items() if v is not None}
    return get_preset(args.preset, **overrides)


def _pool_path(args):
    from .sources import dataset_path

    return dataset_path(args.fasta)


def _score(args) -> int:
    from .scoring import run_scoring

    damping = args.damping if args.damping == "auto" else float(args.damping)
    path = run_scoring(_pool_path(args), args.modality, args.out, _preset_from(args), model=args.model,
                       checkpoint=args.checkpoint, scope=args.scope, finetune=not args.no_finetune,
                       compat=args.compat, batch_size=args.batch_size, damping=damping, shard_size=args.shard_size,
                       device=args.device, skip_nonfinite=args.skip_nonfinite, progress=not args.quiet)
    print(f"scores -> {path}")
    return 0


def _pretrain(args) -> int:
    from .coreset import read_coreset
    from .pretrain import pretrain_pool

    indices = read_coreset(args.coreset)[0] if args.coreset else None
    pretrain_pool(_pool_path(args), args.modality, args.out, _preset_from(args), model=args.model, indices=indices,
                  epochs=args.epochs, device=args.device, save_every=args.save_every, progress=not args.quiet)
    print(f"model -> {args.out}/model.pt")
    return 0


def _experiment(args) -> int:
    from .config import get_preset
    from .experiment import evaluate_cells, pretrain_cells, summarize, verdicts
    from .report import save_experiment_tables

    preset = get_preset(args.preset)
    for modality in (["rna", "protein"] if args.modality == "both" else [args.modality]):
        reference = getattr(args, f"{modality}_reference")
        pretrain_cells(preset, modality, device=args.device, progress=not args.quiet, reference=reference)
        if args.stage == "pretrain":
            continue
        summary = summarize(evaluate_cells(preset, modality, device=args.device, progress=not args.quiet,
                                           reference=reference))
        for path in save_experiment_tables(summary, verdicts(summary), preset.name, modality):
            print(f"{modality}: {path}")
    return 0


def _common(p, out_help):
    p.add_argument("--fasta", required=True, help="pool FASTA, or a data set name (rna_demo, protein_demo, ...)")
    p.add_argument("--modality", required=True, choices=["rna", "protein"])
    p.add_argument("--out", required=True, help=out_help)
    p.add_argument("--preset", default="smoke", help="smoke / demo / paper: defaults for everything below")
    p.add_argument("--model", default=None, help="model preset tiny / small / paper (default: the preset's)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--limit", type=int, default=None, help="use the first N pool sequences")
    p.add_argument("--max-tokens", type=int, default=None, help="crop length incl. <cls>/<eos>")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


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
    b = dsub.add_parser("build", help="rebuild data sets from Debian packages (default: the labelled sets, then both pools)")
    b.add_argument("names", nargs="*", help="rna_demo, protein_demo, rna_typecls, rna_ss, protein_loc, protein_struct")
    b.add_argument("--full", action="store_true", help="every sequence, written to the cache (not committed)")
    b.add_argument("--out", default=None, help="output folder (default: data_manifests/files, or the cache for --full)")
    dsub.add_parser("verify", help="check the committed demo files against their manifests' sha256")
    lk = dsub.add_parser("leakage", help="labelled test sequences found in the pools: exact and MMseqs2 near duplicates")
    lk.add_argument("names", nargs="*", help="rna_typecls, rna_ss, protein_loc, protein_struct (default: all)")
    lk.add_argument("--min-seq-id", type=float, default=0.9, help="MMseqs2 identity for a near duplicate")
    d.set_defaults(func=_data)

    from .coreset import METHODS

    s = sub.add_parser("select", help="select a coreset from a score file (Section 3.3, Algorithm 1)")
    s.add_argument("--scores", required=True, help="DIR/scores.parquet (or DIR)")
    s.add_argument("--method", required=True, choices=METHODS)
    size = s.add_mutually_exclusive_group(required=True)
    size.add_argument("--budget", type=int, help="number of sequences to keep")
    size.add_argument("--rate", type=float, help="pruning rate alpha in (0, 1): keep floor(n * (1 - alpha))")
    s.add_argument("--out", required=True, help="coreset folder to write")
    s.add_argument("--fasta", default=None, help="pool FASTA (default: the one named in scores.json)")
    s.add_argument("--modality", choices=["rna", "protein"], default=None)
    s.add_argument("--seed", type=int, default=None, help="default 0 (42 for cci-official)")
    s.add_argument("--hard-cutoff", type=float, default=None, help="beta; default 0.05 (0.1 for cci-official)")
    s.add_argument("--strata", type=int, default=50, help="k (default 50)")
    s.add_argument("--cap", type=int, default=1, help="cluster: picks per MMseqs2 cluster")
    s.add_argument("--min-seq-id", type=float, default=0.5, help="cluster: MMseqs2 identity threshold")
    s.add_argument("--column", default="loss", help="band: the score-file column to band on")
    s.set_defaults(func=_select)

    sc = sub.add_parser("score", help="self-influence of every pool sequence (Eq. 11): fine-tune, Fisher, scores")
    _common(sc, "output folder (resumable: rerun the same command to continue)")
    sc.add_argument("--checkpoint", default=None, help="local model: our .pt, RNA-FM .pth, fair-esm .pt or HF folder")
    sc.add_argument("--scope", default="all", help="all (default), linear, lm_head.dense, last:N")
    sc.add_argument("--no-finetune", action="store_true", help="the 'w/o ft' variant: skip the subset fine-tune")
    sc.add_argument("--compat", default=None, choices=["bio-coreset"], help="reproduce the official code's choices")
    sc.add_argument("--batch-size", type=int, default=None)
    sc.add_argument("--subset-size", type=int, default=None, help="|D_sub| for the fine-tune and the Fisher")
    sc.add_argument("--damping", default="auto", help="'auto' (0.1 x mean diag F) or a number")
    sc.add_argument("--shard-size", type=int, default=2048, help="sequences per committed shard")
    sc.add_argument("--skip-nonfinite", action="store_true", help="leave out sequences with NaN/Inf gradients")
    sc.set_defaults(func=_score)

    pt = sub.add_parser("pretrain", help="MLM pretraining from scratch on a pool or a coreset (A.3/A.4)")
    _common(pt, "output folder: model.pt, history.csv, checkpoint.pt (resumable)")
    pt.add_argument("--coreset", default=None, help="coreset folder from `select` (default: the whole pool)")
    pt.add_argument("--epochs", type=int, default=None)
    pt.add_argument("--save-every", type=int, default=200, help="checkpoint every N steps (and every epoch)")
    pt.set_defaults(func=_pretrain)

    e = sub.add_parser("experiment", help="the Tables 1-3 grid: coresets, pretraining, downstream tasks, verdicts")
    e.add_argument("--preset", default="smoke", help="smoke / demo / paper")
    e.add_argument("--modality", default="both", choices=["rna", "protein", "both"])
    e.add_argument("--stage", default="all", choices=["all", "pretrain"], help="pretrain only, or everything")
    e.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    e.add_argument("--rna-reference", default=None, help="checkpoint scoring the RNA pool and giving the Full pool "
                   "row (e.g. RNA-FM_pretrained.pth); default: pretrain one on the pool")
    e.add_argument("--protein-reference", default=None, help="the same for proteins (a fair-esm .pt or HF folder)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=_experiment)

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
