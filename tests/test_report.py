"""corelib.report: figures land in figures/NN_<preset>_name.png with fixed metadata; tables round-trip as CSV + Markdown."""
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

    path = savefig(draw(), "07_line", "smoke")
    first = path.read_bytes()
    assert path == root / "figures" / "07_smoke_line.png"   # the preset after the notebook number
    assert Image.open(path).info["Software"] == f"corelib {__version__}"
    monkeypatch.setenv("CORELIB_FIGURES", str(root / "elsewhere"))   # the one setting that redirects figures
    assert savefig(draw(), "07_line", "smoke") == root / "elsewhere" / "07_smoke_line.png"
    monkeypatch.delenv("CORELIB_FIGURES")
    assert savefig(draw(), "07_line", "smoke").read_bytes() == first
    demo = savefig(draw(), "07_line", "demo")                        # another preset: another file, the first kept
    assert demo.name == "07_demo_line.png" and path.read_bytes() == first


def test_names_must_carry_the_notebook_number_and_a_plain_preset(root):
    with pytest.raises(InputError):
        savefig(plt.figure(), "line", "smoke")
    with pytest.raises(InputError):
        save_table(pd.DataFrame({"a": [1]}), "07_table", "../smoke")


def test_table_round_trips_through_csv_and_markdown(root):
    df = pd.DataFrame({"method": ["Random", "CCI"], "acc": [0.5, 0.75]})
    csv, md = save_table(df, "05_table", "smoke")
    assert csv.name == "05_smoke_table.csv" and md.name == "05_smoke_table.md"
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
    from corelib.report import paper_results, save_paper_table
    from corelib.report.tables import paper_style_table

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
    from corelib.report.tables import size_label

    assert [size_label(n) for n in (0, 24, 4730, 200_000, 23_000_000, 2_780_000_000)] == \
        ["0", "24", "4.73k", "200k", "23M", "2.78B"]


def test_experiment_tables_show_mean_interval_gates_verdicts_and_the_heldout_loss(root):
    from corelib.experiment import summarize, verdicts
    from corelib.experiment.calibration import NoiseModel, Shape, synthetic_grid
    from corelib.report.tables import save_experiment_tables

    grid = synthetic_grid(Shape(3, {"Aff": 30, "Bin": 20}, 12), seed=1, effect=3.0)
    grid.cache.clear()
    summary = summarize(grid)
    paths = save_experiment_tables(summary, verdicts(summary), "smoke", "protein")
    assert [p.name for p in paths] == ["05_smoke_protein_table.csv", "05_smoke_protein_table.md",
                                       "05_smoke_protein_verdicts.csv", "05_smoke_protein_verdicts.md",
                                       "05_smoke_protein_heldout.csv", "05_smoke_protein_heldout.md"]
    md = paths[1].read_text().splitlines()
    header = [c.strip() for c in md[0].split("|")[1:-1]]
    assert header == ["method", "kind", "data_size", "Aff primary", "Bin primary", "held-out MLM loss ↓"]
    verdict_md = paths[3].read_text()
    assert verdict_md.strip().splitlines()[-1].startswith("gate: Random's held-out MLM loss is ")
    assert verdict_md.startswith("Rule: `advantage` = method - baseline") and "Columns: `budget`" in verdict_md
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]] for line in md[2:]
            if line.startswith("|")}
    assert list(rows) == ["Baseline", "Raw", "Random", "Top I", "CCI", "Top I (residues)", "CCI (residues)",
                          "Random 10x", "Random 10x (same steps)", "Top I (w/o ft)", "CCI (w/o ft)",
                          "Top I (w/o ft, residues)", "CCI (w/o ft, residues)", "Full pool", "gate"]
    assert "clipped to the metric's range" in paths[1].read_text()
    assert rows["gate"][3:] == ["informative", "informative", "the Random arm learned"]
    # mean [lo, hi] with 4 significant digits, as save_table rounds
    numbers = pd.read_csv(paths[0])
    top = numbers[numbers["method"] == "Top I"].iloc[0]
    assert rows["Top I"][3] == f"{top['Aff primary']:.4g} [{top['Aff primary lo']:.4g}, {top['Aff primary hi']:.4g}]"
    s = summary[(summary["method"] == "Top I") & (summary["task"] == "Aff")].iloc[0]
    assert top["Aff primary"] == float(f"{s['value']:.4g}") and top["Aff primary lo"] < top["Aff primary"]
    verdict = pd.read_csv(paths[2])
    assert list(verdict.columns) == ["claim", "method", "baseline", "budget", "task", "metric", "advantage", "lo", "hi",
                                     "level", "p", "p_holm", "seeds", "mde", "verdict"]
    assert {v.split(":")[0] for v in verdict["verdict"]} <= {"supported", "inconclusive", "contradicted"}
    assert set(verdict.loc[verdict["claim"] == "C2", "baseline"]) == {"Random 10x", "Random 10x (same steps)"}
    held = pd.read_csv(paths[4])
    assert set(held["family"]) == {"all", "simulated"}
    assert held["gap"].to_numpy() == pytest.approx((held["loss"] - held["entropy"]).to_numpy(), rel=1e-3)
    # a probe that Full pool does not beat is marked, and the claims leave it out
    flat = synthetic_grid(Shape(3, {"Aff": 30}, 12), NoiseModel(reference=0.0), seed=2)
    paths = save_experiment_tables(summarize(flat), verdicts(flat), "smoke", "rna")
    assert "probe not informative at this scale" in paths[1].read_text()
    assert "Not tested, Aff (12 comparisons): probe not informative at this scale." in paths[3].read_text()
    assert "not tested" in pd.read_csv(paths[2])["verdict"].iloc[0]             # the CSV keeps every comparison


def test_pruning_curve_lines_and_points(root):
    from corelib.experiment import summarize
    from corelib.experiment.calibration import Shape, synthetic_grid
    from corelib.report.figures import curve_arm, plot_pruning_curve

    assert [curve_arm(n, "steps") for n in ("Random", "Top I 3x (same steps)", "CCI 10x (same steps)", "Random 10x",
                                             "Top I (w/o ft)", "Loss top-k")] == ["Random", "Top I", "CCI", None, None, None]
    assert [curve_arm(n, "epochs") for n in ("Random 10x", "Random 10x (same steps)", "CCI 3x")] == ["Random", None, "CCI"]
    summary = summarize(synthetic_grid(Shape(3, {"Aff": 30, "Bin": 20}, 12), seed=1))
    fig = plot_pruning_curve(summary, "rna, test", "steps")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["held-out MLM: loss (lower is better)", "Aff: primary", "Bin: primary"]   # both probes gated
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "Random 10x" in labels and "unigram entropy" in labels and "Raw" not in labels   # the tables' names
    assert "Random 10x: C2's 10x random set at the same epochs" in fig._suptitle.get_text()
