"""What else does self-influence measure? Diagnostics of a score folder (beyond the paper; notebook 02,
"How robust is the score?"): reliability across mask draws, correlation with length and loss, how each
selector's picks spread over length deciles, the ranking's dependence on the damping of Eq. 10 (and on
dropping the curvature altogether), and agreement with the scores computed without the subset fine-tune.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from corelib.data.store import token_store
from corelib.data.tokens import mlm_batches
from corelib.files import atomic_write
from corelib.influence.fisher import _run
from corelib.influence.hooks import scope_params
from corelib.models.checkpoints import get_model, load_checkpoint
from corelib.rundir import output_file
from corelib.selection.diagnostics import jaccard
from corelib.selection.files import read_scores
from corelib.selection.strategies import select_indices


def spearman_brown(a, b) -> float:
    """Split-half reliability of a mean of two halves: r' = 2r / (1 + r), r = Spearman(a, b)."""
    r = float(spearmanr(a, b).statistic)
    return 2 * r / (1 + r)


def draw_reliability(scores: pd.DataFrame) -> float | None:
    """Spearman-Brown reliability of the score over its mask draws: mean of the even draws vs the odd ones
    (None with a single draw)."""
    draws = sorted(c for c in scores.columns if c.startswith("draw") and c[4:].isdigit())
    if len(draws) < 2:
        return None
    return spearman_brown(scores[draws[0::2]].mean(axis=1), scores[draws[1::2]].mean(axis=1))


def length_decile_rates(scores: pd.DataFrame, methods, budget, seed: int = 0) -> pd.DataFrame:
    """Share of each length decile that each selection method picks at `budget` (higher = favoured)."""
    decile = pd.qcut(scores["length"].rank(method="first"), 10, labels=False)
    sizes = np.bincount(decile, minlength=10)
    rows = []
    for method in methods:
        picked = select_indices(method, scores, budget, seed=seed)
        rate = np.bincount(decile.to_numpy()[picked], minlength=10) / sizes
        rows.append({"method": method, **{f"decile_{d + 1}": float(r) for d, r in enumerate(rate)}})
    return pd.DataFrame(rows)


def curvature_sweep(model, batches, fisher: dict, dampings: dict, scope: str = "all", device="cpu") -> pd.DataFrame:
    """Eq. 11 of the same sequences under several curvatures in one pass: g^T (diag F + lambda)^-1 g for each
    named lambda, and g^T g (identity curvature, the plain squared gradient norm). Rows: pool index."""
    params = scope_params(model, scope)
    inv = {name: {n: 1.0 / (f.to(device).float() + lam) for n, f in fisher.items()} for name, lam in dampings.items()}
    current: dict[str, torch.Tensor] = {}

    def consume(pname, grad):
        sq = grad.square()
        for name, table in inv.items():
            current[name] = current.get(name, 0) + (sq * table[pname]).flatten(1).sum(1).double()
        current["identity"] = current.get("identity", 0) + sq.flatten(1).sum(1).double()

    out = []
    for idx, _ in _run(model, batches, params, consume, device):
        out.append(pd.DataFrame({"index": np.asarray(idx), **{k: v.cpu().numpy() for k, v in current.items()}}))
        current.clear()
    return pd.concat(out, ignore_index=True).sort_values("index", ignore_index=True)


def _scored_model(folder: Path, meta: dict):
    """The model a score folder scored with: its fine-tuned weights, else its checkpoint, else the preset."""
    if (folder / "finetuned.pt").exists():
        return load_checkpoint(folder / "finetuned.pt", meta["modality"])
    if meta.get("checkpoint"):
        return load_checkpoint(meta["checkpoint"], meta["modality"])
    return get_model(meta["modality"], meta["model"], None, seed=meta["seed"])


def damping_agreement(folder, sample: int = 512, device="cpu") -> pd.DataFrame:
    """Spearman of the score ranking across damping in {1e-8, 1e-3 x mean diag F, 0.1 x mean diag F} and
    against identity curvature, on the first `sample` scored sequences of a score folder (Eq. 10-11)."""
    folder = Path(folder)
    scores, meta = read_scores(folder)
    saved = torch.load(folder / "fisher.pt", map_location="cpu", weights_only=True)
    fisher = saved["fisher"]
    mean = sum(float(f.double().sum()) for f in fisher.values()) / sum(f.numel() for f in fisher.values())
    dampings = {"1e-8": 1e-8, "1e-3 x mean": 1e-3 * mean, "0.1 x mean (auto)": 0.1 * mean}
    model = _scored_model(folder, meta).to(device)
    store = token_store(meta["fasta"], meta["modality"], progress=False)
    idx = scores["index"].to_numpy()[:sample]
    batches = mlm_batches(store.gather(idx, meta["max_tokens"]), idx, meta["batch_size"], model.vocab,
                          mask_seed=meta["seed"], mask_prob=meta["mask_prob"])
    sweep = curvature_sweep(model, batches, fisher, dampings, meta["scope"], device)
    names = [*dampings, "identity"]
    matrix = pd.DataFrame([[float(spearmanr(sweep[a], sweep[b]).statistic) for b in names] for a in names],
                          index=names, columns=names)
    return matrix


def diagnose(folder, other=None, budget=None, sample: int = 512, device="cpu") -> pd.DataFrame:
    """One table of diagnostics of a score folder (and, with `other`, its agreement with a second folder,
    e.g. w/o ft): quantity, value, and what it means."""
    scores, meta = read_scores(folder)
    budget = budget or max(1, len(scores) // 10)
    rows = [("sequences", len(scores), "scored sequences"),
            ("split-half reliability over mask draws", draw_reliability(scores),
             "Spearman-Brown; empty with one draw (score --mask-draws K)"),
            ("Spearman(score, length)", float(spearmanr(scores["score"], scores["length"]).statistic),
             "negative: the score favours short sequences (1/m of a mean loss)"),
            ("Spearman(score, loss)", float(spearmanr(scores["score"], scores["loss"]).statistic),
             "how much of the score is the per-sequence MLM loss")]
    if "token_score" in scores.columns:
        rows.append(("Spearman(per-token score, length)",
                     float(spearmanr(scores["token_score"], scores["length"]).statistic), "m x I, length-normalised"))
    methods = ["topk", "cci", "loss-topk"] + (["topk-per-token"] if "token_score" in scores.columns else [])
    rates = length_decile_rates(scores, methods, budget, seed=meta.get("seed", 0))
    for r in rates.itertuples(index=False):
        d = np.array(r[1:])
        rows.append((f"{r.method}: pick rate, shortest / longest length decile", f"{d[0]:.3f} / {d[-1]:.3f}",
                     f"budget {budget}; uniform = {budget / len(scores):.3f}"))
    if sample and Path(folder, "fisher.pt").exists() and not meta.get("compat"):
        m = damping_agreement(folder, sample, device)
        for other_name in m.columns[:-2]:   # each other damping against 'auto' (the last two: auto, identity)
            rows.append((f"Spearman(damping {other_name}, auto)", m.loc[other_name, "0.1 x mean (auto)"],
                         f"first {min(sample, len(scores))} sequences, recomputed"))
        rows.append(("Spearman(identity curvature, auto)", m.loc["identity", "0.1 x mean (auto)"],
                     "plain squared gradient norm vs Eq. 11"))
    if other is not None:
        b, _ = read_scores(other)
        both = scores.merge(b[["index", "score"]].rename(columns={"score": "compared_score"}), on="index")
        rows.append(("Spearman(this, other)", float(spearmanr(both["score"], both["compared_score"]).statistic),
                     f"other = {Path(other).name}"))
        rows.append((f"Jaccard of Top-{budget} (this, other)",
                     jaccard(select_indices("topk", both, budget),
                             select_indices("topk", both.assign(score=both["compared_score"]), budget)), ""))
    return pd.DataFrame(rows, columns=["quantity", "value", "note"])


def write_diagnostics(folder, out=None, **kwargs) -> Path:
    """`python -m corelib diagnose`: the table as CSV and Markdown beside the scores (or at `out`), each written
    atomically; an `out` that cannot be written is one line before any work."""
    if out is not None:
        out = output_file(out, "--out")
    table = diagnose(folder, **kwargs)
    out = out or Path(folder) / "diagnostics.csv"
    atomic_write(out, lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(out.with_suffix(".md"), lambda tmp: tmp.write_text(table.to_markdown(index=False, floatfmt=".4g") + "\n"))
    atomic_write(out.with_suffix(".json"), lambda tmp: tmp.write_text(
        json.dumps({"scores": str(folder), **{k: str(v) for k, v in kwargs.items()}})))
    return out
