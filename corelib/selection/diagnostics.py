"""What a coreset looks like next to its pool (Section 4.3 analyses): strata, overlap, clumping, shifts."""
from __future__ import annotations

import numpy as np
import pandas as pd

from corelib.selection.methods import after_cutoff, as_scores, stratum_of


# ----------------------------------------------------------------------------- diagnostics
def strata_table(scores, picked, hard_cutoff: float = 0.05, strata: int = 50, binning: str = "width") -> pd.DataFrame:
    """Per stratum of Algorithm 1: score range, pool count after the cutoff, and picks (water-filling)."""
    s = as_scores(scores)
    keep = after_cutoff(s, hard_cutoff)
    sid = stratum_of(s[keep], strata, binning)
    chosen = np.isin(keep, np.asarray(picked))
    rows = []
    for b in range(strata):
        inside = sid == b
        vals = s[keep][inside]
        rows.append({"stratum": b, "score_min": vals.min() if vals.size else np.nan,
                     "score_max": vals.max() if vals.size else np.nan,
                     "pool": int(inside.sum()), "picked": int((inside & chosen).sum())})
    return pd.DataFrame(rows)


def jaccard(a, b) -> float:
    """|A intersect B| / |A union B| of two index sets."""
    a, b = set(np.asarray(a).tolist()), set(np.asarray(b).tolist())
    return len(a & b) / len(a | b) if a | b else 1.0


def overlap_matrix(coresets: dict) -> pd.DataFrame:
    """Pairwise Jaccard overlap between named coresets."""
    names = list(coresets)
    return pd.DataFrame([[jaccard(coresets[x], coresets[y]) for y in names] for x in names], index=names, columns=names)


def clumping(scores, picked) -> float:
    """Fraction of picks whose neighbour in score order (either side) is also picked: ~1 for Top-k,
    ~budget/n for random; a coverage diagnostic for stratified selection."""
    s = as_scores(scores)
    rank = np.empty(s.size, dtype=np.int64)
    rank[np.lexsort((np.arange(s.size), s))] = np.arange(s.size)
    r = rank[np.asarray(picked)] + 1  # positions in score order, shifted so both neighbours exist
    on = np.zeros(s.size + 2, dtype=bool)
    on[r] = True
    return float(np.mean(on[r - 1] | on[r + 1])) if r.size else 0.0


def composition(labels, picked) -> pd.DataFrame:
    """Share of each label (source or family) in the pool and in the coreset."""
    labels = pd.Series(np.asarray(labels))
    pool = labels.value_counts(normalize=True).rename("pool")
    pick = labels.iloc[np.asarray(picked)].value_counts(normalize=True).rename("picked")
    out = pd.concat([pool, pick], axis=1).fillna(0.0)
    return out.rename_axis("label").reset_index().sort_values("pool", ascending=False, ignore_index=True)


def distribution_shift(values, picked) -> dict:
    """Picked vs pool for one numeric property (length, GC, score): means and the KS statistic (scipy)."""
    from scipy.stats import ks_2samp

    v = np.asarray(values, dtype=np.float64)
    sub = v[np.asarray(picked)]
    return {"pool_mean": float(v.mean()), "picked_mean": float(sub.mean()),
            "ks": float(ks_2samp(v, sub).statistic)}


def coreset_diagnostics(scores, coresets: dict, lengths, gc=None, labels=None) -> pd.DataFrame:
    """One row per coreset: size, mean score, clumping, KS distance to the pool for score, length and GC,
    and how many labels (families) it covers."""
    rows = []
    for name, picked in coresets.items():
        row = {"coreset": name, "size": len(picked), "mean_score": float(np.mean(np.asarray(scores)[picked])),
               "clumping": clumping(scores, picked),
               "ks_score": distribution_shift(scores, picked)["ks"],
               "ks_length": distribution_shift(lengths, picked)["ks"]}
        if gc is not None:
            row["ks_gc"] = distribution_shift(gc, picked)["ks"]
        if labels is not None:
            row["labels_covered"] = int(pd.Series(np.asarray(labels)[picked]).nunique())
        rows.append(row)
    return pd.DataFrame(rows)


def selector_profile(pool: pd.DataFrame, coresets: dict) -> pd.DataFrame:
    """What each selector picks (notebook 03 §3b): size, residues, median length, mean score decile (1 = lowest
    tenth of the pool's scores, 10 = highest) and the share of each source family, with the pool as a row."""
    decile = pd.qcut(pool["score"].rank(method="first"), 10, labels=False).to_numpy() + 1
    sources = sorted(pool["source"].unique()) if "source" in pool.columns else []
    rows = []
    for name, picked in {"pool": np.arange(len(pool)), **coresets}.items():
        part = pool.iloc[np.asarray(picked)]
        row = {"selector": name, "size": len(part), "residues": int(part["length"].sum()),
               "median_length": float(part["length"].median()), "mean_score_decile": float(decile[picked].mean())}
        row.update({f"share {s}": float((part["source"] == s).mean()) for s in sources})
        rows.append(row)
    return pd.DataFrame(rows)
