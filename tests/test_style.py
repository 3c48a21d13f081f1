"""One visual language (corelib.report.style) and figures a reader can read at notebook width: every colour of
every figure comes from the palette, no two rows of a figure look alike, log axes carry labels, reference lines
lie inside their axes, and savefig refuses a figure wider than 1,200 px or with text below 8 pt."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["figure.max_open_warning"] = 0   # the module fixture keeps every figure open
import matplotlib.colors as mcolors  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402

from corelib.config import PRESETS, get_preset  # noqa: E402
from corelib.experiment.grid import cells  # noqa: E402
from corelib.report import figures as F  # noqa: E402
from corelib.report import savefig  # noqa: E402
from corelib.report.output import MAX_WIDTH_PX, MIN_FONT_PT, legibility_problems  # noqa: E402
from corelib.report.style import METHODS, SOURCES, method_style, palette_colours, source_style  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOT_COLOURS = {"none", "y"}   # matplotlib's "no colour", and the y axis's name (also a one-letter colour code)


# ----------------------------------------------------------------------------- the palette itself
def test_figures_module_holds_no_colour_of_its_own():
    tree = ast.parse((ROOT / "corelib" / "report" / "figures.py").read_text())
    skip = {id(c) for n in ast.walk(tree) if isinstance(n, (ast.JoinedStr, ast.Subscript))
            for c in ast.walk(n if isinstance(n, ast.JoinedStr) else n.slice)}   # f-string text ("{v:g}k") and keys (hit["m"])
    literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
                and id(n) not in skip}
    colours = sorted(s for s in literals if s not in NOT_COLOURS and (mcolors.is_color_like(s) or s in matplotlib.colormaps))
    assert not colours, f"corelib/report/figures.py names colours itself; take them from corelib.report.style: {colours}"
    assert "tab:" not in (ROOT / "corelib" / "report" / "figures.py").read_text()


def test_the_check_above_would_catch_a_colour():
    assert mcolors.is_color_like("tab:red") and mcolors.is_color_like("#112233") and mcolors.is_color_like("gray")
    assert "viridis" in matplotlib.colormaps


def test_notebooks_draw_nothing_themselves():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = "\n".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert not re.search(r"\bplt\.|\bcolou?r\s*=|\bcmap\s*=", code), f"{path.name} draws or colours a figure itself"


@pytest.mark.parametrize("preset", [*PRESETS, "demo-epochs"])
def test_every_grid_row_has_its_own_colour_and_marker(preset):
    cfg = get_preset("demo").override({"grid.curve_protocol": "epochs"}) if preset == "demo-epochs" else get_preset(preset)
    names = [c.name for c in cells(cfg)] + ["Composition"]
    styles = [method_style(n) for n in names]
    assert len({s.colour for s in styles}) == len(names), names
    assert len({(s.colour, s.marker) for s in styles}) == len(names)


def test_notebook_03_selectors_and_all_methods_are_distinct():
    selectors = ["Random", "Top I", "CCI", "bottom-k", "length-stratified", "cluster-capped", "Top I per token",
                 "loss top-k", "loss bottom-k", "length-matched"]
    assert len({method_style(n).colour for n in selectors}) == len(selectors)
    assert len({s.colour for s in METHODS.values()}) == len(METHODS)
    with pytest.raises(KeyError, match="style.py"):
        method_style("a method nobody named")


def test_every_source_of_every_pool_manifest_has_a_distinct_style():
    sources = {s["name"] for p in (ROOT / "data_manifests").glob("*_demo.yaml") for s in yaml.safe_load(p.read_text())["sources"]}
    sources |= {s["name"] for p in (ROOT / "data_manifests").glob("*_full.yaml") for s in yaml.safe_load(p.read_text())["sources"]}
    assert sources and {source_style(s) for s in sources}
    assert len({SOURCES[s].colour for s in sources}) == len(sources)


# ----------------------------------------------------------------------------- every figure, drawn from synthetic inputs
def _pools():
    rng = np.random.default_rng(0)
    rna = pd.DataFrame({"source": rng.choice(["BioMarKs", "Rfam", "SILVA_LSU", "SILVA_SSU"], 200),
                        "family": rng.choice(["tRNA", "16S_rRNA", "RNaseP"], 200), "length": rng.integers(40, 1022, 200)})
    protein = pd.DataFrame({"source": rng.choice(["SwissProt_GO_CC", "UniProt_mmseqs2"], 150),
                            "family": rng.choice(["SwissProt", "TrEMBL"], 150), "length": rng.integers(40, 1022, 150)})
    return {"rna": rna, "protein": protein}


def _scored(modality):
    rng = np.random.default_rng(1)
    pool = _pools()[modality].reset_index(drop=True)
    score = np.exp(rng.normal(np.log(2e4), 0.35, len(pool)))   # under a decade: decade ticks alone label one
    shares = rng.dirichlet(np.ones(3), len(pool))
    return pool.assign(score=score, gc=rng.uniform(0.3, 0.7, len(pool)),
                       **{f"score_{g}": score * shares[:, i] for i, g in enumerate(("embed", "layer_00", "lm_head"))})


def _history(steps, epochs, start):
    step = np.arange(steps)
    return pd.DataFrame({"step": step, "epoch": step * epochs // steps, "loss": start - 0.01 * step})


def _demo_like_summary():
    """A grid summary with the demo preset's rows and sizes: the held-out loss and one informative probe."""
    rng = np.random.default_rng(2)
    cfg, rows = get_preset("demo"), []
    for cell in [*cells(cfg), type("C", (), {"name": "Composition", "multiple": 0})()]:
        kind = "baseline" if cell.name == "Composition" else "reference" if cell.name in ("Raw", "Full pool") else "pruned"
        size = {-1: 99_000, 0: 0}.get(cell.multiple, 990 * cell.multiple)
        for task, metric, lower, centre in (("held-out MLM", "loss", True, 1.2), ("TypeCls", "ACC", False, 40.0)):
            if task.startswith("held-out") and kind == "baseline":
                continue
            v = centre * (1 + 0.05 * rng.normal())
            rows.append({"method": cell.name, "kind": kind, "data_size": size, "task": task, "metric": metric,
                         "section": "heldout" if task.startswith("held") else "downstream", "primary": True,
                         "lower_is_better": lower, "value": v, "std": 0.02 * v, "seeds": 3, "lo": 0.97 * v,
                         "hi": 1.03 * v, "gate": "informative", "entropy": 1.38 if task.startswith("held") else np.nan})
    return pd.DataFrame(rows)


def _figures():
    from corelib.selection import cci, random, strata_table, top_k

    scored = _scored("rna")
    s = scored["score"].to_numpy()
    table = strata_table(s, cci(s, 24, hard_cutoff=0.05, strata=10, seed=0), hard_cutoff=0.05, strata=10)
    coresets = {"Random": random(len(s), 24, seed=0), "Top I": top_k(s, 24), "CCI": cci(s, 24, seed=0)}
    demo = _demo_like_summary()
    names = [c.name for c in cells(get_preset("smoke"))]
    return {
        "pool_lengths": F.plot_pool_overview(_pools(), "length"),
        "pool_families": F.plot_pool_overview(_pools(), "family"),
        "reference_loss": F.plot_loss_curves({"rna": _history(40, 4, 3.2), "protein": _history(40, 4, 3.5)}),
        "score_panels_rna": F.plot_score_panels(scored, "rna"),
        "score_panels_protein": F.plot_score_panels(_scored("protein"), "protein"),
        "agreement": F.plot_agreement({"rna": (s, s * 1.1, "w/o ft", "ft"), "protein": (s, s ** 1.01, "w/o ft", "ft")},
                                     identity=True),
        "cci_strata": F.plot_cci_strata(s, table, 0.05, 10, "rna"),
        "coresets": F.plot_coreset_distributions(scored, coresets, properties=("score", "length", "gc")),
        "overlap": F.plot_overlap(pd.DataFrame(np.eye(3), index=list(coresets), columns=list(coresets))),
        "lines": F.plot_lines([1e-1, 1e-2, 1e-3], {"a": [5.0, 0.5, 0.05], "b": [4.0, 0.4, 0.03]}, "eps", "error", "t",
                              logx=True, logy=True),
        "scatter": F.plot_scatter(np.arange(10.0), np.arange(10.0) + 0.1, "predicted", "actual", "t"),
        "loss_panels": F.plot_loss_panels({m: {n: _history(64 if n == "Full pool" else 8, 4, 3.2) for n in names[1:]}
                                           for m in ("rna", "protein")}, {"rna": 1.38, "protein": 2.86}),
        "downstream": F.plot_downstream(demo, "rna, demo-like"),
        "pruning_curve": F.plot_pruning_curve(demo, "rna, demo-like", "steps"),
    }


@pytest.fixture(scope="module")
def drawn():
    figs = _figures()
    for fig in figs.values():
        fig.draw_without_rendering()
    yield figs
    plt.close("all")


def _hex(c) -> str:
    return mcolors.to_hex(c, keep_alpha=False).lower()


def _data_colours(ax):
    for line in ax.lines:
        yield from (line.get_color(), line.get_markerfacecolor(), line.get_markeredgecolor())
    for patch in ax.patches:
        if patch.get_facecolor()[3] > 0:
            yield patch.get_facecolor()
    for coll in ax.collections:
        if coll.get_array() is None:   # colour-mapped collections (heat maps) take a palette colormap instead
            yield from coll.get_facecolors()
            yield from coll.get_edgecolors()


FIGURES = ["pool_lengths", "pool_families", "reference_loss", "score_panels_rna", "score_panels_protein", "agreement",
           "cci_strata", "coresets", "overlap", "lines", "scatter", "loss_panels", "downstream", "pruning_curve"]


def test_every_figure_function_is_drawn_here(drawn):
    public = {n for n in dir(F) if n.startswith("plot_")}
    assert len(drawn) == len(FIGURES) and public <= {f"plot_{n}" for n in (
        "pool_overview", "loss_curves", "score_panels", "agreement", "cci_strata", "coreset_distributions", "overlap",
        "lines", "scatter", "loss_panels", "downstream", "pruning_curve")}, public


@pytest.mark.parametrize("name", FIGURES)
def test_figure_is_legible_and_takes_its_colours_from_the_palette(drawn, name):
    fig = drawn[name]
    assert legibility_problems(fig, 110) == [], name
    allowed = palette_colours() | {"#ffffff"}
    used = {_hex(c) for ax in fig.axes for c in _data_colours(ax) if not (isinstance(c, str) and c == "none")
            and mcolors.to_rgba(c)[3] > 0}
    assert used <= allowed, f"{name}: colours not from corelib.report.style: {sorted(used - allowed)}"


def _legend_entries(fig):
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            if isinstance(handle, Line2D):
                colour = handle.get_markerfacecolor() if handle.get_linestyle() in ("None", "none", "") else handle.get_color()
                yield text.get_text(), (_hex(colour), handle.get_marker(), handle.get_linestyle())
            elif isinstance(handle, Patch):
                yield text.get_text(), (_hex(handle.get_facecolor()), None, None)
            elif isinstance(handle, PathCollection):   # a scatter's entry: its colour and its marker's outline
                shape = tuple(np.round(handle.get_paths()[0].vertices, 2).ravel())
                yield text.get_text(), (_hex(handle.get_facecolors()[0]), shape, None)
            else:
                raise AssertionError(f"legend entry of an unexpected kind: {type(handle)}")


@pytest.mark.parametrize("name", ["pool_lengths", "pool_families", "score_panels_rna", "coresets", "loss_panels",
                                  "pruning_curve"])
def test_no_two_rows_of_a_figure_look_alike(drawn, name):
    entries = dict(_legend_entries(drawn[name]))
    looks = list(entries.values())
    assert entries and len(set(looks)) == len(looks), {k: v for k, v in entries.items() if looks.count(v) > 1}


def test_downstream_rows_are_named_on_the_axis_not_by_colour_alone(drawn):
    fig, summary = drawn["downstream"], _demo_like_summary()
    methods = list(dict.fromkeys(summary["method"]))
    first = fig.axes[0]
    labels = {round(t.get_position()[1]): t.get_text() for t in first.get_yticklabels()}
    assert sorted(labels.values()) == sorted(methods)                      # every row named, once
    assert [labels[k] for k in sorted(labels, reverse=True)] == methods   # top to bottom in the table's order
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == summary.groupby(["task", "metric"]).ngroups
    for ax in panels:                                                      # each point at its row, in its style
        for line in ax.lines:
            if line.get_marker() in ("None", None, "", "|", "_"):   # reference lines, error-bar caps
                continue
            name = labels[round(float(line.get_ydata()[0]))]
            assert (_hex(line.get_color()), line.get_marker()) == (method_style(name).colour.lower(),
                                                                   method_style(name).marker), name


def test_every_log_axis_is_labelled_and_has_enough_tick_labels(drawn):
    checked = 0
    for name, fig in drawn.items():
        for ax in fig.axes:
            for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
                if axis.get_scale() not in ("log", "symlog"):
                    continue
                checked += 1
                lo, hi = sorted(lim)
                labels = [t for t in axis.get_majorticklabels() + axis.get_minorticklabels()
                          if t.get_text() and lo <= (t.get_position()[0] if axis is ax.xaxis else t.get_position()[1]) <= hi]
                assert "log" in axis.get_label_text(), f"{name}: log axis without 'log' in its label"
                assert len(labels) >= 2, f"{name}: {axis.get_label_text()!r} has {len(labels)} tick labels"
    assert checked >= 5


def test_scores_within_one_decade_get_three_tick_labels(drawn):
    ax = drawn["agreement"].axes[0]
    for axis in (ax.xaxis, ax.yaxis):
        lo, hi = sorted(ax.get_xlim() if axis is ax.xaxis else ax.get_ylim())
        ticks = [v for v in axis.get_majorticklocs() if lo <= v <= hi]
        assert len(ticks) >= 3, ticks


def test_reference_lines_lie_inside_their_axes(drawn):
    found = 0
    for name in ("loss_panels", "pruning_curve"):
        for ax in drawn[name].axes:
            lo, hi = ax.get_ylim()
            for line in ax.lines:
                y = np.asarray(line.get_ydata(), dtype=float)
                if len(y) == 2 and list(line.get_xdata()) == [0, 1] and y[0] == y[1]:   # an axhline
                    found += 1
                    assert lo + 0.02 * (hi - lo) < y[0] < hi - 0.02 * (hi - lo), (name, line.get_label(), y[0], lo, hi)
    assert found >= 3


def test_pruning_curve_sets_rows_at_one_size_side_by_side(drawn):
    ax = drawn["pruning_curve"].axes[0]
    xs = [float(line.get_xdata()[0]) for line in ax.lines if line.get_linestyle() in ("None", "none")]
    near_budget = {round(x, 3) for x in xs if 700 < x < 1400}   # each row's marker (and its error bar's caps)
    assert len(near_budget) >= 7, near_budget


# ----------------------------------------------------------------------------- savefig's limits
def test_savefig_refuses_a_figure_wider_than_notebook_width(tmp_path, monkeypatch):
    monkeypatch.setenv("CORELIB_FIGURES", str(tmp_path))
    wide, _ = plt.subplots(figsize=(1.5 * MAX_WIDTH_PX / 110, 3))
    with pytest.raises(ValueError, match="px wide"):
        savefig(wide, "07_wide", "smoke")
    assert not list(tmp_path.iterdir())
    small, ax = plt.subplots(figsize=(5, 3))
    ax.set_title("tiny", fontsize=MIN_FONT_PT - 2)
    with pytest.raises(ValueError, match="pt"):
        savefig(small, "07_small", "smoke")
    ax.set_title("fine", fontsize=MIN_FONT_PT)
    path = savefig(small, "07_small", "smoke")
    assert path.name == "07_smoke_small.png" and Image.open(path).size[0] <= MAX_WIDTH_PX
    plt.close("all")


def test_committed_figures_fit_notebook_width_and_carry_their_preset():
    presets = "|".join(PRESETS)
    for path in sorted((ROOT / "figures").glob("*.png")):
        assert Image.open(path).size[0] <= MAX_WIDTH_PX, path.name
        assert re.match(rf"^\d\d_({presets})_", path.name), f"{path.name}: no preset in the name"


def test_loss_panels_place_a_truncated_arm_at_the_epochs_it_completed():
    """A *same steps* arm of 8 steps of 16 sequences over a set of 205 stops at 128 / 205 = 0.62 epochs, not at 1;
    a full arm of 4 epochs of 13 steps (12 batches of 16 and one of 13 each) ends at 4."""
    same = pd.DataFrame({"step": np.arange(8), "epoch": 0, "loss": 3.0, "sequences": 16})
    seqs = np.tile([16] * 12 + [205 - 16 * 12], 4)
    full = pd.DataFrame({"step": np.arange(52), "epoch": np.repeat(np.arange(4), 13), "loss": 3.0, "sequences": seqs})
    fig = F.plot_loss_panels({"rna": {"Random 10x (same steps)": same, "Random 10x": full}}, None,
                             {"rna": {"Random 10x (same steps)": 205, "Random 10x": 205}})
    ends = {line.get_label(): line.get_xdata()[-1] for line in fig.axes[0].lines}
    assert ends["Random 10x (same steps)"] == pytest.approx(128 / 205) and ends["Random 10x"] == pytest.approx(4.0)


def test_agreement_draws_y_equals_x_and_score_counts_tick_whole_sequences(drawn):
    for ax in drawn["agreement"].axes:
        (line,) = [ln for ln in ax.lines if ln.get_label() == "y = x"]
        np.testing.assert_array_equal(line.get_xdata(), line.get_ydata())
    hist = drawn["score_panels_rna"].axes[0]
    lo, hi = hist.get_ylim()
    ticks = [t for t in hist.get_yticks() if lo <= t <= hi]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
