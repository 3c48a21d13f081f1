"""Headless execution of the numbered notebooks with papermill (the README's main job)."""
from __future__ import annotations

import time
from pathlib import Path

from corelib.config import get_preset, repo_root
from corelib.errors import InputError
from corelib.layout import RunLayout


def list_notebooks(only: list[str] | None = None) -> list[Path]:
    """notebooks/NN_*.ipynb in numeric order, optionally only those whose NN is listed."""
    books = sorted((repo_root() / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if only:
        books = [b for b in books if b.name[:2] in set(only)]
        if not books:
            raise InputError(f"no notebook matches {','.join(only)} in {repo_root() / 'notebooks'}")
    return books


def run_notebooks(preset: str = "smoke", out_dir: Path | None = None, only: list[str] | None = None,
                  kernel: str = "python3") -> list[tuple[str, float]]:
    """Execute each notebook with `preset` injected as a parameter; executed copies go to runs/<preset>/notebooks/.

    A failing notebook raises RuntimeError naming the notebook and the cell.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    layout = RunLayout(get_preset(preset))  # unknown preset: one clear line before anything runs
    out_dir = Path(out_dir or layout.notebooks())
    out_dir.mkdir(parents=True, exist_ok=True)
    timings = []
    for book in list_notebooks(only):
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(book), str(out_dir / book.name), parameters={"preset": preset},
                                kernel_name=kernel, cwd=str(book.parent), progress_bar=False)
        except PapermillExecutionError as exc:
            raise RuntimeError(f"notebook {book.name} failed in cell {exc.exec_count} "
                               f"({exc.ename}: {exc.evalue}); executed copy: {out_dir / book.name}") from None
        timings.append((book.name, time.perf_counter() - start))
        print(f"{book.name}: ok in {timings[-1][1]:.1f} s", flush=True)
    return timings
