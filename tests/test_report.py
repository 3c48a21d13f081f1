"""corelib.report: figures land in figures/NN_name.png with fixed metadata; tables round-trip as CSV + Markdown."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from corelib import __version__
from corelib.errors import InputError
from corelib.report import save_table, savefig


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_ROOT", str(tmp_path))
    monkeypatch.delenv("CORELIB_FIGURES", raising=False)   # figures/ under the root, as in a checkout
    return tmp_path


def test_savefig_writes_named_png_with_fixed_metadata_and_same_bytes_twice(root, monkeypatch):
    def draw():
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return fig

    path = savefig(draw(), "07_line")
    first = path.read_bytes()
    assert path == root / "figures" / "07_line.png"
    assert Image.open(path).info["Software"] == f"corelib {__version__}"
    monkeypatch.setenv("CORELIB_FIGURES", str(root / "elsewhere"))   # the one setting that redirects figures
    assert savefig(draw(), "07_line") == root / "elsewhere" / "07_line.png"
    monkeypatch.delenv("CORELIB_FIGURES")
    assert savefig(draw(), "07_line").read_bytes() == first


def test_names_must_carry_the_notebook_number(root):
    with pytest.raises(InputError):
        savefig(plt.figure(), "line")


def test_table_round_trips_through_csv_and_markdown(root):
    df = pd.DataFrame({"method": ["Random", "CCI"], "acc": [0.5, 0.75]})
    csv, md = save_table(df, "05_table")
    pd.testing.assert_frame_equal(pd.read_csv(csv), df)
    assert "| CCI" in md.read_text() and "0.75" in md.read_text()


def test_paper_tables_are_transcribed_consistently_with_their_bold_marks():
    from corelib.report import paper_results

    df = paper_results()
    assert set(df["table"]) == {"1", "2a", "2b", "2c", "2d", "3"} and df["value"].notna().all()
    assert not df.duplicated(["table", "task", "metric", "method", "data_size"]).any()
    pruned = df[df["data_size"] == "0.2M"]

    def best(task, metric):
        sub = pruned[(pruned["task"] == task) & (pruned["metric"] == metric)]
        pick = sub["value"].idxmin() if sub["lower_is_better"].iloc[0] else sub["value"].idxmax()
        return sub.loc[pick, "method"]

    # methods the paper prints in bold among the 0.2M coresets
    assert best("TypeCls", "ACC") == best("Modif", "AUC") == best("CRI-On", "MSE") == "CCI"
    assert best("SecStruct", "MCC") == best("DistMap", "R2") == best("RBP", "ACC") == "Top I"
    assert best("Bin", "ACC") == best("SS", "ACC") == "CCI" and best("Aff", "MAE") == "Top I"
    assert len(paper_results(3)) == 20


def test_paper_style_table_marks_best_and_second_like_the_paper(root):
    from corelib.report import paper_results, paper_style_table, save_paper_table

    numbers, marks = paper_style_table(paper_results(1))
    assert marks.loc[("CCI", "0.2M"), "TypeCls ACC"] == "best" and marks.loc[("Top I", "0.2M"), "TypeCls ACC"] == "second"
    assert marks.loc[("CCI", "0.2M"), "CRI-On MSE ↓"] == "best"                  # lower is better
    assert marks.loc[("Top I", "0.2M"), "CRI-On MSE ↓"] == "second"
    assert marks.loc[("RNA-FM", "23M"), "TypeCls ACC"] == ""                     # references are not ranked
    assert numbers.loc[("Random", "2M"), "Modif AUC"] == 92.82
    csv, md, tex = save_paper_table(paper_results(1), "05_paper_table1")
    assert "**82.88**" in md.read_text() and "<u>82.51</u>" in md.read_text()
    assert "\\textbf{82.88}" in tex.read_text() and "$\\downarrow$" in tex.read_text()
    assert pd.read_csv(csv).shape == (8, 2 + 5)


def test_paper_style_table_shows_the_spread_over_seeds(root):
    from corelib.report import save_paper_table

    long = pd.DataFrame({"method": ["Random", "CCI"], "data_size": ["32", "32"], "task": "TypeCls", "metric": "ACC",
                         "lower_is_better": False, "value": [50.0, 60.0], "std": [1.5, 2.0]})
    _, md, _ = save_paper_table(long, "05_ours")
    assert "**60.00 ± 2.00**" in md.read_text() and "<u>50.00 ± 1.50</u>" in md.read_text()


def test_data_sizes_are_written_as_in_the_paper():
    from corelib.report import size_label

    assert [size_label(n) for n in (0, 24, 4730, 200_000, 23_000_000, 2_780_000_000)] == \
        ["0", "24", "4.73k", "200k", "23M", "2.78B"]


def test_experiment_tables_mark_best_and_second_with_lower_is_better(root):
    from corelib.experiment import summarize, verdicts
    from corelib.report import save_experiment_tables

    long = pd.DataFrame([{"cell": c, "data_size": n, "task": "Aff", "metric": m, "seed": s, "value": v + s}
                         for c, n, base in [("Raw", 0, 9), ("Random", 24, 5), ("Random 10x", 240, 3), ("CCI", 24, 4),
                                            ("Full pool", 256, 1)]
                         for m, v in [("MAE", base), ("ACC", 10 * base)] for s in (0, 1)])
    summary = summarize(long)
    paths = save_experiment_tables(summary, verdicts(summary), "smoke", "protein")
    assert [p.name for p in paths] == ["05_smoke_protein_table.csv", "05_smoke_protein_table.md",
                                       "05_smoke_protein_table.tex", "05_smoke_protein_verdicts.csv",
                                       "05_smoke_protein_verdicts.md"]
    md = paths[1].read_text()
    assert "Aff MAE ↓" in md
    row = {line.split("|")[1].strip() + line.split("|")[2].strip(): line for line in md.splitlines()[2:]}
    assert "**3.50 ± 0.71**" in row["Random240"] and "<u>4.50 ± 0.71</u>" in row["CCI24"]   # lower is better
    assert "**50.50 ± 0.71**" in row["Random24"] and "<u>40.50 ± 0.71</u>" in row["CCI24"]  # higher is better
    assert "**" not in row["Full pool256"] and "**" not in row["Raw0"]                    # references are not ranked
    assert "\\textbf{3.50 $\\pm$ 0.71}" in paths[2].read_text()
