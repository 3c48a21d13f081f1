"""corelib.report: figures land in figures/NN_name.png with fixed metadata; tables round-trip as CSV + Markdown."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from corelib import __version__  # noqa: E402
from corelib.errors import InputError  # noqa: E402
from corelib.report import save_table, savefig  # noqa: E402


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_ROOT", str(tmp_path))
    return tmp_path


def test_savefig_writes_named_png_with_fixed_metadata_and_same_bytes_twice(root):
    def draw():
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        return fig

    path = savefig(draw(), "07_line")
    first = path.read_bytes()
    assert path == root / "figures" / "07_line.png"
    assert Image.open(path).info["Software"] == f"corelib {__version__}"
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
