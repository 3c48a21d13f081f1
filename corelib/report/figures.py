"""Plots of every notebook, legible at notebook width."""
from __future__ import annotations

import re

import pandas as pd


def source_palette(pools: dict[str, pd.DataFrame]) -> dict[str, tuple]:
    """One fixed colour per source over all pools (sorted by modality, then source), so every figure
    of the pools colours a source the same way."""
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(s for pool in pools.values() for s in sorted(pool["source"].unique())))
    return {s: plt.cm.tab10(i % 10) for i, s in enumerate(sources)}


def plot_pool_overview(pools: dict[str, pd.DataFrame], what: str = "length"):
    """One panel per modality: the `length` histograms by source, or the `family` counts by source;
    a source has the same colour in both figures (`source_palette`)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    palette = source_palette(pools)
    fig, axes = plt.subplots(1, len(pools), figsize=(5 * len(pools), 3.6 if what == "length" else 5.2),
                             squeeze=False)
    for ax, (modality, pool) in zip(axes[0], pools.items()):
        order = sorted(pool["source"].unique())
        if what == "length":
            sns.histplot(pool, x="length", hue="source", hue_order=order, palette=palette, bins=40,
                         multiple="stack", alpha=1, ax=ax)
            ax.set(title=f"{modality} pool: sequence length", xlabel="length (residues; cropped at 1022)",
                   ylabel="sequences")
        else:
            counts = pd.crosstab(pool["family"], pool["source"])[order]
            counts = counts.loc[counts.sum(axis=1).sort_values().index]
            counts.plot.barh(stacked=True, ax=ax, width=0.8, color=[palette[s] for s in order])
            for y, total in enumerate(counts.sum(axis=1)):
                ax.text(total, y, f" {total}", va="center", fontsize=8)
            ax.set_xlim(0, counts.sum(axis=1).max() * 1.12)
            ax.set(title=f"{modality} pool: sequences per family", xlabel="sequences", ylabel="family")
            ax.legend(title="source", fontsize=8)
    fig.tight_layout()
    return fig


def plot_loss_curves(histories: dict, title: str = "MLM loss"):
    """Training loss per step for each named run (history tables from `train_mlm`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, h in histories.items():
        ax.plot(h["step"], h["loss"].rolling(5, min_periods=1).mean(), label=name)
    ax.set(xlabel="step", ylabel="loss (rolling mean of 5)", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_score_panels(scored: dict):
    """Per modality: Eq. 11 score distribution, mean share of each layer group, and score against
    length, GC content (RNA) and source. `scored[modality]` = scores joined with the pool table."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    fig, axes = plt.subplots(len(scored), 4, figsize=(20, 4 * len(scored)), squeeze=False)
    for row, (modality, df) in zip(axes, scored.items()):
        sns.histplot(np.log10(df["score"]), bins=40, ax=row[0])
        row[0].set(title=f"{modality}: log10 self-influence (Eq. 11)", xlabel="log10 score")
        groups = [c for c in df.columns if c.startswith("score_")]
        share = (df[groups].div(df["score"], axis=0)).mean().rename(lambda c: c.removeprefix("score_"))
        share.plot.bar(ax=row[1], color="tab:gray")
        row[1].set(title=f"{modality}: mean share of the score per layer", ylabel="share")
        sns.scatterplot(df, x="length", y="score", hue="source", s=12, ax=row[2], legend=False)
        row[2].set(yscale="log", title=f"{modality}: score vs length")
        if modality == "rna":
            sns.scatterplot(df, x="gc", y="score", hue="source", s=12, ax=row[3])
            row[3].set(yscale="log", title="rna: score vs GC content")
        else:
            sns.boxplot(df, x="source", y="score", ax=row[3])
            row[3].set(yscale="log", title="protein: score by source")
    fig.tight_layout()
    return fig


def plot_agreement(pairs: dict):
    """Scatter of two score vectors per named pair (e.g. ft vs w/o ft), Spearman rho in the title."""
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    fig, axes = plt.subplots(1, len(pairs), figsize=(5 * len(pairs), 4), squeeze=False)
    for ax, (name, (x, y, xl, yl)) in zip(axes[0], pairs.items()):
        rho = spearmanr(x, y).statistic
        ax.scatter(x, y, s=8, alpha=0.6)
        ax.set(xscale="symlog", yscale="symlog", xlabel=xl, ylabel=yl, title=f"{name}: Spearman {rho:.2f}")
    fig.tight_layout()
    return fig


def plot_cci_strata(scores, table: pd.DataFrame, hard_cutoff: float, strata: int, title: str = ""):
    """Algorithm 1 made visible: score histogram with the hard cutoff and the k stratum edges, and the
    pool size vs the picks per stratum (the water-filling). Titles state what this run shows: how many
    sequences the cutoff dropped and how many strata were taken whole."""
    import matplotlib.pyplot as plt
    import numpy as np

    s = np.asarray(scores, dtype=float)
    kept = int(table["pool"].sum())
    cut_value = np.sort(s)[kept - 1] if kept < s.size else s.max()
    lo = table["score_min"].min()
    edges = lo + (cut_value - lo) * np.arange(strata + 1) / strata
    nonempty = table[table["pool"] > 0]
    whole = int((nonempty["picked"] == nonempty["pool"]).sum())
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.hist(s, bins=60, color="tab:blue", alpha=0.7)
    for e in edges:
        a.axvline(e, color="gray", lw=0.5)
    a.axvline(cut_value, color="tab:red", lw=2,
              label=f"hard cutoff: top {hard_cutoff:.0%} ({s.size - kept} sequences) dropped")
    a.set(xlabel="self-influence (Eq. 11)", ylabel="sequences", title=f"{title} scores, {strata} equal-width strata")
    a.legend(fontsize=8)
    b.bar(table["stratum"], table["pool"], color="lightgray", label="pool (after the cutoff)")
    b.bar(table["stratum"], table["picked"], color="tab:orange", label=f"picked by CCI (m = {int(table['picked'].sum())})")
    if strata <= 20:
        for row in table.itertuples():
            b.annotate(f"{row.picked}/{row.pool}", (row.stratum, row.pool), ha="center", va="bottom", fontsize=7)
    b.set(xlabel="stratum (low -> high influence)", ylabel="sequences",
          title=f"water-filling: {whole} of {len(nonempty)} non-empty strata taken whole")
    b.legend(fontsize=8)
    fig.tight_layout()
    return fig


PROPERTIES = {"score": "self-influence (Eq. 11), log10", "length": "length (residues)",
              "gc": "GC content (fraction of residues)"}


def plot_coreset_distributions(joined: pd.DataFrame, coresets: dict, label: str = "family",
                               properties=("score", "length", "gc")):
    """Picked vs pool as small multiples: one row per coreset, one column per property (the pool in grey,
    the coreset in colour, same bins per column), and a last panel with the share of each `label` in the
    pool and in every coreset."""
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Patch

    values = {p: np.log10(joined[p]) if p == "score" else joined[p] for p in properties}
    bins = {p: np.histogram_bin_edges(v.dropna(), bins=15) for p, v in values.items()}
    n = len(coresets)
    fig = plt.figure(figsize=(10, 1.25 * n + 3.6), layout="constrained")
    outer = fig.add_gridspec(2, 1, height_ratios=[1.25 * n, 3.0])
    grid = outer[0].subgridspec(n, len(properties))
    for i, (name, rows) in enumerate(coresets.items()):
        for j, prop in enumerate(properties):
            ax = fig.add_subplot(grid[i, j])
            ax.hist(values[prop], bins=bins[prop], density=True, color="lightgray")
            ax.hist(values[prop].iloc[rows], bins=bins[prop], density=True, color=plt.cm.tab10(i), alpha=0.75)
            ax.set_yticks([])
            ax.tick_params(labelbottom=i == n - 1, labelsize=8)
            if i == 0:
                ax.set_title(PROPERTIES.get(prop, prop), fontsize=10)
            if j == 0:
                ax.set_ylabel(f"{name}\n(m = {len(rows)})", rotation=0, ha="right", va="center", fontsize=9)
    fig.legend([Patch(color="lightgray"), Patch(color="dimgray")],
               [f"whole pool (n = {len(joined)})", "picked by the strategy of the row (its colour)"],
               loc="outside upper center", ncol=2, fontsize=9, title="density per column, same bins")
    sets = {"pool": np.arange(len(joined)), **coresets}
    comp = pd.DataFrame({name: joined[label].iloc[rows].value_counts(normalize=True) for name, rows in sets.items()})
    comp = comp.fillna(0).sort_values("pool", ascending=False)
    ax = fig.add_subplot(outer[1])
    comp.T.iloc[::-1].plot.barh(stacked=True, ax=ax, width=0.75, colormap="tab20", legend=False)
    ax.set(xlim=(0, 1), xlabel=f"share of the set by {label}", title=f"composition by {label}")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), ncol=1 + len(comp) // 12, fontsize=8, title=label)
    return fig


def plot_overlap(matrix: pd.DataFrame, title: str = "Jaccard overlap between coresets", vmin: float = 0):
    """Heatmap of a pairwise matrix: Jaccard overlap between coresets, or rank correlations (vmin=-1)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.1 * len(matrix) + 2, 0.9 * len(matrix) + 1.5))
    sns.heatmap(matrix, annot=True, fmt=".2f", cmap="viridis" if vmin == 0 else "vlag", vmin=vmin, vmax=1, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_lines(x, series: dict, xlabel: str, ylabel: str, title: str, logx: bool = False, logy: bool = False):
    """Line plot of named series over x (check curves of notebook 01); on a log x axis the ticks are the x
    values themselves (no overlapping minor labels)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xscale="log" if logx else "linear",
           yscale="log" if logy else "linear")
    if logx:
        ax.set_xticks(list(x), [f"{v:g}" for v in x])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_scatter(x, y, xlabel: str, ylabel: str, title: str):
    """Scatter with the identity line and Pearson / Spearman in the title (predicted vs actual)."""
    import matplotlib.pyplot as plt
    import numpy as np
    from scipy.stats import pearsonr, spearmanr

    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    ax.scatter(x, y, s=12, alpha=0.7)
    lo, hi = float(np.min([x, y])), float(np.max([x, y]))
    ax.plot([lo, hi], [lo, hi], color="gray", lw=1)
    ax.set(xlabel=xlabel, ylabel=ylabel,
           title=f"{title}\nPearson {pearsonr(x, y).statistic:.3f}, Spearman {spearmanr(x, y).statistic:.3f}")
    fig.tight_layout()
    return fig


def plot_loss_panels(histories: dict, baselines: dict | None = None):
    """One panel per modality: pretraining loss per step of every cell (rolling mean of 10), with the
    residue-frequency entropy as a dashed line (a model below it learned more than residue counts)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(6.5 * len(histories), 4), squeeze=False)
    for ax, (modality, cells) in zip(axes[0], histories.items()):
        for name, h in cells.items():
            ax.plot(h["step"], h["loss"].rolling(10, min_periods=1).mean(), label=f"{name} ({len(h)} steps)")
        if baselines and modality in baselines:
            ax.axhline(baselines[modality], color="k", ls="--", lw=1, label="residue-frequency entropy")
        ax.set(xscale="symlog", xlim=(0, None), xlabel="step", ylabel="MLM loss per masked token",
               title=f"{modality}: pretraining from scratch")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_downstream(summary: pd.DataFrame, title: str = "", columns: int = 4):
    """One panel per task and metric (only each task's primary metric and the held-out MLM loss when the
    summary marks them, as the tables do), `columns` panels a row: the mean over seeds of every row, with the
    standard deviation over seeds as error bars (none with a single seed, and the title says so)."""
    import matplotlib.pyplot as plt
    import numpy as np

    if "primary" in summary.columns:
        summary = summary[summary["primary"].astype(bool)]
    key = summary["task"] + " " + summary["metric"]
    cols, cells = list(dict.fromkeys(key)), list(dict.fromkeys(summary["method"]))
    rows = -(-(len(cols) + 1) // columns)   # one slot more for the legend
    fig, axes = plt.subplots(rows, columns, figsize=(10, 2.4 * rows + 0.6), squeeze=False, layout="constrained")
    colours = plt.cm.tab10(np.arange(len(cells)) % 10)
    for ax, col in zip(axes.flat, cols):
        part = summary[key == col]
        task, metric, lower = part["task"].iat[0], part["metric"].iat[0], bool(part["lower_is_better"].iat[0])
        sub = part.set_index("method").reindex(cells)
        err = sub["std"].to_numpy(dtype=float)
        ax.bar(range(len(cells)), sub["value"], yerr=np.nan_to_num(err) if np.isfinite(err).any() else None,
               capsize=3, color=colours)
        ax.set_xticks([])
        ax.set_title(col + (" (lower is better)" if lower else ""), fontsize=9)
        ylabel = ("nats per masked token" if task.startswith("held-out") else metric if lower
                  else f"top-{metric} precision (%)" if task.startswith("Contact") else f"{metric} (%)")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(cols):]:
        ax.axis("off")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours]
    axes.flat[len(cols)].legend(handles, cells, loc="center", fontsize=8, title="row of the table")
    seeds = int(summary["seeds"].max())
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed, so no spread to draw"
    fig.suptitle(f"{title}: {spread}" if title else spread)
    return fig


_CURVE = re.compile(r"^(?P<arm>Random|Top I|CCI)(?: (?P<m>\d+)x)?(?P<steps> \(same steps\))?$")


def curve_arm(name: str, protocol: str) -> str | None:
    """The curve line a grid row belongs to (Random, Top I or CCI at a budget multiple, trained under the
    curve's `protocol`), or None for a row drawn as a single point."""
    hit = _CURVE.match(name)
    if not hit or (hit["m"] and bool(hit["steps"]) != (protocol == "steps")):
        return None
    return hit["arm"]


def plot_pruning_curve(summary: pd.DataFrame, title: str = "", protocol: str = "steps", columns: int = 3):
    """Figure 3's pruning-rate curve: per panel (the held-out MLM loss, then each gated task's primary metric)
    the mean over seeds and its 95% interval against the sequences pretrained on, one line per arm (Random,
    Top I, CCI), the other rows at the budget as points, Full pool / Raw / the composition baseline as lines."""
    import matplotlib.pyplot as plt
    import numpy as np

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
    fig, axes = plt.subplots(rows, columns, figsize=(min(10, 3.6 * columns + 1), 3.1 * rows + 0.9), squeeze=False,
                             layout="constrained")
    colours = {"Random": "tab:grey", "Top I": "tab:blue", "CCI": "tab:orange"}
    markers = iter("sDv^P*X")
    point_style = {}
    for ax, task in zip(axes.flat, panels):
        part = main[main["task"] == task]
        err = lambda d: np.abs(np.vstack([d["value"] - d["lo"], d["hi"] - d["value"]]).astype(float))  # noqa: E731
        arms = part.assign(arm=[curve_arm(m, protocol) for m in part["method"]])
        for arm, line in arms[arms["arm"].notna()].groupby("arm", sort=False):
            line = line.sort_values("data_size")
            ax.errorbar(line["data_size"], line["value"], yerr=np.nan_to_num(err(line)), color=colours[arm],
                        marker="o", ms=4, capsize=3, label=arm)
        for _, row in arms[arms["arm"].isna() & (arms["kind"] == "pruned")].iterrows():
            style = point_style.setdefault(row["method"], next(markers, "o"))
            ax.errorbar([row["data_size"]], [row["value"]], yerr=np.nan_to_num(err(row.to_frame().T)), ls="none",
                        marker=style, ms=6, capsize=3, color="tab:green" if "ft" in row["method"] else "tab:purple",
                        mfc="white", label=row["method"] + (" (same epochs)" if row["method"] == "Random 10x"
                                                            else ""))
        held = task.startswith("held-out")
        for _, row in part[part["kind"].isin(["reference", "baseline"])].iterrows():
            if held and row["method"] == "Raw":   # an untrained network: far above, it would flatten the panel
                continue
            ax.axhline(row["value"], ls=":" if row["kind"] == "baseline" else "--", lw=1,
                       color={"Full pool": "black", "Raw": "tab:red"}.get(row["method"], "tab:brown"),
                       label=row["method"])
        if held and "entropy" in part.columns and part["entropy"].notna().any():
            ax.axhline(float(part["entropy"].dropna().iat[0]), color="tab:red", lw=1, ls="-.",
                       label="unigram entropy")
        lower = bool(part["lower_is_better"].iat[0])
        sizes = sorted(set(arms.loc[arms["arm"].notna(), "data_size"]))
        if sizes and sizes[0] > 0:
            ax.set_xscale("log")
            ax.set_xticks(sizes, [f"{n:,}" for n in sizes])
            ax.xaxis.set_minor_locator(plt.NullLocator())
        ax.set_xlabel("sequences pretrained on", fontsize=9)
        ax.set_title(f"{task}: {part['metric'].iat[0]}" + (" (lower is better)" if lower else ""), fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat[:len(panels)]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=4, fontsize=8)
    matched = "same optimiser steps" if protocol == "steps" else "same epochs"
    if not len(gated):
        matched += "; no downstream probe passed its gate, so only the held-out loss is drawn"
    seeds = int(main["seeds"].max())
    fig.suptitle(f"{title}: mean and 95% interval over {seeds} seeds and test items;\ncurve arms above the budget "
                 f"at the {matched}\n(Raw, far above, left out of the held-out panel)" if title else
                 f"mean and 95% interval over {seeds} seeds", fontsize=10)
    return fig
