"""The one place figures and tables are written: figures/NN_name.png with fixed metadata, tables as CSV +
Markdown.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from corelib.errors import InputError
from corelib.files import atomic_write
from corelib.layout import figures_dir

FIGURE_NAME = re.compile(r"^\d\d_[A-Za-z0-9_]+$")
SIGNIFICANT = 4     # significant digits kept in committed tables (as the Markdown's .4g)
NUMERICAL_ZERO = 1e-6   # a value below this share of its column's largest magnitude is optimiser noise: 0


def output_path(name: str, suffix: str) -> Path:
    if not FIGURE_NAME.match(name):
        raise InputError(f"figure/table name {name!r} must look like NN_name (NN = notebook number)")
    out = figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{name}{suffix}"


def savefig(fig, name: str, dpi: int = 110) -> Path:
    """Save a matplotlib figure as figures/NN_name.png with fixed metadata (reproducible bytes)."""
    from corelib import __version__

    path = output_path(name, ".png")
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight",
                                                      metadata={"Software": f"corelib {__version__}", "Title": name}))


def rounded(df: pd.DataFrame, digits: int = SIGNIFICANT, zero: float = NUMERICAL_ZERO) -> pd.DataFrame:
    """Float columns rounded to `digits` significant digits, and values below `zero` x the column's largest
    magnitude set to 0, so float noise (another CPU, another BLAS, an optimiser's tolerance) cannot change
    a committed table."""
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            v = out[col].to_numpy(dtype=float)
            finite = np.isfinite(v)
            top = np.abs(v[finite]).max() if finite.any() else 0.0
            out[col] = [0.0 if f and abs(x) < zero * top else float(f"{x:.{digits}g}") if f else x
                        for x, f in zip(v, finite)]
    return out


def save_table(df: pd.DataFrame, name: str, floatfmt: str = ".4g") -> tuple[Path, Path]:
    """Save a table as figures/NN_name.csv and figures/NN_name.md, floats rounded (`rounded`)."""
    csv, md = output_path(name, ".csv"), output_path(name, ".md")
    table = rounded(df)
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(md, lambda tmp: tmp.write_text(table.to_markdown(index=False, floatfmt=floatfmt) + "\n"))
    return csv, md
