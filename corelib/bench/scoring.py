"""Benchmarks (scripts, not tests): `python -m corelib.bench scoring [--model small] [--n 64] [--device cuda]`,
and the pilot that sizes a preset: `python -m corelib.bench pilot --preset demo --modality rna --n 1000`.

Prints, from one run on the same model and the same real RNA sequences: training-step, forward-only and
scorer throughputs (sequences/s), the official method's (torch.func vmap(jacrev) over lm_head.dense with
every sequence padded to 1024, reimplemented here), a naive batch-1 autograd loop's, the real-token
fraction of our length-bucketed batches, peak RSS of the scoring stage on N and 10N sequences, and the
pool's length distribution; each ratio beside its target.

"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from corelib.config import Number
from corelib.data.manifests import dataset_path
from corelib.data.pools import load_pool
from corelib.data.tokens import length_batches, mlm_batches, tokenize
from corelib.errors import InputError, OneLineParser
from corelib.influence.fisher import diagonal_fisher, self_influence
from corelib.influence.hooks import scope_params
from corelib.models.loss import per_sequence_loss
from corelib.models.masked_lm import MaskedLM, build_model
from corelib.runtime import choose_device


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _rate(fn, n_seqs, device, repeats=1, warm=True):
    if warm:
        fn()  # warm-up (allocations, kernels)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return repeats * n_seqs / (time.perf_counter() - start)


def _official_logits(net, tokens):
    """fair-esm ESM-1b forward without its `if not padding_mask.any()` branch, which torch.func.vmap
    cannot trace (the official script ran an older stack); numerically the same forward."""
    padding_mask = tokens.eq(net.padding_idx)
    x = net.embed_scale * net.embed_tokens(tokens) + net.embed_positions(tokens)
    if net.emb_layer_norm_before is not None:
        x = net.emb_layer_norm_before(x)
    x = (x * (1 - padding_mask.unsqueeze(-1).type_as(x))).transpose(0, 1)
    for layer in net.layers:
        x, _ = layer(x, self_attn_padding_mask=padding_mask)
    return net.lm_head(net.emb_layer_norm_after(x).transpose(0, 1))


def official_scores(model, tokens, inv_fisher, batch_size=20, width=1024):
    """The official scorer, reimplemented: vmap(jacrev) of an unmasked, pad-inclusive loss over each
    sequence padded to `width`, w.r.t. lm_head.dense.weight; returns -sum(g^2 * inv_fisher)."""
    from torch.func import functional_call, jacrev, vmap

    wrapper = _Wrapper(model.net)
    name = "net.lm_head.dense.weight"
    weight = {name: model.net.lm_head.dense.weight.detach()}

    def single(params, x):
        logits = functional_call(wrapper, params, (x.unsqueeze(0),))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), x.view(-1))

    out = []
    for start in range(0, len(tokens), batch_size):
        rows = tokens[start : start + batch_size]
        x = torch.full((len(rows), width), model.vocab.pad, dtype=torch.long)
        for i, r in enumerate(rows):
            x[i, : len(r)] = torch.from_numpy(r.astype(np.int64)[:width])
        with torch.no_grad():  # jacrev still differentiates w.r.t. `weight`; nothing else keeps a graph
            grads = vmap(jacrev(single), in_dims=(None, 0))(weight, x.to(inv_fisher.device))[name]
        out.append(-(grads.flatten(1).square() * inv_fisher.flatten()).sum(1))
    return torch.cat(out)


class _Wrapper(torch.nn.Module):
    """The fair-esm net behind the vmap-traceable forward, for functional_call."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return _official_logits(self.net, x)


def _peak_rss_mb(fasta, n, out, model):
    """Peak RSS of a fresh scoring process: VmHWM (per address space, so not inherited across exec as
    ru_maxrss is from the forking parent)."""
    code = ("from corelib.config import get_preset; from corelib.influence.scoring import run_scoring;"
            f"run_scoring({str(fasta)!r}, 'rna', {str(out)!r}, get_preset('smoke', {{'data.pool_limit': {n}, 'scoring.subset_size': 64}}),"
            f" model={model!r}, shard_size=256, progress=False);"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return int(proc.stdout.strip().splitlines()[-1]) / 1024


def pool_real_token_fraction(max_tokens=1024, batch_size=16, shard_size=2048) -> float:
    """Real-token fraction of the scorer's batches over the whole demo pool (shard by shard, as scored)."""
    pool = load_pool("rna_demo", "rna")
    lengths = np.array([min(len(s) + 2, max_tokens) for s in pool["seq"]])
    real = padded = 0
    for start in range(0, len(lengths), shard_size):
        part = lengths[start : start + shard_size]
        for batch in length_batches(part, batch_size):
            real += int(part[batch].sum())
            padded += len(batch) * int(part[batch].max())
    return real / padded


@dataclass
class BenchSetup:
    """The benchmark's fixed inputs: one model and the same masked batches of real RNA sequences (Sec. 3.2)."""

    device: torch.device
    model: MaskedLM
    tokens: list
    idx: np.ndarray
    fixed: list          # the masked batches every throughput figure runs over
    batch_size: int


def bench_setup(model_preset="small", n=64, batch_size=16, max_tokens=1024, device=None, sources=None) -> BenchSetup:
    """The first n demo-pool RNA sequences (of `sources`), tokenised and batched, and a fresh model (Sec. 3.2)."""
    device = choose_device(device)
    torch.manual_seed(0)
    pool = load_pool("rna_demo", "rna")
    if sources:
        pool = pool[pool["source"].isin(sources)]
    pool = pool.head(n)
    tokens = tokenize(pool["seq"], "rna", max_tokens)
    idx = np.arange(len(pool))
    model = build_model("rna", model_preset, seed=0).to(device)
    fixed = list(mlm_batches(tokens, idx, batch_size, model.vocab, mask_seed=0))
    return BenchSetup(device, model, tokens, idx, fixed, batch_size)


def measure_training_and_forward(s: BenchSetup) -> dict:
    """Sequences/s of an AdamW training step (this trains the model) and of a no-grad forward (A.3)."""
    model, device = s.model, s.device
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train():
        model.train()
        for x, y, _ in s.fixed:
            loss = per_sequence_loss(model(x.to(device)), y.to(device)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()

    @torch.no_grad()
    def forward():
        for x, y, _ in s.fixed:
            per_sequence_loss(model(x.to(device)), y.to(device))

    n = len(s.idx)
    return {"train_step_seq_s": _rate(train, n, device), "forward_seq_s": _rate(forward, n, device)}


def measure_attention(model_preset: str, batch_size: int, max_tokens: int, device) -> dict:
    """Training-step sequences/s with the SDPA attention core vs fair-esm's unfused attention, on the same
    full-length batches (the longest demo RNA sequences, cropped to max_tokens) and the same weights."""
    pool = load_pool("rna_demo", "rna")
    longest = pool.assign(n=pool["seq"].str.len()).nlargest(batch_size, "n", keep="first")
    tokens = tokenize(longest["seq"], "rna", max_tokens)
    out = {"attention_tokens": int(np.mean([len(t) for t in tokens]))}
    for mode in ("eager", "sdpa"):
        model = build_model("rna", model_preset, seed=0).to(device)
        model.attention = mode
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        batch = list(mlm_batches(tokens, np.arange(len(tokens)), batch_size, model.vocab, mask_seed=0))

        def step(model=model, opt=opt, batch=batch):
            model.train()
            for x, y, _ in batch:
                loss = per_sequence_loss(model(x.to(device)), y.to(device)).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        out[f"train_step_{mode}_seq_s"] = _rate(step, len(tokens), device)
    return out


def measure_precision(s: BenchSetup, budget: int) -> dict:
    """bf16 autocast vs fp32 scores of the same model and batches: Spearman, max relative difference, and
    the Jaccard overlap of the Top-k and CCI coresets they select (Eq. 11, Algorithm 1)."""
    from scipy.stats import spearmanr

    from corelib.selection.diagnostics import jaccard
    from corelib.selection.methods import cci, top_k

    scores = {}
    for precision in ("fp32", "bf16"):
        fisher, _ = diagonal_fisher(s.model, s.fixed, "all", s.device, precision=precision)
        scores[precision] = np.concatenate([sc for _, sc, _, _ in self_influence(
            s.model, s.fixed, fisher, "auto", "all", s.device, groups=False, precision=precision)])
    a, b = scores["fp32"], scores["bf16"]
    k = min(budget, len(a) // 2)
    return {"bf16_spearman": float(spearmanr(a, b).statistic),
            "bf16_max_rel_diff": float(np.max(np.abs(b - a) / np.abs(a))),
            "bf16_jaccard_topk": jaccard(top_k(a, k), top_k(b, k)),
            "bf16_jaccard_cci": jaccard(cci(a, k, strata=10), cci(b, k, strata=10)), "bf16_budget": k}


def measure_scorer(s: BenchSetup, fisher_all: dict, fisher_head: dict) -> dict:
    """Sequences/s of our Eq. 11 scorer over all parameters and over lm_head.dense (Sec. 3.2)."""
    def scorer(fisher, scope):
        return lambda: [None for _ in self_influence(s.model, s.fixed, fisher, "auto", scope, s.device, groups=False)]

    n = len(s.idx)
    return {"scorer_all_seq_s": _rate(scorer(fisher_all, "all"), n, s.device),
            "scorer_lm_head_seq_s": _rate(scorer(fisher_head, "lm_head.dense"), n, s.device)}


def measure_padding(s: BenchSetup, max_tokens: int) -> dict:
    """Real-token fraction of these batches and of the whole demo pool's, and the length quantiles (Sec. 3.2)."""
    pad = s.model.vocab.pad
    real = sum(int((b[0] != pad).sum()) for b in s.fixed)
    padded = sum(b[0].numel() for b in s.fixed)
    lengths = np.array([len(t) for t in s.tokens])
    return {"real_token_fraction_these": real / padded,
            "real_token_fraction": pool_real_token_fraction(max_tokens, s.batch_size),
            "pool_length_quantiles": {q: float(np.quantile(lengths, q)) for q in (0.0, 0.25, 0.5, 0.75, 1.0)}}


def measure_official(s: BenchSetup, fisher_head: dict, m: int | None, official_batch: int) -> dict:
    """Sequences/s of the official vmap(jacrev) scorer and of ours at lm_head.dense on the same sequences (the
    whole demo pool when m is None, else the first m) (Eq. 11); NaN and a note when it runs out of GPU memory."""
    inv = 1.0 / (fisher_head["net.lm_head.dense.weight"] + 1e-8)
    pool = load_pool("rna_demo", "rna")
    tokens = tokenize(pool["seq"] if m is None else pool["seq"][:m], "rna", 1024)
    m = len(tokens)
    batches = list(mlm_batches(tokens, np.arange(m), s.batch_size, s.model.vocab, mask_seed=0))
    ours = lambda: [None for _ in self_influence(s.model, batches, fisher_head, 1e-8, "lm_head.dense",  # noqa: E731
                                                 s.device, groups=False)]
    if s.device.type == "cuda":
        torch.cuda.empty_cache()
    # the official script used 20 per vmap batch; at RNA-FM size that needs more than an 80 GB GPU
    out = {"official_batch": official_batch, "official_sequences": m,
           "ours_lm_head_same_seq_s": _rate(ours, m, s.device, warm=False)}
    attention, s.model.attention = s.model.attention, "eager"   # the official stack: fair-esm's own attention
    try:
        out["official_seq_s"] = _rate(lambda: official_scores(s.model, tokens, inv, official_batch), m, s.device,
                                      warm=False)
    except torch.OutOfMemoryError:
        out["official_seq_s"] = float("nan")
        out["official_note"] = f"out of GPU memory at vmap batch {official_batch}"
        torch.cuda.empty_cache()
    finally:
        s.model.attention = attention
    return out


def measure_naive(s: BenchSetup, fisher_all: dict, naive_n: int) -> dict:
    """Sequences/s of a naive batch-1 autograd loop over all parameters (Eq. 11, for context)."""
    model, device = s.model, s.device
    params = list(scope_params(model, "all").values())
    one = list(mlm_batches(s.tokens[:naive_n], s.idx[:naive_n], 1, model.vocab, mask_seed=0))

    def naive():
        for x, y, _ in one:
            g = torch.autograd.grad(per_sequence_loss(model(x.to(device)), y.to(device)).sum(), params, allow_unused=True)
            sum(float((gi.square() / (fisher_all[k] + 1e-8)).sum()) for gi, k in zip(g, fisher_all) if gi is not None)

    return {"naive_batch1_seq_s": _rate(naive, naive_n, device)}


def measure_peak_rss(rss_n: int, rss_model: str) -> dict:
    """Peak RSS (MB) of the scoring stage on N and 10N demo-pool sequences, in fresh processes (Sec. 3.2)."""
    with tempfile.TemporaryDirectory() as tmp:
        fasta = dataset_path("rna_demo")
        return {"peak_rss_mb_N": _peak_rss_mb(fasta, rss_n, Path(tmp) / "n", rss_model),
                "peak_rss_mb_10N": _peak_rss_mb(fasta, 10 * rss_n, Path(tmp) / "10n", rss_model),
                "rss_N": rss_n}


def scoring_benchmark(model_preset="small", n=64, batch_size=16, max_tokens=1024, device=None, rss_n=400,
                      naive_n=None, official_n=None, rss_model="tiny", official_batch=4, sources=None):
    """Run every measurement once; returns a dict of figures (also printed by `main`) (Sec. 3.2)."""
    s = bench_setup(model_preset, n, batch_size, max_tokens, device, sources)
    n = len(s.idx)
    fisher_all, _ = diagonal_fisher(s.model, s.fixed, "all", s.device)          # on the untrained model
    fisher_head, _ = diagonal_fisher(s.model, s.fixed, "lm_head.dense", s.device)
    figures = {"device": str(s.device), "model": model_preset, "sequences": n, "batch_size": batch_size,
               "sources": ",".join(sources) if sources else "all", "max_tokens": max_tokens}
    figures.update(measure_training_and_forward(s))
    figures.update(measure_scorer(s, fisher_all, fisher_head))
    figures.update(measure_padding(s, max_tokens))
    figures.update(measure_attention(model_preset, batch_size, max_tokens, s.device))
    figures.update(measure_precision(s, budget=max(4, n // 4)))
    # the official method and ours at the same scope on the same sequences (the whole demo pool by default)
    figures.update(measure_official(s, fisher_head, official_n, official_batch))
    figures.update(measure_naive(s, fisher_all, naive_n or n))
    figures.update(measure_peak_rss(rss_n, rss_model))
    return figures


def report(f: dict) -> str:
    """The ratio table with the issue's targets (measured values, no pass/fail tuning)."""
    rows = [
        (f"training step, SDPA / fair-esm unfused attention (batch {f['batch_size']}, ~{f['attention_tokens']} tokens)",
         f["train_step_sdpa_seq_s"] / f["train_step_eager_seq_s"], ">= 3"),
        ("all-parameter scorer / training step", f["scorer_all_seq_s"] / f["train_step_seq_s"], ">= 0.9"),
        (f"lm_head.dense scorer / official vmap(jacrev), pad 1024, same {f['official_sequences']} sequences "
         f"(vmap batch {f['official_batch']})", f["ours_lm_head_same_seq_s"] / f["official_seq_s"], ">= 5"),
        ("batched all-parameter scorer / naive batch-1 loop", f["scorer_all_seq_s"] / f["naive_batch1_seq_s"], ">= 1"),
        ("real-token fraction of our batches (whole demo pool, as scored)", f["real_token_fraction"], ">= 0.9"),
        (f"peak RSS 10N / N (N = {f['rss_N']})", f["peak_rss_mb_10N"] / f["peak_rss_mb_N"], "<= 1.1"),
    ]
    lines = [f"device {f['device']}, model {f['model']}, {f['sequences']} RNA sequences (demo pool, sources: "
             f"{f.get('sources', 'all')}), batch {f['batch_size']}, crop {f['max_tokens']} tokens",
             "pool length quantiles (tokens, 0/25/50/75/100%): "
             + " / ".join(f"{v:.0f}" for v in f["pool_length_quantiles"].values()), "",
             "| throughput | seq/s |", "|---|---|"]
    for key in ("train_step_seq_s", "train_step_eager_seq_s", "train_step_sdpa_seq_s", "forward_seq_s",
                "scorer_all_seq_s", "scorer_lm_head_seq_s", "ours_lm_head_same_seq_s", "official_seq_s",
                "naive_batch1_seq_s"):
        lines.append(f"| {key.removesuffix('_seq_s')} | {f[key]:.2f} |")
    lines += ["", f"peak RSS: {f['peak_rss_mb_N']:.0f} MB (N) / {f['peak_rss_mb_10N']:.0f} MB (10N)",
              f"bf16 vs fp32 scores ({f['sequences']} sequences): Spearman {f['bf16_spearman']:.4f}, max relative "
              f"difference {f['bf16_max_rel_diff']:.3g}; coreset Jaccard at k = {f['bf16_budget']}: Top I "
              f"{f['bf16_jaccard_topk']:.3f}, CCI {f['bf16_jaccard_cci']:.3f}", "",
              "| ratio | measured | target |", "|---|---|---|"]
    lines += [f"| {name} | {value:.2f} | {target} |" for name, value, target in rows]
    if "official_note" in f:
        lines.append(f"official method: {f['official_note']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    """Entry point of `python -m corelib.bench`."""
    p = OneLineParser(prog="python -m corelib.bench")
    p.add_argument("what", choices=["scoring", "pilot"])
    p.add_argument("--preset", default="demo", help="pilot: the preset whose pool, model, crop and schedule are "
                   "tried (--model and --max-tokens are the scoring benchmark's; the pilot takes the preset's)")
    p.add_argument("--modality", default="rna", choices=("rna", "protein"), help="pilot: rna or protein")
    p.add_argument("--lr", type=Number("--lr", float, low=0, low_open=True), default=None,
                   help="pilot: the pretraining lr (default: the preset's)")
    p.add_argument("--seed", type=Number("--seed", int, low=0), default=0, help="pilot: model init, masks and order")
    p.add_argument("--model", default="small", help="tiny / small / paper")
    p.add_argument("--n", type=Number("--n", int, low=1), default=64,
                   help="sequences for the throughput figures; pilot: sequences pretrained on")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-tokens", type=int, default=1024)
    p.add_argument("--official-n", type=int, default=None,
                   help="sequences for the official-vs-ours comparison (default: the whole demo pool)")
    p.add_argument("--official-batch", type=int, default=4, help="sequences per vmap call of the official method")
    p.add_argument("--rss-n", type=int, default=400, help="N for the peak-RSS figures (N and 10N)")
    p.add_argument("--device", default=None)
    p.add_argument("--sources", default=None, help="comma-separated pool sources, e.g. Rfam,BioMarKs (default: all)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    a = p.parse_args(argv)
    if a.what == "pilot":
        from corelib.config import get_preset
        from corelib.experiment.pilot import pilot_run

        over = {"seed": a.seed, "pretrain.batch_size": a.batch_size, **({"pretrain.lr": a.lr} if a.lr else {})}
        try:
            print(json.dumps(pilot_run(get_preset(a.preset, over), a.modality, a.n, device=choose_device(a.device))))
        except InputError as exc:   # an unknown preset, a pool not built here: one line
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    figures = scoring_benchmark(a.model, a.n, a.batch_size, a.max_tokens, a.device, a.rss_n, official_n=a.official_n,
                                official_batch=a.official_batch, sources=a.sources.split(",") if a.sources else None)
    print(report(figures))
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
