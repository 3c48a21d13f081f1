"""Command line: `python -m corelib <verb>`. The only module that parses arguments.

The flags of the pipeline stages are generated from the config fields (`corelib.config`): each section's
fields become `--SECTION-FIELD` (plus the short alias a field declares, e.g. `--max-tokens`), with the
field's help text, and every value is checked against the field's range while parsing. Bad input (an
InputError, or an argparse error) prints one line on stderr and exits with status 2, before any work.
"""
from __future__ import annotations

import argparse
import json
import sys

from corelib.config import NONE, Number, get_preset, knobs
from corelib.data.fasta import MODALITIES
from corelib.errors import InputError, write_fault
from corelib.errors import OneLineParser as _Parser

ALIASES = {"pretrain.epochs": "--epochs"}   # short names a verb exposes for a field of a shared class


def _config_flags(p, section: str | None, skip=()) -> None:
    """Add one flag per config field of a section (or the top-level scalars), typed and range-checked."""
    for name, f, kind in knobs(section):
        short = name.rpartition(".")[2]
        if short in skip:
            continue
        meta = dict(f.metadata)
        flags = [f"--{name.replace('.', '-').replace('_', '-')}"]
        for alias in (meta.get("alias"), ALIASES.get(name)):
            if alias and alias not in flags:
                flags.append(alias)
        typ = Number(flags[0], kind, **meta) if kind in (int, float) else None
        choices = meta.get("choices")
        metavar = None if choices else {int: "N", float: "X"}.get(kind, "TEXT")
        p.add_argument(*flags, dest=name, default=None, type=typ, choices=choices, metavar=metavar,
                       help=f"{meta['help']} (preset default otherwise)")


def _overrides(args) -> dict:
    """The config fields set on the command line, as {"section.field": value}."""
    return {k: None if v is NONE else v for k, v in vars(args).items()
            if v is not None and (k in ("seed", "model") or "." in k)}


def _preset_from(args):
    return get_preset(args.preset, _overrides(args))


def _check_model(name: str | None, modality: str) -> None:
    """An unknown model preset is refused before any work (the models layer knows the names)."""
    from corelib.models.masked_lm import MODEL_PRESETS

    for m in (MODALITIES if modality == "both" else [modality]):
        if name is not None and (m, name) not in MODEL_PRESETS:
            known = sorted({p for mm, p in MODEL_PRESETS if mm == m})
            raise InputError(f"unknown model preset {name!r} for {m}; choose one of: {', '.join(known)}")


def _data(args) -> int:
    if args.data_verb == "check":
        from corelib.data.fasta import check_fasta

        print(json.dumps(check_fasta(args.file, args.modality, args.max_tokens), indent=2))
    elif args.data_verb == "build":
        from corelib.data.build import build_dataset

        names = args.names or ["rna_typecls", "rna_ss", "protein_loc", "protein_struct", "rna_demo", "protein_demo"]
        for name in names:
            print(f"built {build_dataset(name, full=args.full, out_dir=args.out, wait=args.wait)}")
    elif args.data_verb == "leakage":
        from corelib.data.labelled import leakage_report

        print(leakage_report(args.names or None, args.min_seq_id).to_string(index=False))
    elif args.data_verb == "verify":
        from corelib.data.manifests import verify_datasets

        for line in verify_datasets():
            print(line)
    return 0


def _select(args) -> int:
    from corelib.selection.strategies import select_coreset

    out, n_rows, n_pool = select_coreset(args.scores, args.method, args.out, budget=args.budget, rate=args.rate,
                                         budget_tokens=args.budget_tokens, like=args.like, fasta=args.fasta, modality=args.modality, seed=args.seed,
                                         hard_cutoff=args.hard_cutoff, strata=args.strata, cap=args.cap,
                                         min_seq_id=args.min_seq_id, column=args.column, wait=args.wait)
    print(f"{args.method}: {n_rows} of {n_pool} sequences -> {out}")
    return 0


def _diagnose(args) -> int:
    from corelib.influence.score_checks import write_diagnostics

    out = write_diagnostics(args.scores, args.out, other=args.other, budget=args.budget, sample=args.sample,
                            device=args.device or "cpu")
    print(f"diagnostics -> {out} (+ .md)")
    return 0


def _score(args) -> int:
    from corelib.data.manifests import dataset_path
    from corelib.influence.scoring import ScoringArguments, run_scoring

    preset = _preset_from(args)
    _check_model(args.model, args.modality)
    # --model given with a checkpoint must describe it; not given, the checkpoint says what runs
    scoring = ScoringArguments(model=args.model, checkpoint=args.checkpoint, finetune=not args.no_finetune,
                               compat=args.compat, skip_nonfinite=args.skip_nonfinite)
    path = run_scoring(dataset_path(args.fasta), args.modality, args.out, preset, scoring, device=args.device,
                       progress=not args.quiet, wait=args.wait)
    print(f"scores -> {path}")
    return 0


def _pretrain(args) -> int:
    from corelib.data.manifests import dataset_path
    from corelib.selection.files import read_coreset
    from corelib.training.pretrain import pretrain_pool

    preset = _preset_from(args)
    _check_model(args.model, args.modality)
    fasta = dataset_path(args.fasta)
    indices = read_coreset(args.coreset, pool=(fasta, args.modality))[0] if args.coreset else None
    pretrain_pool(fasta, args.modality, args.out, preset, indices=indices, device=args.device,
                  save_every=args.save_every, progress=not args.quiet, wait=args.wait)
    print(f"model -> {args.out}/model.pt")
    return 0


def _experiment(args) -> int:
    from corelib.experiment.grid import GridRun
    from corelib.layout import RunLayout

    preset = _preset_from(args)
    _check_model(args.model, args.modality)
    modalities = MODALITIES if args.modality == "both" else [args.modality]
    if args.verify:   # no grid: the committed tables recomputed from the committed per-item files
        from corelib.experiment.audit import verify
        from corelib.layout import figures_dir

        bad = 0
        for modality in modalities:
            lines = verify(figures_dir(), preset.name, modality)
            print("\n".join(lines) if lines else f"{modality}: every committed verdict, interval and table cell of "
                  f"preset {preset.name} recomputed from figures/05_{preset.name}_{modality}_items.csv.gz")
            bad += len(lines)
        return 1 if bad else 0
    if args.simulate_null is not None:   # the verdicts' calibration on simulated grids (fitted to a run when there is one)
        from corelib.experiment.calibration import calibration_report

        for modality in modalities:
            grid = None
            if RunLayout(preset).grid_settings(modality).exists():
                grid = GridRun(preset, modality, progress=False).load()
            print("\n".join(calibration_report(preset, modality, args.simulate_null, grid)))
        return 0
    for modality in modalities:
        run = GridRun(preset, modality, reference=getattr(args, f"{modality}_reference"), device=args.device,
                      progress=not args.quiet, wait=args.wait)
        run.pretrain()
        if args.stage == "pretrain":
            continue
        run.evaluate()
        for path in run.write_report():
            print(f"{modality}: {path}")
        print(f"{modality}: {run.gate_line()}")
    return 0


def _evaluate(args) -> int:
    from corelib.data.manifests import dataset_path
    from corelib.evaluation.intrinsic import evaluate_fasta
    from corelib.files import atomic_write
    from corelib.rundir import output_file
    from corelib.runtime import choose_device

    if args.json:
        output_file(args.json, "--json")   # before any work: a path that cannot be written is one line
    result = evaluate_fasta(args.checkpoint, dataset_path(args.fasta), args.modality, args.max_tokens, args.mask_prob,
                            args.mask_seed, args.limit, args.batch_size, choose_device(args.device))
    print(f"held-out MLM loss on masked positions: {result['loss']:.4f} nats ({result['sequences']} sequences, "
          f"{result['masked_tokens']} masked tokens, every one fed <mask>)")
    print(f"unigram entropy of those residues:     {result['entropy']:.4f} nats (the floor of a model that reads no "
          f"context)")
    print(f"gap (loss - entropy):                  {result['gap']:+.4f} nats (negative: the model uses context)")
    for source, r in result["sources"].items():
        print(f"  {source}: loss {r['loss']:.4f}, entropy {r['entropy']:.4f}, gap {r['gap']:+.4f} "
              f"({r['sequences']} sequences, {r['masked_tokens']} masked tokens)")
    if args.json:
        atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n"))
        print(f"-> {args.json}")
    return 0


def _run_notebooks(args) -> int:
    from corelib.runner import run_notebooks

    only = args.only.split(",") if args.only else None
    try:
        run_notebooks(args.preset, args.out, only)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _stage(p, out_help: str, sections: list[str]) -> None:
    """The flags shared by the model stages (score, pretrain): pool, output, preset and its fields."""
    p.add_argument("--fasta", required=True, help="pool FASTA, or a data set name (rna_demo, protein_demo, ...)")
    p.add_argument("--modality", required=True, choices=MODALITIES)
    p.add_argument("--out", required=True, help=out_help)
    _wait_flag(p)
    _preset_flags(p, sections, skip=("rna_pool", "protein_pool"))


def _wait_flag(p) -> None:
    p.add_argument("--wait", action="store_true", help="when another run is writing the output folder, wait for "
                   "it instead of stopping (exit status 2)")


def _preset_flags(p, sections: list[str], skip=()) -> None:
    p.add_argument("--preset", default="smoke", help="smoke / demo / paper: defaults for every field below")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: CUDA when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _config_flags(p, None, skip=("name",))
    for section in sections:
        _config_flags(p.add_argument_group(f"{section} (config section)"), section, skip)


def _data_parser(sub) -> None:
    d = sub.add_parser("data", help="check, build and verify sequence pools")
    dsub = d.add_subparsers(dest="data_verb", required=True, parser_class=_Parser)
    c = dsub.add_parser("check", help="validate a FASTA file; print counts and a length summary")
    c.add_argument("file")
    c.add_argument("--modality", required=True, choices=MODALITIES)
    c.add_argument("--max-tokens", type=Number("--max-tokens", int, low=3), default=1024,
                   help="crop limit incl. <cls>/<eos> (default 1024)")
    b = dsub.add_parser("build", help="rebuild data sets from Debian packages (default: the labelled sets, then both pools)")
    b.add_argument("names", nargs="*", help="rna_demo, protein_demo, rna_typecls, rna_ss, protein_loc, protein_struct")
    b.add_argument("--full", action="store_true", help="every sequence, written to the cache (not committed)")
    b.add_argument("--out", default=None, help="output folder (default: data_manifests/files, or the cache for --full)")
    _wait_flag(b)
    dsub.add_parser("verify", help="check the committed demo files against their manifests' sha256")
    lk = dsub.add_parser("leakage", help="labelled test sequences found in the pools: exact and MMseqs2 near duplicates")
    lk.add_argument("names", nargs="*", help="rna_typecls, rna_ss, protein_loc, protein_struct (default: all)")
    lk.add_argument("--min-seq-id", type=Number("--min-seq-id", float, low=0, high=1, low_open=True), default=0.9,
                    help="MMseqs2 identity for a near duplicate")
    d.set_defaults(func=_data)


def _select_parser(sub) -> None:
    from corelib.selection.strategies import METHODS

    s = sub.add_parser("select", help="select a coreset from a score file (Section 3.3, Algorithm 1)")
    s.add_argument("--scores", required=True, help="DIR/scores.parquet (or DIR)")
    s.add_argument("--method", required=True, choices=list(METHODS))
    size = s.add_mutually_exclusive_group(required=True)
    size.add_argument("--budget", type=Number("--budget", int, low=1), help="number of sequences to keep")
    size.add_argument("--rate", type=Number("--rate", float, low=0, high=1, low_open=True, high_open=True),
                      help="pruning rate alpha in (0, 1): keep floor(n * (1 - alpha))")
    size.add_argument("--budget-tokens", type=Number("--budget-tokens", int, low=1),
                      help="keep as many sequences as fit in this many residues (met within one sequence)")
    size.add_argument("--like", default=None, help="length-matched: the coreset folder whose length histogram "
                      "to match")
    s.add_argument("--out", required=True, help="coreset folder to write (a finished one with the same manifest is "
                   "kept as it is)")
    _wait_flag(s)
    s.add_argument("--fasta", default=None, help="pool FASTA (default: the one named in scores.json)")
    s.add_argument("--modality", choices=MODALITIES, default=None)
    s.add_argument("--seed", type=Number("--seed", int, low=0), default=None, help="default 0 (42 for cci-official)")
    s.add_argument("--hard-cutoff", type=Number("--hard-cutoff", float, low=0, high=1, high_open=True), default=None,
                   help="beta; default 0.05 (0.1 for cci-official)")
    s.add_argument("--strata", type=Number("--strata", int, low=1), default=50, help="k (default 50)")
    s.add_argument("--cap", type=Number("--cap", int, low=1), default=1, help="cluster: picks per MMseqs2 cluster")
    s.add_argument("--min-seq-id", type=Number("--min-seq-id", float, low=0, high=1, low_open=True), default=0.5,
                   help="cluster: MMseqs2 identity threshold")
    s.add_argument("--column", default="loss", help="band: the score-file column to band on")
    s.set_defaults(func=_select)


def build_parser() -> argparse.ArgumentParser:
    """All verbs and their options (stage flags generated from the config)."""
    p = _Parser(prog="corelib", description="Influence-guided data pruning for biological foundation models.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)
    _data_parser(sub)
    _select_parser(sub)

    sc = sub.add_parser("score", help="self-influence of every pool sequence (Eq. 11): fine-tune, Fisher, scores")
    _stage(sc, "output folder (resumable: rerun the same command to continue)", ["data", "finetune", "scoring"])
    sc.add_argument("--checkpoint", default=None, help="local model: our .pt, RNA-FM .pth, fair-esm .pt or HF folder")
    sc.add_argument("--no-finetune", action="store_true", help="the 'w/o ft' variant: skip the subset fine-tune")
    sc.add_argument("--compat", default=None, choices=["bio-coreset"], help="reproduce the official code's choices")
    sc.add_argument("--skip-nonfinite", action="store_true", help="leave out sequences with NaN/Inf gradients")
    sc.set_defaults(func=_score)

    dg = sub.add_parser("diagnose", help="what else the scores measure: draw reliability, length and loss, "
                        "damping, fine-tune agreement (a table)")
    dg.add_argument("--scores", required=True, help="score folder (from `score`)")
    dg.add_argument("--other", default=None, help="a second score folder to compare with (e.g. the w/o ft one)")
    dg.add_argument("--budget", type=Number("--budget", int, low=1), default=None,
                    help="coreset size for the length-decile pick rates (default: 10%% of the pool)")
    dg.add_argument("--sample", type=Number("--sample", int, low=0), default=512,
                    help="sequences re-scored for the damping sweep (0: skip it)")
    dg.add_argument("--out", default=None, help="table path (default: DIR/diagnostics.csv)")
    dg.add_argument("--device", default=None, help="cpu, cuda (default: cpu)")
    dg.set_defaults(func=_diagnose)

    pt = sub.add_parser("pretrain", help="MLM pretraining from scratch on a pool or a coreset (A.3/A.4)")
    _stage(pt, "output folder: model.pt, history.csv, checkpoint.pt (resumable)", ["data", "pretrain"])
    pt.add_argument("--coreset", default=None, help="coreset folder from `select` (default: the whole pool)")
    pt.add_argument("--save-every", type=Number("--save-every", int, low=0), default=200,
                    help="checkpoint every N steps (0: only at epoch ends)")
    pt.set_defaults(func=_pretrain)

    e = sub.add_parser("experiment", help="the Tables 1-3 grid: coresets, pretraining, downstream tasks, verdicts")
    e.add_argument("--modality", default="both", choices=[*MODALITIES, "both"])
    e.add_argument("--stage", default="all", choices=["all", "pretrain"], help="pretrain only, or everything")
    e.add_argument("--rna-reference", default=None, help="checkpoint scoring the RNA pool and giving the Full pool "
                   "row (e.g. RNA-FM_pretrained.pth); default: pretrain one on the pool")
    e.add_argument("--protein-reference", default=None, help="the same for proteins (a fair-esm .pt or HF folder)")
    e.add_argument("--simulate-null", type=Number("--simulate-null", int, low=1), default=None, metavar="N",
                   help="run no grid: draw N simulated grids with no true difference through the verdict code, with "
                   "the noise fitted to the run's own files when it has verdicts (else a synthetic model of the "
                   "preset's shape); print the false-supported and false-contradicted rates and the power at one MDE")
    e.add_argument("--verify", action="store_true", help="run no grid: recompute every committed verdict, interval "
                   "and table cell from the committed per-item files under figures/; one line per mismatch, exit "
                   "status 1 if any")
    _wait_flag(e)
    _preset_flags(e, ["data", "finetune", "pretrain", "scoring", "selection", "downstream", "grid"])
    e.set_defaults(func=_experiment)

    ev = sub.add_parser("evaluate", help="the intrinsic metric of a checkpoint on a FASTA: MLM loss on masked "
                        "positions (all fed <mask>), the entropy of those residues, the gap; overall and per source")
    ev.add_argument("--checkpoint", required=True, help="our .pt, RNA-FM .pth, fair-esm .pt or a Hugging Face folder")
    ev.add_argument("--fasta", required=True, help="the held-out sequences: a FASTA path or a data set name")
    ev.add_argument("--modality", required=True, choices=MODALITIES)
    ev.add_argument("--json", default=None, help="also write the figures to this JSON file")
    ev.add_argument("--max-tokens", type=Number("--max-tokens", int, low=3, high=1024), default=1024,
                    help="evaluation window incl. <cls>/<eos>; longer sequences are read through a fixed seeded window")
    ev.add_argument("--mask-prob", type=Number("--mask-prob", float, low=0, high=1, low_open=True, high_open=True),
                    default=0.15, help="share of residues evaluated (default 0.15)")
    ev.add_argument("--mask-seed", type=Number("--mask-seed", int, low=0), default=7919,
                    help="seed of the evaluation masks (default: the experiment grid's)")
    ev.add_argument("--limit", type=Number("--limit", int, low=1), default=None, help="only the first N sequences")
    ev.add_argument("--batch-size", type=Number("--batch-size", int, low=1), default=32)
    ev.add_argument("--device", default=None, help="cpu, cuda (default: CUDA when available)")
    ev.set_defaults(func=_evaluate)

    r = sub.add_parser("run-notebooks", help="execute every notebook headless with papermill")
    r.add_argument("--preset", default="smoke", help="smoke / demo / paper")
    r.add_argument("--out", default=None, help="folder for executed copies (default runs/<preset>/notebooks)")
    r.add_argument("--only", default=None, help="comma-separated notebook numbers, e.g. 00,03")
    r.set_defaults(func=_run_notebooks)
    return p


def main(argv=None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "preset", None) is not None:
            _preset_from(args)   # an unknown preset or a bad override: one line before any work
        return args.func(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if write_fault(exc) is None:
            raise
        # refused by the machine outside `atomic_write` (a folder created, a cache file): one line naming the file
        print(f"error: {exc.filename or 'a file'}: {exc.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept on disk", file=sys.stderr)
        return 130
