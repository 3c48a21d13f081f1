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
