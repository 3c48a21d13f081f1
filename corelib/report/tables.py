"""Paper-style tables (bold best, underlined second, arrows) and the paper's own Tables 1-3."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from corelib.report.output import output_path, save_table


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
    csv = output_path(name, ".csv")
    numbers.reset_index().to_csv(csv, index=False)
    md = output_path(name, ".md")
    md.write_text(_render(numbers, marks, "**{}**", "<u>{}</u>").to_markdown(index=False) + "\n")
    tex = output_path(name, ".tex")
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
