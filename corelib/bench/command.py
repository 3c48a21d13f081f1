"""The command line of `python -m corelib.bench scoring | scale | pilot` (one-line errors, exit status 2)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from corelib.config import Number
from corelib.errors import InputError, OneLineParser
from corelib.runtime import PRECISIONS, choose_device


def _parser() -> OneLineParser:
    p = OneLineParser(prog="python -m corelib.bench")
    p.add_argument("what", choices=["scoring", "scale", "pilot"])
    p.add_argument("--preset", default="demo", help="pilot: the preset whose pool, model, crop and schedule are "
                   "tried (--model and --max-tokens are the scoring benchmark's; the pilot takes the preset's)")
    p.add_argument("--modality", default="rna", choices=("rna", "protein"), help="pilot: rna or protein")
    p.add_argument("--lr", type=Number("--lr", float, low=0, low_open=True), default=None,
                   help="pilot: the pretraining lr (default: the preset's)")
    p.add_argument("--seed", type=Number("--seed", int, low=0), default=0, help="pilot: model init, masks and order")
    p.add_argument("--epochs", type=Number("--epochs", int, low=1), default=None,
                   help="pilot: pretraining epochs (default: the preset's)")
    p.add_argument("--pilot-model", default=None, help="pilot: the model preset (default: the preset's)")
    p.add_argument("--crop", type=Number("--crop", int, low=3, high=1024), default=None,
                   help="pilot: pretraining and evaluation window in tokens (default: the preset's max_tokens)")
    p.add_argument("--model", default=None, help="tiny / small / paper (default: small; scale: tiny)")
    p.add_argument("--n", type=Number("--n", int, low=1), default=64,
                   help="sequences for the throughput figures; pilot: sequences pretrained on")
    p.add_argument("--batch-size", type=Number("--batch-size", int, low=1), default=16)
    p.add_argument("--max-tokens-per-batch", type=Number("--max-tokens-per-batch", int, low=1), default=None,
                   help="scoring: cut the batches by this many padded tokens instead of --batch-size sequences")
    p.add_argument("--max-tokens", type=Number("--max-tokens", int, low=3, high=1024), default=1024)
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="scoring: the forward's precision (auto: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--peak-tflops", type=Number("--peak-tflops", float, low=0, low_open=True), default=None,
                   help="scoring: the peak the training MFU is stated against (default: a measured matmul peak)")
    p.add_argument("--official-n", type=Number("--official-n", int, low=1), default=None,
                   help="sequences (of --sources) for the official-vs-ours comparison (default: --n)")
    p.add_argument("--pool-official-n", type=Number("--pool-official-n", int, low=0), default=256,
                   help="sequences of the whole demo pool for the second official-vs-ours ratio (0: skip)")
    p.add_argument("--official-batch", type=Number("--official-batch", int, low=1), default=4,
                   help="sequences per vmap call of the official method")
    p.add_argument("--rss-n", type=Number("--rss-n", int, low=0), default=400,
                   help="N for the peak-RSS figures (N and 10N; 0: skip)")
    p.add_argument("--profile", action="store_true",
                   help="scoring: also print per-operator self times of a training step and a scorer pass")
    p.add_argument("--device", default=None)
    p.add_argument("--sources", default=None, help="comma-separated pool sources, e.g. Rfam,BioMarKs (default: all)")
    p.add_argument("--pool", type=Number("--pool", int, low=1), default=2_000_000, help="scale: sequences in the pool")
    p.add_argument("--score-n", type=Number("--score-n", int, low=1), default=100_000,
                   help="scale: sequences scored at lm_head.dense")
    p.add_argument("--select-rows", type=Number("--select-rows", int, low=1), default=20_000_000,
                   help="scale: rows of the synthetic score table `select --method cci` reads")
    p.add_argument("--threads", type=Number("--threads", int, low=1), default=2,
                   help="scale: CPU threads of each measured process (OMP_NUM_THREADS)")
    p.add_argument("--work", default=None, help="scale: working folder (default: a temporary one, removed after)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    return p


def main(argv=None) -> int:
    """Entry point of `python -m corelib.bench`."""
    a = _parser().parse_args(argv)
    try:
        if a.what == "pilot":
            return _pilot(a)
        if a.what == "scale":
            from corelib.bench.scale import report, scale_benchmark

            figures = scale_benchmark(a.pool, a.score_n, a.select_rows, work=a.work, model=a.model or "tiny",
                                      seed=a.seed, threads=a.threads)
        else:
            from corelib.bench.throughput import report, scoring_benchmark

            figures = scoring_benchmark(a.model or "small", a.n, a.batch_size, a.max_tokens, a.device, a.rss_n,
                                        official_n=a.official_n, official_batch=a.official_batch,
                                        sources=a.sources.split(",") if a.sources else None,
                                        pool_official_n=a.pool_official_n, precision=a.precision,
                                        max_tokens_per_batch=a.max_tokens_per_batch, peak_tflops=a.peak_tflops,
                                        profile=a.profile)
    except InputError as exc:   # an unknown preset, a pool not built here, a CUDA device that is not there
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(figures))
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2, default=str))
    return 0


def _pilot(a) -> int:
    from corelib.config import get_preset
    from corelib.experiment.pilot import pilot_run

    over = {"seed": a.seed, "pretrain.batch_size": a.batch_size, **({"pretrain.lr": a.lr} if a.lr else {}),
            **({"pretrain.epochs": a.epochs} if a.epochs else {}),
            **({"model": a.pilot_model} if a.pilot_model else {}),
            **({"data.max_tokens": a.crop} if a.crop else {})}
    print(json.dumps(pilot_run(get_preset(a.preset, over), a.modality, a.n, device=choose_device(a.device))))
    return 0
