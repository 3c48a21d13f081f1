"""Every figure and table goes through here: figures/NN_name.png with fixed metadata, tables as CSV + Markdown."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .config import figures_dir
from .errors import InputError

_NAME = re.compile(r"^\d\d_[A-Za-z0-9_]+$")


def _target(name: str, suffix: str) -> Path:
    if not _NAME.match(name):
        raise InputError(f"figure/table name {name!r} must look like NN_name (NN = notebook number)")
    out = figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{name}{suffix}"


def savefig(fig, name: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as figures/NN_name.png with fixed metadata (reproducible bytes)."""
    from . import __version__

    path = _target(name, ".png")
    fig.savefig(path, dpi=dpi, bbox_inches="tight",
                metadata={"Software": f"corelib {__version__}", "Title": name})
    return path


def save_table(df: pd.DataFrame, name: str, floatfmt: str = ".4g") -> tuple[Path, Path]:
    """Save a table as figures/NN_name.csv and figures/NN_name.md."""
    csv, md = _target(name, ".csv"), _target(name, ".md")
    df.to_csv(csv, index=False)
    md.write_text(df.to_markdown(index=False, floatfmt=floatfmt) + "\n")
    return csv, md


def plot_pool_overview(pools: dict[str, pd.DataFrame], what: str = "length"):
    """One panel per modality: the `length` histograms by source, or the `family` counts by source."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, len(pools), figsize=(6 * len(pools), 4 if what == "length" else 6))
    for ax, (modality, pool) in zip(list(axes) if len(pools) > 1 else [axes], pools.items()):
        if what == "length":
            sns.histplot(pool, x="length", hue="source", bins=40, multiple="stack", ax=ax)
            ax.set(title=f"{modality} pool: sequence length (cropped at 1022)", xlabel="residues")
        else:
            counts = pd.crosstab(pool["family"], pool["source"])
            counts.plot.barh(stacked=True, ax=ax, width=0.8)
            ax.set(title=f"{modality} pool: composition by family", xlabel="sequences")
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
    pool size vs the allocated budget per stratum (the water-filling)."""
    import matplotlib.pyplot as plt
    import numpy as np

    s = np.asarray(scores, dtype=float)
    kept = table["pool"].sum()
    cut_value = np.sort(s)[kept - 1] if kept < s.size else s.max()
    lo = table["score_min"].min()
    edges = lo + (cut_value - lo) * np.arange(strata + 1) / strata
    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4))
    a.hist(s, bins=80, color="tab:blue", alpha=0.7)
    for e in edges:
        a.axvline(e, color="gray", lw=0.5)
    a.axvline(cut_value, color="tab:red", lw=2, label=f"hard cutoff: top {hard_cutoff:.0%} dropped")
    a.set(xlabel="self-influence (Eq. 11)", ylabel="sequences", title=f"{title} scores, {strata} equal-width strata")
    a.legend()
    b.bar(table["stratum"], table["pool"], color="lightgray", label="pool (after cutoff)")
    b.bar(table["stratum"], table["picked"], color="tab:orange", label="picked by CCI")
    b.set(xlabel="stratum (low -> high influence)", ylabel="sequences", yscale="symlog",
          title="water-filling: small strata are taken whole, the rest share the budget")
    b.legend()
    fig.tight_layout()
    return fig


def plot_coreset_distributions(joined: pd.DataFrame, coresets: dict, label: str = "family"):
    """Picked vs pool: score, length, GC content and label composition for each named coreset."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 4, figsize=(22, 4.5))
    for name, rows in {"pool": np.arange(len(joined)), **coresets}.items():
        sub = joined.iloc[rows]
        style = dict(histtype="step", density=True, lw=2 if name == "pool" else 1.2, label=name)
        axes[0].hist(np.log10(sub["score"]), bins=30, **style)
        axes[1].hist(sub["length"], bins=30, **style)
        axes[2].hist(sub["gc"], bins=30, **style)
    for ax, xl in zip(axes[:3], ["log10 score", "length", "GC content"]):
        ax.set(xlabel=xl, ylabel="density")
    axes[0].legend(fontsize=8)
    comp = pd.DataFrame({name: joined.iloc[rows][label].value_counts(normalize=True)
                         for name, rows in {"pool": np.arange(len(joined)), **coresets}.items()}).fillna(0)
    comp.T.plot.barh(stacked=True, ax=axes[3], legend=False, colormap="tab20")
    axes[3].set(xlabel=f"share by {label}", title=f"composition by {label}")
    fig.tight_layout()
    return fig


def plot_overlap(matrix: pd.DataFrame):
    """Heatmap of pairwise Jaccard overlap between coresets."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.1 * len(matrix) + 2, 0.9 * len(matrix) + 1.5))
    sns.heatmap(matrix, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax)
    ax.set_title("Jaccard overlap between coresets")
    fig.tight_layout()
    return fig


def plot_lines(x, series: dict, xlabel: str, ylabel: str, title: str, logx: bool = False, logy: bool = False):
    """Line plot of named series over x (check curves of notebook 01)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, ys in series.items():
        ax.plot(x, ys, marker="o", label=name)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xscale="log" if logx else "linear",
           yscale="log" if logy else "linear")
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


def paper_results(table: str | None = None) -> pd.DataFrame:
    """The numbers the paper reports in Tables 1-3, transcribed (corelib/paper_results.csv; Table 3's
    Bin/SS/Aff columns read as ACC, ACC, MAE, RMSE, Table 1's last column as CRI-On MSE)."""
    from pathlib import Path

    df = pd.read_csv(Path(__file__).with_name("paper_results.csv"), dtype={"table": str})
    return df if table is None else df[df["table"] == str(table)].reset_index(drop=True)


def paper_style_table(long: pd.DataFrame, references=("RNA-FM", "ESM-C", "Raw"), decimals: int = 2):
    """Tables 1-3 layout from long rows (method, data_size, task, metric, lower_is_better, value [, std]):
    one row per method and data size, one column per task/metric ('MAE ↓' for lower-is-better); the best
    value of each column among the non-reference rows in bold, the second underlined, as the paper
    marks them. Returns (numbers, marks) where marks[col][row] is 'best', 'second' or ''."""
    long = long.copy()
    long["column"] = long["task"] + " " + long["metric"] + long["lower_is_better"].map({True: " ↓", False: ""})
    keys = ["method", "data_size"]
    order = long[keys].drop_duplicates()
    numbers = long.pivot_table(index=keys, columns="column", values="value", sort=False).reindex(
        pd.MultiIndex.from_frame(order))
    numbers = numbers[list(dict.fromkeys(long["column"]))]
    lower = long.drop_duplicates("column").set_index("column")["lower_is_better"]
    marks = pd.DataFrame("", index=numbers.index, columns=numbers.columns)
    compete = ~numbers.index.get_level_values("method").isin(references)
    for col in numbers.columns:
        vals = numbers.loc[compete, col].dropna()
        if vals.round(decimals).nunique() <= 1:   # all tied at the shown precision: nothing to mark
            continue
        ranked = vals.sort_values(ascending=bool(lower[col])).index
        for label, row in zip(("best", "second"), ranked[:2]):
            marks.loc[row, col] = label
    if "std" in long.columns:
        spread = long.pivot_table(index=keys, columns="column", values="std", sort=False).reindex(numbers.index)
        numbers.attrs["std"] = spread.reindex(columns=numbers.columns)   # all-NaN (one seed) columns are dropped by pivot
    numbers.attrs["decimals"] = decimals
    return numbers, marks


def _render(numbers: pd.DataFrame, marks: pd.DataFrame, bold: str, under: str) -> pd.DataFrame:
    fmt = f"{{:.{numbers.attrs.get('decimals', 2)}f}}"
    std = numbers.attrs.get("std")
    out = numbers.copy().astype(object)
    for col in numbers.columns:
        for row in numbers.index:
            v = numbers.loc[row, col]
            text = "" if pd.isna(v) else fmt.format(v)
            if std is not None and not pd.isna(std.loc[row, col]) and text:
                text += " ± " + fmt.format(std.loc[row, col])
            mark = marks.loc[row, col]
            out.loc[row, col] = bold.format(text) if mark == "best" else under.format(text) if mark == "second" else text
    return out.reset_index()


def save_paper_table(long: pd.DataFrame, name: str, references=("RNA-FM", "ESM-C", "Raw"), decimals: int = 2):
    """Write a paper-style table as figures/NAME.csv (numbers), .md (bold / underline) and .tex."""
    numbers, marks = paper_style_table(long, references, decimals)
    csv = _target(name, ".csv")
    numbers.reset_index().to_csv(csv, index=False)
    md = _target(name, ".md")
    md.write_text(_render(numbers, marks, "**{}**", "<u>{}</u>").to_markdown(index=False) + "\n")
    tex = _target(name, ".tex")
    tex.write_text(_render(numbers, marks, "\\textbf{{{}}}", "\\underline{{{}}}").to_latex(index=False).replace("↓", "$\\downarrow$").replace("±", "$\\pm$"))
    return csv, md, tex


def size_label(n: int) -> str:
    """Sequences as the paper writes data sizes: 24, 4.7k, 0.2M, 2.78B."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))


def experiment_long(summary: pd.DataFrame) -> pd.DataFrame:
    """`experiment.summarize` rows in the paper's table shape: 'Random 10x' is the Random row at 10x size."""
    out = summary.copy()
    out["method"] = out["method"].replace({"Random 10x": "Random"})
    out["data_size"] = [size_label(n) for n in out["data_size"]]
    return out[["method", "data_size", "task", "metric", "lower_is_better", "value", "std"]]


def save_experiment_tables(summary: pd.DataFrame, verdicts: pd.DataFrame, preset: str, modality: str) -> list[Path]:
    """Our Table 1-3 analogue (figures/05_<preset>_<modality>_table.csv/.md/.tex, mean ± std over seeds,
    bold best / underlined second among the pruned rows) and the C1-C3 verdicts (.csv/.md)."""
    long = experiment_long(summary)
    paths = list(save_paper_table(long, f"05_{preset}_{modality}_table", references=("Full pool", "Raw")))
    paths += list(save_table(verdicts, f"05_{preset}_{modality}_verdicts", floatfmt=".3g"))
    return paths


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


def plot_downstream(summary: pd.DataFrame, title: str = ""):
    """Bars of every task/metric per cell, with the standard deviation over seeds as error bars."""
    import matplotlib.pyplot as plt

    cols = list(dict.fromkeys(summary["task"] + " " + summary["metric"]))
    cells = list(dict.fromkeys(summary["method"]))
    fig, axes = plt.subplots(1, len(cols), figsize=(2.6 * len(cols), 3.6), squeeze=False)
    for ax, col in zip(axes[0], cols):
        sub = summary[(summary["task"] + " " + summary["metric"]) == col].set_index("method").reindex(cells)
        ax.bar(range(len(cells)), sub["value"], yerr=sub["std"].fillna(0), color=plt.cm.tab10(range(len(cells))))
        ax.set_xticks(range(len(cells)), cells, rotation=90, fontsize=7)
        ax.set_title(col + (" ↓" if sub["lower_is_better"].iloc[0] else ""), fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
