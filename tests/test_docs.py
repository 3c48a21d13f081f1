"""The documentation stays true: README length, relative links, the generated docs/results.md, the README's
command lines (parsed by the real CLI parser) and its Python quickstart, and every module in architecture.md."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import corelib
from corelib.cli import build_parser
from corelib.config import get_preset
from corelib.report import docs

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, ROOT / "data_manifests" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
PLACEHOLDERS = {"<verb>": "score"}   # README placeholders -> a value the parser accepts


def _blocks(path: Path, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(path.read_text(encoding="utf-8")) if kind == lang]


def _corelib_commands(path: Path) -> list[str]:
    """Every `python -m corelib ...` / `torchrun ... -m corelib ...` line of the page's bash blocks
    (continuations joined), as the argument list after `-m corelib`."""
    out = []
    for block in _blocks(path, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            m = re.search(r"-m corelib\s(.*)$", line)
            if m:
                out.append(m.group(1))
    return out


def test_readme_is_at_most_150_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, len(lines)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file(page):
    assert page.exists(), page
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue   # http(s)/mailto links and anchors within the page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: broken links {broken}"


def test_results_page_is_what_the_generator_makes_from_figures_now():
    expected = docs.results_markdown(ROOT / "figures")
    current = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert current == expected, "docs/results.md is stale: run `python -m corelib.report.docs` (make docs)"


def test_results_page_says_it_is_generated_and_shows_every_table_and_curve():
    text = docs.results_markdown(ROOT / "figures")
    assert "GENERATED FILE" in text and "python -m corelib.report.docs" in text
    for name in sorted(p.name for p in (ROOT / "figures").glob("05_*.md")):
        assert f"(../figures/{name})" in text, f"{name} is missing from docs/results.md"
    for curve in sorted(p.name for p in (ROOT / "figures").glob("05_*_pruning_curve_*.png")):   # every committed curve
        assert f"(../figures/{curve})" in text, f"{curve} is missing from docs/results.md"


def test_generator_copies_tables_verbatim_and_a_changed_table_makes_the_page_stale(tmp_path):
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "05_custom_rna_table.md").write_text("| method | x |\n|:--|--:|\n| Raw | 1 |\n")
    (figures / "05_paper_table1.md").write_text("| method | y |\n|:--|--:|\n| RNA-FM | 2 |\n")
    (figures / "05_new_kind.md").write_text("| z |\n|--:|\n| 4 |\n")
    page = docs.write_results(tmp_path / "docs" / "results.md", figures)
    text = page.read_text(encoding="utf-8")
    assert "| Raw | 1 |" in text and "| RNA-FM | 2 |" in text and "## Preset `custom`" in text
    assert text.index("Preset `custom`") < text.index("The paper's Tables 1-3") < text.index("| 4 |")
    (figures / "05_custom_rna_table.md").write_text("| method | x |\n|:--|--:|\n| Raw | 3 |\n")
    assert docs.results_markdown(figures) != text


def test_generator_check_mode(tmp_path, capsys):
    page = tmp_path / "results.md"
    assert docs.main(["--out", str(page)]) == 0
    assert docs.main(["--check", "--out", str(page)]) == 0
    page.write_text(page.read_text() + "edited by hand\n")
    assert docs.main(["--check", "--out", str(page)]) == 1


def test_readme_cli_quickstart_covers_the_stages():
    verbs = {shlex.split(c, comments=True)[0] + (" " + shlex.split(c)[1] if c.startswith("data") else "")
             for c in _corelib_commands(README)}
    assert {"data verify", "score", "select", "pretrain", "experiment"} <= verbs, verbs


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_corelib_command_line_parses(page):
    parser = build_parser()
    for command in _corelib_commands(page):
        for placeholder, value in PLACEHOLDERS.items():
            command = command.replace(placeholder, value)
        argv = shlex.split(command, comments=True)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{page.name}: `python -m corelib {command}` does not parse (exit {exc.code})")
        if getattr(args, "preset", None) is not None:
            get_preset(args.preset)   # the preset named exists


def test_readme_python_quickstart_imports_the_public_api():
    (code,) = _blocks(README, "python")
    assert len(code.strip().splitlines()) <= 6
    names = re.search(r"^from corelib import (.+)$", code, re.M).group(1)
    for name in (n.strip() for n in names.split(",")):
        assert name in corelib.__all__, name


@pytest.mark.slow
def test_readme_python_quickstart_runs(tmp_path):
    (code,) = _blocks(README, "python")
    code += "\nassert len(coreset) == 24 and len(scores) == 256, (len(coreset), len(scores))\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs" / "quick" / "scores.parquet").exists()


def test_architecture_page_names_every_module_and_layer():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "corelib").rglob("*.py"))
               if p.name != "__init__.py" and f"`{p.name}`" not in text]
    assert not missing, f"docs/architecture.md does not describe {missing}"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    layers = re.search(r"layers = \[(.*?)\]", pyproject, re.S).group(1)
    for name in re.findall(r"corelib(?:\.[a-z_]+)*", layers):
        assert f"`{name}`" in text, f"layer {name} is not in docs/architecture.md"
