"""The one place figures and tables are written: figures/NN_<preset>_name.png with fixed metadata, tables as
figures/NN_<preset>_name.{csv,md}. The preset is part of every name, so a demo run beside the committed smoke
outputs never overwrites them. `savefig` also refuses a figure a reader cannot read at notebook width.
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
PRESET_NAME = re.compile(r"^[a-z0-9]+$")
MAX_WIDTH_PX = 1200     # notebook width: a wider PNG is shrunk on screen and its text with it
MIN_FONT_PT = 8         # the smallest text a figure may carry at that width
PAD_INCHES = 0.1        # matplotlib's pad around a bbox_inches="tight" figure
SIGNIFICANT = 4     # significant digits kept in committed tables (as the Markdown's .4g)
NUMERICAL_ZERO = 1e-6   # a value below this share of its column's largest magnitude is optimiser noise: 0


def output_name(name: str, preset: str | None) -> str:
    """NN_name with the preset after the notebook number: ("02_score_panels", "smoke") -> "02_smoke_score_panels";
    preset None for an output no run produces (the paper's transcribed tables)."""
    if not FIGURE_NAME.match(name):
        raise InputError(f"figure/table name {name!r} must look like NN_name (NN = notebook number)")
    if preset is None:
        return name
    if not PRESET_NAME.match(str(preset)):
        raise InputError(f"preset name {preset!r} must be lower-case letters and digits to name an output")
    return f"{name[:2]}_{preset}_{name[3:]}"


def output_path(name: str, suffix: str, preset: str | None = None) -> Path:
    """figures/NN_<preset>_name<suffix> (the folder is created; CORELIB_FIGURES moves it)."""
    out = figures_dir()
    out.mkdir(parents=True, exist_ok=True)
    return out / f"{output_name(name, preset)}{suffix}"


def legibility_problems(fig, dpi: int) -> list[str]:
    """What makes a figure unreadable at notebook width: wider than MAX_WIDTH_PX once saved with
    bbox_inches="tight", or text smaller than MIN_FONT_PT."""
    from matplotlib.text import Text

    fig.draw_without_rendering()   # runs the layout engine, so sizes are those savefig will see
    box = fig.get_tightbbox(fig.canvas.get_renderer())
    width = round((box.width + 2 * PAD_INCHES) * dpi)
    problems = [f"{width} px wide (at most {MAX_WIDTH_PX}): split it or make it narrower"] if width > MAX_WIDTH_PX else []
    small = sorted({t.get_text() for t in fig.findobj(Text)
                    if t.get_visible() and t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT})
    if small:
        problems.append(f"text below {MIN_FONT_PT} pt: {small[:5]}")
    return problems


def savefig(fig, name: str, preset: str | None, dpi: int = 110) -> Path:
    """Save a matplotlib figure as figures/NN_<preset>_name.png with fixed metadata (reproducible bytes); a figure
    wider than MAX_WIDTH_PX or with text below MIN_FONT_PT is refused (ValueError), nothing written."""
    from corelib import __version__

    path = output_path(name, ".png", preset)
    problems = legibility_problems(fig, dpi)
    if problems:
        raise ValueError(f"{path.name}: " + "; ".join(problems))
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight",
                                                      pad_inches=PAD_INCHES,
                                                      metadata={"Software": f"corelib {__version__}", "Title": path.stem}))


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


def save_table(df: pd.DataFrame, name: str, preset: str | None, floatfmt: str = ".4g") -> tuple[Path, Path]:
    """Save a table as figures/NN_<preset>_name.csv and .md, floats rounded (`rounded`)."""
    csv, md = output_path(name, ".csv", preset), output_path(name, ".md", preset)
    table = rounded(df)
    atomic_write(csv, lambda tmp: table.to_csv(tmp, index=False))
    atomic_write(md, lambda tmp: tmp.write_text(table.to_markdown(index=False, floatfmt=floatfmt) + "\n"))
    return csv, md
