"""Static checks of the committed notebooks (nothing is executed): one `parameters` cell each, no stored
output that names a machine's absolute path, no long functions defined in a notebook, and Markdown tables
whose math renders outside JupyterLab (no bare `|` inside `$...$`)."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ABSOLUTE_PATH = re.compile(r"/work/|/tmp/|/root/|/home/|PosixPath\(")
MAX_FUNCTION_LINES = 10
MATH = re.compile(r"(?<!\\)\$(?!\$)(.+?)(?<!\\)\$")


def cells(path: Path, kind: str | None = None) -> list[dict]:
    book = json.loads(path.read_text())
    return [c for c in book["cells"] if kind is None or c["cell_type"] == kind]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def output_texts(cell: dict):
    """Every text a stored output carries: streams, errors and the text-like entries of display data."""
    for out in cell.get("outputs", []):
        if "text" in out:
            yield "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
        if out.get("output_type") == "error":
            yield out.get("evalue", "")
            yield "\n".join(out.get("traceback", []))
        for mime, data in out.get("data", {}).items():
            if mime.startswith("text/") or mime.endswith("json"):
                yield "".join(data) if isinstance(data, list) else str(data)


def python_source(text: str) -> str:
    """A code cell as plain Python: IPython magics and shell lines become comments."""
    return "\n".join("# " + line if line.lstrip().startswith(("%", "!")) else line for line in text.splitlines())


def table_cells_with_bare_bar(markdown: str) -> list[str]:
    """Math spans of Markdown table rows that contain an unescaped `|` (it would split the cell)."""
    bad = []
    for line in markdown.splitlines():
        if not line.lstrip().startswith("|"):
            continue
        masked = line.replace(r"\|", "")
        for span in MATH.findall(re.sub(r"(?<!\\)\|", "¦", masked)):
            if "¦" in span:
                bad.append(span.replace("¦", "|"))
    return bad


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 6, NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exactly_one_parameters_cell(path):
    tagged = [c for c in cells(path) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    assert tagged[0]["cell_type"] == "code"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_stored_output_names_an_absolute_path(path):
    hits = []
    for i, cell in enumerate(cells(path)):
        for text in output_texts(cell):
            hits += [f"cell {i}: ...{text[max(0, m.start() - 40):m.end() + 40]!r}..."
                     for m in ABSOLUTE_PATH.finditer(text)]
    assert not hits, f"{path.name}: " + "\n".join(hits)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_long_function_is_defined_in_a_notebook(path):
    long = []
    for i, cell in enumerate(cells(path, "code")):
        tree = ast.parse(python_source(source(cell)))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"cell {i}: {node.name} ({lines} lines)")
    assert not long, f"{path.name}: move these into corelib: {long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_tables_have_no_bare_bar_inside_math(path):
    bad = [span for cell in cells(path, "markdown") for span in table_cells_with_bare_bar(source(cell))]
    assert not bad, f"{path.name}: write \\lvert x \\rvert or \\| instead of | in ${bad}$"


def test_the_table_check_catches_a_bare_bar():
    assert table_cells_with_bare_bar("| a | top-L ($|i-j|\\ge 24$) |") == ["|i-j|\\ge 24"]
    assert not table_cells_with_bare_bar("| a | top-L ($\\lvert i-j\\rvert\\ge 24$) |")
    assert not table_cells_with_bare_bar("| a | top-L ($\\|i-j\\|\\ge 24$) |")
    assert not table_cells_with_bare_bar("text $|x|$ outside a table")
