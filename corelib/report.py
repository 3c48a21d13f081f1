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
