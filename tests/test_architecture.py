"""The package's shape: the layer contract (import-linter, module- and function-level imports), selection
without torch, the curated public API, and lint (ruff) clean."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import corelib

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(BIN / "lint-imports"), "--config", str(root / "pyproject.toml"), "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True)


def test_the_layer_contracts_hold():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("where, code, broken", [
    # a lower layer (data) importing a higher one (experiment) inside a function body
    ("data/_wrong.py", "def f():\n    from corelib.experiment import grid\n    return grid\n", "corelib layers"),
    # models importing the influence layer at module level
    ("models/_wrong.py", "import corelib.influence.fisher\n", "corelib layers"),
    # selection importing torch
    ("selection/_wrong.py", "def f():\n    import torch\n    return torch\n", "selection never imports torch"),
])
def test_a_wrong_import_in_a_temporary_module_breaks_the_contract(tmp_path, where, code, broken):
    shutil.copytree(ROOT / "corelib", tmp_path / "corelib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    (tmp_path / "corelib" / where).write_text(code)
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    assert f"{broken} BROKEN" in proc.stdout and "_wrong" in proc.stdout


def test_public_api_is_curated_and_every_name_resolves():
    assert 10 <= len(corelib.__all__) <= 20
    for name in corelib.__all__:
        assert getattr(corelib, name) is not None, name
    with pytest.raises(AttributeError):
        corelib.no_such_name  # noqa: B018


def test_selection_and_the_api_entry_import_no_torch():
    code = ("import sys, corelib, corelib.selection; from corelib import cci, read_scores, get_preset; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_subpackage_exports_what_it_names():
    import importlib

    for pkg in ("data", "models", "influence", "selection", "training", "evaluation", "experiment", "report"):
        mod = importlib.import_module(f"corelib.{pkg}")
        missing = [n for n in mod.__all__ if not hasattr(mod, n)]
        assert not missing, (pkg, missing)


def test_ruff_is_clean():
    proc = subprocess.run([str(BIN / "ruff"), "check", "--no-cache", "corelib", "tests"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
