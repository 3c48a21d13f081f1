"""corelib.runner: notebooks run in order with the preset injected; a failure names the notebook and the cell."""
from __future__ import annotations

import nbformat
import pytest

from corelib.errors import InputError
from corelib.runner import list_notebooks, run_notebooks


def _book(path, *sources):
    nb = nbformat.v4.new_notebook()
    cells = [nbformat.v4.new_code_cell('preset = "x"')]
    cells[0].metadata["tags"] = ["parameters"]
    nb.cells = cells + [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def root(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setenv("CORELIB_ROOT", str(tmp_path))
    return tmp_path


def test_runs_in_numeric_order_with_the_preset_injected(root):
    _book(root / "notebooks" / "01_b.ipynb", "open('order.txt', 'a').write('01 ' + preset + '\\n')")
    _book(root / "notebooks" / "00_a.ipynb", "open('order.txt', 'a').write('00 ' + preset + '\\n')")
    assert [p.name for p in list_notebooks()] == ["00_a.ipynb", "01_b.ipynb"]
    run_notebooks("demo", out_dir=root / "runs")
    assert (root / "notebooks" / "order.txt").read_text() == "00 demo\n01 demo\n"
    assert (root / "runs" / "01_b.ipynb").exists()


def test_failure_names_the_notebook_and_the_cell(root):
    _book(root / "notebooks" / "03_bad.ipynb", "x = 1", "raise ValueError('boom')")
    with pytest.raises(RuntimeError, match=r"03_bad.ipynb failed in cell \d+ \(ValueError: boom\)"):
        run_notebooks("smoke", out_dir=root / "runs")


def test_unknown_preset_or_notebook_is_an_input_error(root):
    with pytest.raises(InputError):
        run_notebooks("nope")
    with pytest.raises(InputError):
        list_notebooks(["42"])
