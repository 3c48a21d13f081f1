"""Plots of every notebook, legible at notebook width (`savefig` refuses wider than 1,200 px or text below 8 pt).
Every colour and marker comes from `corelib.report.style`: a method, a source or a modality looks the same in
every figure."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

from corelib.report.style import DIVERGING, MODALITIES, ROLES, SEQUENTIAL, SERIES, method_style, source_style

SMALL = 8   # pt: legends, tick labels and annotations (the floor `savefig` enforces)


# ----------------------------------------------------------------------------- axis helpers
def _short(v: float, _pos=None) -> str:
    """A tick label: 2M / 30k / 7,500 / 3.5 / 0.02."""
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _log_axis(ax, which: str = "y") -> None:
    """Log scale on `which` with at least three labelled ticks at round values (decades, else 1-2-5, else
    1-2-3-5-7 per decade: the sparsest that gives three), so an axis spanning less than a decade is not left
    with one label; the axis label says "log scale"."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis = ax.yaxis if which == "y" else ax.xaxis
    getattr(ax, f"set_{which}scale")("log")
    lo, hi = getattr(ax, f"get_{which}lim")()
    if np.log10(hi / lo) < 6:
        decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
        for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 5, 7), (1, 1.5, 2, 3, 4, 5, 7)):
            ticks = [m * 10.0 ** e for e in decades for m in mantissas if lo <= m * 10.0 ** e <= hi]
            if len(ticks) >= 3:
                break
        else:
            ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, 6)[1:-1]})
        axis.set_major_locator(FixedLocator(ticks))
        axis.set_major_formatter(FuncFormatter(_short))
        axis.set_minor_formatter(NullFormatter())
    label = axis.get_label_text()
    if "log" not in label:
        axis.set_label_text(f"{label} (log scale)" if label else "log scale")


def _show_lines(ax, values) -> None:
    """Widen the y range so every horizontal reference line at `values` lies inside the axes, not on a spine."""
    lo, hi = ax.get_ylim()
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return
    lo, hi = min(lo, *vals), max(hi, *vals)
    pad = 0.06 * (hi - lo or abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + pad)


def _hline(ax, y: float, label: str, colour: str, ls: str = "--") -> None:
    ax.axhline(y, color=colour, ls=ls, lw=1.2, label=label)


# ----------------------------------------------------------------------------- notebook 00
def plot_pool_overview(pools: dict[str, pd.DataFrame], what: str = "length"):
    """One panel per modality: the `length` histograms by source, or the `family` counts by source; a source has
    the same colour in every figure (`style.SOURCES`)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(pools), figsize=(5 * len(pools), 3.6 if what == "length" else 5.2),
                             squeeze=False)
    for ax, (modality, pool) in zip(axes[0], pools.items()):
        order = sorted(pool["source"].unique())
        palette = {s: source_style(s).colour for s in order}
        if what == "length":
            sns.histplot(pool, x="length", hue="source", hue_order=order, palette=palette, bins=40,
                         multiple="stack", alpha=1, ax=ax)
            ax.set(title=f"{modality} pool: sequence length", xlabel="length (residues; cropped at 1022)",
                   ylabel="sequences")
            sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.2), ncol=len(order), fontsize=SMALL,
                            title_fontsize=SMALL, frameon=False)   # below the axes: no bar hidden under it
        else:
            counts = pd.crosstab(pool["family"], pool["source"])[order]
            counts = counts.loc[counts.sum(axis=1).sort_values().index]
            counts.plot.barh(stacked=True, ax=ax, width=0.8, color=[palette[s] for s in order], legend=False)
            _hatch_sources(ax, order)
            for y, total in enumerate(counts.sum(axis=1)):
                ax.text(total, y, f" {total}", va="center", fontsize=SMALL)
            ax.set_xlim(0, counts.sum(axis=1).max() * 1.15)
            ax.set(title=f"{modality} pool: sequences per family", xlabel="sequences", ylabel="family")
            ax.legend(title="source", fontsize=SMALL, title_fontsize=SMALL, loc="lower right")
        ax.tick_params(labelsize=SMALL + 1)
    fig.tight_layout()
    return fig


def _hatch_sources(ax, sources) -> None:
    """Give each stacked bar series of `ax` (one container per source, in `sources` order) its source's hatch,
    so a source's colour never reads as a method's flat one beside it."""
    for container, source in zip(ax.containers, sources):
        for patch in container.patches:
            patch.set_hatch(source_style(source).hatch)
            patch.set_edgecolor(ROLES["edge"])
            patch.set_linewidth(0.3)


# ----------------------------------------------------------------------------- notebook 02
def plot_loss_curves(histories: dict, title: str = "MLM loss"):
    """Training loss per step (rolling mean of 5) of each named run, a modality's colour per run."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for i, (name, h) in enumerate(histories.items()):
        style = MODALITIES.get(name, SERIES[i % len(SERIES)])
        ax.plot(h["step"], h["loss"].rolling(5, min_periods=1).mean(), color=style.colour, label=name)
    ax.set(xlabel="optimiser step", ylabel="MLM loss per masked token\n(rolling mean of 5 steps)", title=title)
    ax.legend(fontsize=SMALL, title="pool", title_fontsize=SMALL)
    fig.tight_layout()
    return fig


def plot_score_panels(df: pd.DataFrame, modality: str):
    """One modality's Eq. 11 scores (`df` = scores joined with the pool table), four panels: the distribution,
    the mean share of each layer group, and the score against length and against GC content (RNA) or by
    source (protein), each source in its colour."""
    import matplotlib.pyplot as plt

    fig, ((hist, share), (by_length, last)) = plt.subplots(2, 2, figsize=(10, 7.8), layout="constrained")
    hist.hist(np.log10(df["score"]), bins=40, color=ROLES["neutral"], edgecolor=ROLES["edge"], lw=0.3)
    hist.set(title="distribution of the self-influence (Eq. 11)", xlabel="log10 score", ylabel="sequences")
    hist.yaxis.set_major_locator(plt.MaxNLocator(integer=True))   # counts: whole sequences
    groups = [c for c in df.columns if c.startswith("score_")]
    mean_share = (df[groups].div(df["score"], axis=0)).mean().rename(lambda c: c.removeprefix("score_"))
    share.bar(mean_share.index, mean_share.to_numpy(), color=ROLES["neutral"], edgecolor=ROLES["edge"], lw=0.5)
    share.set(title="mean share of the score per layer group", xlabel="layer group", ylabel="share of the score")
    share.tick_params(axis="x", labelrotation=30)
    sources = sorted(df["source"].unique())
    larger_first = df["source"].value_counts().index   # the smaller sources drawn on top, none hidden under another
    for source in sources:
        part, style = df[df["source"] == source], source_style(source)
        zorder = 2 + list(larger_first).index(source)
        by_length.scatter(part["length"], part["score"], s=16, alpha=0.7, color=style.colour, marker=style.marker,
                          edgecolors=ROLES["edge"], linewidths=0.3, zorder=zorder, label=f"{source} ({len(part)})")
        if modality == "rna":
            last.scatter(part["gc"], part["score"], s=16, alpha=0.7, color=style.colour, marker=style.marker,
                         edgecolors=ROLES["edge"], linewidths=0.3, zorder=zorder)
    by_length.set(title="score against length", xlabel="length (residues)", ylabel="score")
    if modality == "rna":
        last.set(title="score against GC content", xlabel="GC content (fraction of residues)", ylabel="score")
    else:
        box = last.boxplot([df.loc[df["source"] == s, "score"] for s in sources], patch_artist=True,
                           medianprops={"color": ROLES["edge"]})
        for patch, source in zip(box["boxes"], sources):
            patch.set_facecolor(source_style(source).colour)
        last.set_xticks(range(1, len(sources) + 1), sources)
        last.set(title="score by source", xlabel="source", ylabel="score")
    for ax in (by_length, last):
        _log_axis(ax, "y")
    fig.legend(*by_length.get_legend_handles_labels(), loc="outside lower center", ncol=len(sources), fontsize=SMALL + 1,
               title="source (sequences scored)", title_fontsize=SMALL + 1)
    fig.suptitle(f"{modality}: self-influence of every pool sequence")
    return fig


def plot_agreement(pairs: dict, identity: bool = False):
    """Scatter of two score vectors per named pair (e.g. ft vs w/o ft) on log axes, Spearman rho in the title;
    `identity`: the y = x line, for two scores on one scale."""
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4.2), squeeze=False)
    for ax, (name, (x, y, xl, yl)) in zip(axes[0], pairs.items()):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        rho = spearmanr(x, y).statistic
        ax.scatter(x, y, s=10, alpha=0.6, color=ROLES["points"])
        if identity:
            ends = [min(x.min(), y.min()), max(x.max(), y.max())]
            ax.plot(ends, ends, color=ROLES["identity"], ls="--", lw=1, label="y = x")
            ax.legend(fontsize=SMALL, loc="upper left")
        ax.set(xlabel=xl, ylabel=yl, title=f"{name}: Spearman {rho:.4f} ({len(x)} sequences)")
        for which, v in (("x", x), ("y", y)):
            if (v > 0).all():
                _log_axis(ax, which)
            else:
                getattr(ax, f"set_{which}scale")("symlog")
                getattr(ax, f"set_{which}label")(f"{xl if which == 'x' else yl} (symlog scale)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebook 03
def plot_cci_strata(scores, table: pd.DataFrame, hard_cutoff: float, strata: int, title: str = ""):
    """Algorithm 1 made visible: score histogram with the hard cutoff and the k stratum edges, and the
    pool size vs the picks per stratum (the water-filling). Titles state what this run shows: how many
    sequences the cutoff dropped and how many strata were taken whole."""
    import matplotlib.pyplot as plt

    s = np.asarray(scores, dtype=float)
    kept = int(table["pool"].sum())
    cut_value = np.sort(s)[kept - 1] if kept < s.size else s.max()
    lo = table["score_min"].min()
    edges = lo + (cut_value - lo) * np.arange(strata + 1) / strata
    nonempty = table[table["pool"] > 0]
    whole = int((nonempty["picked"] == nonempty["pool"]).sum())
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.hist(s, bins=60, color=ROLES["pool"], edgecolor=ROLES["edge"], lw=0.3, label="pool")
    for e in edges:
        a.axvline(e, color=ROLES["grid"], lw=0.6)
    a.axvline(cut_value, color=ROLES["cutoff"], lw=2,
              label=f"hard cutoff: top {hard_cutoff:.0%} ({s.size - kept} sequences) dropped")
    a.set(xlabel="self-influence (Eq. 11)", ylabel="sequences", title=f"{title} scores, {strata} equal-width strata")
    a.legend(fontsize=SMALL)
    b.bar(table["stratum"], table["pool"], color=ROLES["pool"], label="pool (after the cutoff)")
    b.bar(table["stratum"], table["picked"], color=method_style("CCI").colour,
          label=f"picked by CCI (m = {int(table['picked'].sum())})")
    if strata <= 20:
        for row in table.itertuples():
            b.annotate(f"{row.picked}/{row.pool}", (row.stratum, row.pool), ha="center", va="bottom", fontsize=SMALL)
    b.set_ylim(0, table["pool"].max() * 1.15)
    b.set(xlabel="stratum (low -> high influence)", ylabel="sequences",
          title=f"water-filling: {whole} of {len(nonempty)} non-empty strata taken whole")
    b.legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


PROPERTIES = {"score": "self-influence (Eq. 11), log10", "length": "length (residues)",
              "gc": "GC content (fraction of residues)"}


def plot_coreset_distributions(joined: pd.DataFrame, coresets: dict, properties=("score", "length", "gc")):
    """Picked vs pool as small multiples: one row per coreset (in its method's colour), one column per property
    (the pool in grey, same bins per column), and a last panel with the share of each source (in its colour) in
    the pool and in every coreset."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    values = {p: np.log10(joined[p]) if p == "score" else joined[p] for p in properties}
    bins = {p: np.histogram_bin_edges(v.dropna(), bins=15) for p, v in values.items()}
    n = len(coresets)
    fig = plt.figure(figsize=(10, 1.25 * n + 3.4), layout="constrained")
    outer = fig.add_gridspec(2, 1, height_ratios=[1.25 * n, 2.8])
    grid = outer[0].subgridspec(n, len(properties))
    for i, (name, rows) in enumerate(coresets.items()):
        for j, prop in enumerate(properties):
            ax = fig.add_subplot(grid[i, j])
            ax.hist(values[prop], bins=bins[prop], density=True, color=ROLES["pool"])
            ax.hist(values[prop].iloc[rows], bins=bins[prop], density=True, color=method_style(name).colour,
                    alpha=0.8)
            ax.set_yticks([])
            ax.tick_params(labelbottom=i == n - 1, labelsize=SMALL)
            if i == 0:
                ax.set_title(PROPERTIES.get(prop, prop), fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{name}\n(m = {len(rows)})", rotation=0, ha="right", va="center", fontsize=9)
    fig.legend([Patch(color=ROLES["pool"]), Patch(color=ROLES["picked"])],
               [f"whole pool (n = {len(joined)})", "picked by the strategy of the row (its colour)"],
               loc="outside upper center", ncol=2, fontsize=9, title="density per column, same bins")
    sets = {"pool": np.arange(len(joined)), **coresets}
    comp = pd.DataFrame({name: joined["source"].iloc[rows].value_counts(normalize=True) for name, rows in sets.items()})
    comp = comp.fillna(0).sort_index()
    ax = fig.add_subplot(outer[1])
    comp.T.iloc[::-1].plot.barh(stacked=True, ax=ax, width=0.75, legend=False,
                                color=[source_style(s).colour for s in comp.index])
    _hatch_sources(ax, comp.index)
    ax.set(xlim=(0, 1), xlabel="share of the set by source", ylabel="",
           title="composition by source (hatched: the source colours, not the strategies above)")
    ax.tick_params(labelsize=9)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=SMALL + 1, title="source")
    return fig


def plot_overlap(matrix: pd.DataFrame, title: str = "Jaccard overlap between coresets", vmin: float = 0):
    """Heatmap of a pairwise matrix: Jaccard overlap between coresets, or rank correlations (vmin=-1)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(min(10, 1.1 * len(matrix) + 2.5), 0.9 * len(matrix) + 1.5))
    sns.heatmap(matrix, annot=True, fmt=".2f", cmap=SEQUENTIAL if vmin == 0 else DIVERGING, vmin=vmin, vmax=1,
                ax=ax, annot_kws={"fontsize": 9})
    ax.set_title(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebook 01
def plot_lines(x, series: dict, xlabel: str, ylabel: str, title: str, logx: bool = False, logy: bool = False):
    """Line plot of named series over x (check curves of notebook 01); on a log x axis the ticks are the x
    values themselves (no overlapping minor labels)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for style, (name, ys) in zip(SERIES, series.items()):
        ax.plot(x, ys, marker=style.marker, color=style.colour, label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(list(x), [f"{v:g}" for v in x])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel(f"{xlabel} (log scale)")
    if logy:
        _log_axis(ax, "y")
    if len(series) > 1:
        ax.legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


def plot_scatter(x, y, xlabel: str, ylabel: str, title: str):
    """Scatter with the identity line and Pearson / Spearman in the title (predicted vs actual)."""
    import matplotlib.pyplot as plt
    from scipy.stats import pearsonr, spearmanr

    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.scatter(x, y, s=12, alpha=0.7, color=ROLES["points"], label="one left-out sequence")
    lo, hi = float(np.min([x, y])), float(np.max([x, y]))
    ax.plot([lo, hi], [lo, hi], color=ROLES["identity"], lw=1, label="y = x")
    ax.set(xlabel=xlabel, ylabel=ylabel,
           title=f"{title}\nPearson {pearsonr(x, y).statistic:.3f}, Spearman {spearmanr(x, y).statistic:.3f}")
    ax.legend(fontsize=SMALL)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- notebooks 04 and 05
def _epochs(h: pd.DataFrame, size: int | None = None) -> np.ndarray:
    """Epochs completed after each step of a history: sequences seen / set size when the size is known (a
    *same steps* arm stops inside its first epoch), else step k of an n-step epoch e at e + k / n."""
    if size and "sequences" in h:
        return h["sequences"].cumsum().to_numpy() / size
    per_epoch = h.groupby("epoch")["step"].transform("size").to_numpy()
    return h["epoch"].to_numpy() + (h.groupby("epoch").cumcount().to_numpy() + 1) / per_epoch


def plot_loss_panels(histories: dict, baselines: dict | None = None, sizes: dict | None = None):
    """One panel per modality: pretraining loss of every cell against the epochs it completed (every cell runs
    the same epochs, so no curve hides under a longer one; a *same steps* arm stops early), rolling mean over a
    sixteenth of its steps, each cell in its colour and marker, and the residue-frequency entropy as a line
    (a model below it learned more than residue counts). `sizes` ({modality: {cell: set size}}) places each step
    at the sequences seen over the set's size."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(5 * len(histories), 4.3), squeeze=False,
                             layout="constrained")
    for ax, (modality, cells) in zip(axes[0], histories.items()):
        for i, (name, h) in enumerate(cells.items()):
            style, every = method_style(name), max(1, len(h) // 4)
            loss = h["loss"].rolling(max(1, len(h) // 16), min_periods=1).mean()
            ax.plot(_epochs(h, (sizes or {}).get(modality, {}).get(name)), loss, color=style.colour, marker=style.marker, ms=5, markevery=(i % every, every),
                    mec=ROLES["edge"], mew=0.5, label=name)   # markers staggered: runs of one length do not pile up
        if baselines and modality in baselines:
            _hline(ax, baselines[modality], "residue-frequency entropy", ROLES["entropy"], "-.")
            _show_lines(ax, [baselines[modality]])
        ax.set(xlabel="epochs completed", ylabel="MLM loss per masked token", title=f"{modality}: pretraining from scratch")
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    steps = {}   # one count per modality (in the panels' order) where they differ: "52 / 60 steps"
    for cells in histories.values():
        for name, h in cells.items():
            steps.setdefault(name, []).append(str(len(h)))
    labels = [f"{k} ({' / '.join(dict.fromkeys(steps[k]))} steps)" if k in steps else k for k in handles]
    fig.legend(handles.values(), labels, loc="outside lower center", ncol=3, fontsize=SMALL,
               title=f"cell (optimiser steps, {' / '.join(histories)} where they differ)", title_fontsize=SMALL)
    return fig


def plot_downstream(summary: pd.DataFrame, title: str = "", columns: int = 4):
    """One panel per task and metric (only each task's primary metric and the held-out MLM loss when the
    summary marks them, as the tables do), rows named on the shared y axis in the table's order: the mean over
    seeds in the row's colour and marker, the standard deviation over seeds as a bar (none with a single seed,
    and the title says so), the composition baseline as a dotted line to read every row against."""
    import matplotlib.pyplot as plt

    if "primary" in summary.columns:
        summary = summary[summary["primary"].astype(bool)]
    key = summary["task"] + " " + summary["metric"]
    cols, cells = list(dict.fromkeys(key)), list(dict.fromkeys(summary["method"]))
    rows = -(-len(cols) // columns)
    columns = -(-len(cols) // rows)   # balanced: 5 panels as 3 + 2, not 4 + 1
    y = np.arange(len(cells))[::-1]
    fig, axes = plt.subplots(rows, columns, figsize=(10, (0.17 * len(cells) + 1.0) * rows + 0.6), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, col in zip(axes.flat, cols):
        part = summary[key == col]
        task, metric, lower = part["task"].iat[0], part["metric"].iat[0], bool(part["lower_is_better"].iat[0])
        sub = part.set_index("method").reindex(cells)
        for yi, (name, row) in zip(y, sub.iterrows()):
            if not np.isfinite(row["value"]):
                continue
            style, err = method_style(name), row["std"] if np.isfinite(row["std"]) else None
            ax.errorbar([row["value"]], [yi], xerr=err, ls="none", marker=style.marker, ms=6, color=style.colour,
                        mec=ROLES["edge"], mew=0.5, ecolor=ROLES["edge"], capsize=2)
        if "Composition" in sub.index and np.isfinite(sub.at["Composition", "value"]):
            ax.axvline(sub.at["Composition", "value"], color=method_style("Composition").colour, ls=":", lw=1.2)
        if task.startswith("held-out") and "entropy" in part.columns and part["entropy"].notna().any():
            ax.axvline(float(part["entropy"].dropna().iat[0]), color=ROLES["entropy"], ls="-.", lw=1.2)
        ax.set_title(col + (" (lower is better)" if lower else ""), fontsize=9)
        xlabel = ("nats per masked token" if task.startswith("held-out") else metric if lower
                  else f"top-{metric} precision (%)" if task.startswith("Contact") else f"{metric} (%)")
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(axis="y", color=ROLES["pool"], lw=0.4)
        ax.tick_params(labelsize=SMALL)
    axes[0, 0].set_yticks(y, cells)
    axes[0, 0].set_ylim(-0.7, len(cells) - 0.3)
    for ax in axes.flat[len(cols):]:
        ax.axis("off")
    seeds = int(summary["seeds"].max())
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed, so no spread to draw"
    floor = "; dotted: the Composition row" if "Composition" in cells else ""
    if "entropy" in summary.columns and summary["entropy"].notna().any():
        floor += "; dash-dot: the unigram entropy (held-out loss)"
    fig.suptitle((f"{title}: {spread}" if title else spread) + floor, fontsize=10)
    return fig


_CURVE = re.compile(r"^(?P<arm>Random|Top I|CCI)(?: (?P<m>\d+)x)?(?P<steps> \(same steps\))?$")
REFERENCE_LINES = {"Full pool": "--", "Raw": "--", "Composition": ":", "Baseline": ":"}


def curve_arm(name: str, protocol: str) -> str | None:
    """The curve line a grid row belongs to (Random, Top I or CCI at a budget multiple, trained under the
    curve's `protocol`), or None for a row drawn as a single point."""
    hit = _CURVE.match(name)
    if not hit or (hit["m"] and bool(hit["steps"]) != (protocol == "steps")):
        return None
    return hit["arm"]


def _dodged(x: np.ndarray, slot: np.ndarray, slots: np.ndarray, log: bool) -> np.ndarray:
    """Spread the rows drawn at one data size side by side (in log space on a log axis): slot i of n."""
    if not log:
        return x
    return x * 10 ** (0.035 * (slot - (slots - 1) / 2))


def plot_pruning_curve(summary: pd.DataFrame, title: str = "", protocol: str = "steps", columns: int = 3):
    """Figure 3's pruning-rate curve: per panel (the held-out MLM loss, then each gated task's primary metric)
    the mean over seeds and its 95% interval against the sequences pretrained on, one line per arm (Random,
    Top I, CCI; each point in its row's colour and marker), the other rows at their size as points set side by
    side, Full pool / Raw / the composition baseline / the unigram entropy as horizontal lines inside the axes."""
    import matplotlib.pyplot as plt

    main = summary[summary["primary"].astype(bool)]
    gated = main[(main["section"] == "downstream") & (main["gate"] == "informative")]["task"].unique()
    tasks = list(dict.fromkeys(main["task"]))
    panels = [t for t in tasks if t.startswith("held-out")] + [t for t in tasks if t in gated]
    if not panels:   # no held-out loss and no informative probe: nothing to draw a curve of
        fig, ax = plt.subplots(figsize=(6, 1.5))
        ax.axis("off")
        ax.text(0.5, 0.5, f"{title}: no held-out MLM loss and no informative probe to plot", ha="center", va="center")
        return fig
    columns = max(1, min(columns, len(panels)))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(min(10, 4.6 * columns + 1), 3.6 * rows + 1.6), squeeze=False,
                             layout="constrained")
    for ax, task in zip(axes.flat, panels):
        part = main[main["task"] == task].copy()
        part["arm"] = [curve_arm(m, protocol) for m in part["method"]]
        drawn = part[part["arm"].notna() | (part["kind"] == "pruned")].copy()
        log = bool(len(drawn)) and drawn["data_size"].min() > 0
        drawn["slot"] = drawn.groupby("data_size").cumcount()
        drawn["slots"] = drawn.groupby("data_size")["method"].transform("size")
        drawn["x"] = _dodged(drawn["data_size"].to_numpy(float), drawn["slot"].to_numpy(), drawn["slots"].to_numpy(),
                             log)
        for arm, line in drawn[drawn["arm"].notna()].groupby("arm", sort=False):
            line = line.sort_values("data_size")
            ax.plot(line["x"], line["value"], color=method_style(arm).colour, lw=1.5, zorder=2)
        for _, row in drawn.iterrows():
            style = method_style(row["method"])
            edge = method_style(row["arm"]).colour if isinstance(row["arm"], str) else ROLES["edge"]
            err = np.abs(np.array([[row["value"] - row["lo"]], [row["hi"] - row["value"]]], dtype=float))
            ax.errorbar([row["x"]], [row["value"]], yerr=np.nan_to_num(err), ls="none", color=edge, capsize=2, zorder=3)
            ax.plot([row["x"]], [row["value"]], ls="none", marker=style.marker, ms=7, color=style.colour, mec=edge,
                    zorder=4, label=row["method"])
        held = task.startswith("held-out")
        lines = []
        for _, row in part[part["kind"].isin(["reference", "baseline"])].iterrows():
            if held and row["method"] == "Raw":   # an untrained network: far above, it would flatten the panel
                continue
            _hline(ax, row["value"], row["method"], method_style(row["method"]).colour,
                   REFERENCE_LINES.get(row["method"], "--"))
            lines.append(row["value"])
        if held and "entropy" in part.columns and part["entropy"].notna().any():
            lines.append(float(part["entropy"].dropna().iat[0]))
            _hline(ax, lines[-1], "unigram entropy", ROLES["entropy"], "-.")
        _show_lines(ax, lines)
        lower = bool(part["lower_is_better"].iat[0])
        sizes = sorted(set(drawn["data_size"]))
        if log:
            ax.set_xscale("log")
            ticks = []
            for n in sizes:   # a label per size, except one within 25% of the last (24 and 26 would overlap)
                if not ticks or n / ticks[-1] >= 1.25:
                    ticks.append(n)
            ax.set_xticks(ticks, [f"{n:,}" for n in ticks])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.set_xlim(min(sizes) / 10 ** 0.25, max(sizes) * 10 ** 0.25)
        ax.set_xlabel("sequences pretrained on" + (" (log scale; rows at one size set side by side)" if log else ""),
                      fontsize=9)
        ax.set_ylabel("nats per masked token" if held else part["metric"].iat[0], fontsize=9)
        ax.set_title(f"{task}: {part['metric'].iat[0]}" + (" (lower is better)" if lower else ""), fontsize=9)
        ax.tick_params(labelsize=SMALL)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat[:len(panels)]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=4, fontsize=SMALL)
    matched = "same optimiser steps" if protocol == "steps" else "same epochs"
    if not len(gated):
        matched += ";\nno downstream probe passed its gate, so only the held-out loss is drawn"
    seeds = int(main["seeds"].max())
    if protocol == "steps" and (main["method"] == "Random 10x").any():
        matched += " (Random 10x: C2's 10x random set at the same epochs)"
    fig.suptitle(f"{title}: mean and 95% interval over {seeds} seeds and test items;\ncurve arms above the budget "
                 f"at the {matched}\n(Raw, far above, left out of the held-out panel)" if title else
                 f"mean and 95% interval over {seeds} seeds", fontsize=10)
    return fig
