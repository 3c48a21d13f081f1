"""Paper-style tables (bold best, underlined second, arrows) and the paper's own Tables 1-3."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from corelib.report.output import output_path, rounded, save_table


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


def _fmt(x) -> str:
    return "" if pd.isna(x) else f"{x:.4g}"


def experiment_table(summary: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Our Table 1-3 analogue from a grid summary: one row per baseline row, Raw, cell and Full pool, one column
    per task's primary metric and the held-out MLM loss (mean over seeds and its 95% interval over items and
    seeds), and each column's gate (the text's last row). Returns (numbers: mean / lo / hi / gate columns, text)."""
    main = summary[summary["primary"].astype(bool)].copy()
    main["column"] = main["task"] + " " + main["metric"] + main["lower_is_better"].map({True: " ↓", False: ""})
    keys = ["method", "kind", "data_size"]
    order = main[keys].drop_duplicates().reset_index(drop=True)
    cols = list(dict.fromkeys(main["column"]))
    numbers = order.copy()
    text = order.assign(data_size=[size_label(n) for n in order["data_size"]])
    for col in cols:
        part = order.merge(main[main["column"] == col][[*keys, "value", "lo", "hi"]], on=keys, how="left")
        numbers[col], numbers[f"{col} lo"], numbers[f"{col} hi"] = part["value"], part["lo"], part["hi"]
    numbers = rounded(numbers)
    for col in cols:
        text[col] = [f"{_fmt(v)} [{_fmt(a)}, {_fmt(b)}]" if not pd.isna(v) else ""
                     for v, a, b in zip(numbers[col], numbers[f"{col} lo"], numbers[f"{col} hi"])]
    gate = {"method": "gate", "kind": "", "data_size": ""}
    for col in cols:
        marks = [g for g in main.loc[main["column"] == col, "gate"] if isinstance(g, str) and g]
        gate[col] = marks[0] if marks else ""
        numbers[f"{col} gate"] = gate[col]
    text = pd.concat([text, pd.DataFrame([gate])], ignore_index=True)
    return numbers, text


def heldout_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The intrinsic metric per cell and source family: held-out MLM loss (mean over seeds, 95% interval), the
    unigram entropy of the family's held-out residues, and the gap loss - entropy (negative: learned context)."""
    held = summary[(summary["section"] == "heldout") & summary["metric"].str.startswith("loss")]
    out = held[["method", "kind", "family", "items", "seeds", "value", "lo", "hi", "entropy"]].rename(
        columns={"value": "loss"})
    out = out.assign(gap=out["loss"] - out["entropy"])
    return out.reset_index(drop=True)


VERDICT_RULE = ("Rule: `advantage` = method - baseline averaged over the seeds both were run at, signed so that + "
                "favours the method (for the held-out loss, lower is better); within each claim the comparisons are "
                "Holm-corrected at alpha/3 = 0.0167 (the three claims share alpha = 0.05); `interval` is the Holm-"
                "compatible interval at confidence `level`; **supported** when it lies above 0, **contradicted** when "
                "below 0, otherwise **inconclusive**, with `mde` the difference the comparison had 80% power to detect "
                "at that level given its seed-to-seed and item variance. All of this only once the gate line under the "
                "table is passed: while it is not, every row reads *no verdict*, even one whose interval excludes 0.")
VERDICT_COLUMNS = ("Columns: `budget` sequences = the paper's sequence budget, residues = the Random arm's residues "
                   "at each seed; `seeds` = paired seeds; `p_holm` = Holm-adjusted p-value.")


def verdict_markdown(verdicts: pd.DataFrame) -> str:
    """The verdict table as a reader needs it: the rule, the tested comparisons, one line per task whose probe
    did not enter the claims (and why), the column definitions, the gate line and any note (Section 4)."""
    tested = verdicts[~verdicts["verdict"].str.startswith("not tested")].copy()
    table = rounded(tested)
    table["interval"] = [f"[{_fmt(a)}, {_fmt(b)}]" if not pd.isna(a) else "" for a, b in zip(table["lo"], table["hi"])]
    cols = [c for c in ("claim", "method", "baseline", "budget", "task", "metric", "advantage", "interval", "level",
                        "p_holm", "seeds", "mde", "verdict") if c in table.columns]
    lines = [VERDICT_RULE, "", table[cols].to_markdown(index=False, floatfmt=".4g") if len(table) else "(none tested)"]
    untested = verdicts[verdicts["verdict"].str.startswith("not tested")]
    for task, part in untested.groupby("task", sort=False):
        reason = part["verdict"].iat[0].removeprefix("not tested: ")
        lines.append(f"\nNot tested, {task} ({len(part)} comparisons): {reason}.")
    lines += ["", VERDICT_COLUMNS]
    gate, note = verdicts.attrs.get("gate", ""), verdicts.attrs.get("note", "")
    lines += [f"\n{line}" for line in (gate, "" if "no verdicts" in gate else note) if line]   # said once
    return "\n".join(lines) + "\n"


def save_experiment_tables(summary: pd.DataFrame, verdicts: pd.DataFrame, preset: str, modality: str) -> list[Path]:
    """Write the grid's tables (CSV + Markdown, floats rounded as `save_table` does): figures/05_<preset>_
    <modality>_table (every row's primary metrics, mean [95% interval], and each task's gate), _verdicts (the CSV:
    every comparison; the Markdown: `verdict_markdown`) and _heldout (the held-out MLM loss per source and its gap
    to the entropy of the masked residues)."""
    numbers, text = experiment_table(summary)
    csv, md = output_path(f"05_{modality}_table", ".csv", preset), output_path(f"05_{modality}_table", ".md", preset)
    numbers.to_csv(csv, index=False)
    md.write_text(text.to_markdown(index=False) + "\n\nEach cell: mean over seeds [95% interval over seeds and test "
                  "items, clipped to the metric's range: 0-100 for percentages]; ↓ lower is better; the last row says "
                  "whether a task's probe entered the claims.\n")
    paths = [csv, md]
    vcsv = output_path(f"05_{modality}_verdicts", ".csv", preset)
    vmd = output_path(f"05_{modality}_verdicts", ".md", preset)
    rounded(verdicts.drop(columns=[c for c in ("statement",) if c in verdicts.columns])).to_csv(vcsv, index=False)
    vmd.write_text(verdict_markdown(verdicts))
    paths += [vcsv, vmd]
    if "section" in summary.columns and (summary["section"] == "heldout").any():
        paths += list(save_table(heldout_table(summary), f"05_{modality}_heldout", preset))
    return paths
