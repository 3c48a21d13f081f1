"""The one visual language of every figure: a colour and a marker per method / arm (the grid's cells and the
selectors of notebook 03), per source of the pools and per modality, and the few neutral roles (the pool in
grey, reference lines). `corelib.report.figures` takes every colour from here; tests/test_style.py checks that
figures.py holds no colour of its own and that no two names share a colour and marker.

Within one arm the pruning-rate multiples are shades of the arm's hue (Random greys, Top I blues, CCI oranges)
with their own marker (1x o, 3x s, 10x D), so a bar chart without markers still tells every row apart.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Style:
    """A colour (hex) and a matplotlib marker."""

    colour: str
    marker: str = "o"
    hatch: str = ""   # bars: a source's stacked bar carries it, so it never reads as a method's flat colour


METHODS: dict[str, Style] = {
    # the pruning-rate curve: Random, Top I and CCI at 1x, 3x and 10x the budget
    "Random": Style("#4d4d4d", "o"),
    "Random 3x (same steps)": Style("#8c8c8c", "s"),
    "Random 10x (same steps)": Style("#bdbdbd", "D"),
    "Random 10x": Style("#9467bd", "X"),   # C2's 10x random set at the same epochs (the paper's protocol)
    "Top I": Style("#1f77b4", "o"),
    "Top I 3x (same steps)": Style("#5fa2dd", "s"),
    "Top I 10x (same steps)": Style("#a6cbe8", "D"),
    "CCI": Style("#ff7f0e", "o"),
    "CCI 3x (same steps)": Style("#fdae6b", "s"),
    "CCI 10x (same steps)": Style("#fdd7a8", "D"),
    # C3 and the score variants
    "Top I (w/o ft)": Style("#17becf", "v"),
    "CCI (w/o ft)": Style("#a6611a", "v"),
    # the residue budget (C1 and C3 with each set cut to the Random arm's residues): the arm's hue, marker ">" (without the fine-tune "<")
    "Top I (residues)": Style("#0b4f80", ">"),
    "CCI (residues)": Style("#c25a00", ">"),
    "Top I (w/o ft, residues)": Style("#0e8c99", "<"),
    "CCI (w/o ft, residues)": Style("#6f3d10", "<"),
    "Top I per token": Style("#393b79", "^"),
    "Loss top-k": Style("#2ca02c", "P"),
    # reference rows
    "Raw": Style("#d62728", "x"),
    "Full pool": Style("#000000", "*"),
    "Composition": Style("#bcbd22", "h"),
    # notebook 03's other selectors
    "bottom-k": Style("#7b4173", "<"),
    "loss bottom-k": Style("#98df8a", ">"),
    "length-stratified": Style("#8c564b", "p"),
    "length-matched": Style("#c49c94", "8"),
    "cluster-capped": Style("#637939", "d"),
}
ALIASES = {"Baseline": "Composition", "loss top-k": "Loss top-k",
           **{f"{arm} {m}x": f"{arm} {m}x (same steps)" for arm in ("Random", "Top I", "CCI") for m in (3, 10)
              if (arm, m) != ("Random", 10)}}
"""Other spellings of one method: the calibration's "Baseline" row, notebook 03's lower-case "loss top-k", and a
curve arm above 1x under the epochs protocol (a grid trains its curve under one protocol, so the two spellings
never meet in one figure; "Random 10x", C2's arm at the same epochs, has its own colour)."""

SOURCES: dict[str, Style] = {   # every source of the pools (data_manifests/*_demo.yaml and *_full.yaml)
    "BioMarKs": Style("#1b9e77", "o", "//"),
    "Rfam": Style("#d95f02", "s", ".."),
    "SILVA_LSU": Style("#7570b3", "^", "\\\\"),
    "SILVA_SSU": Style("#e7298a", "v", "xx"),
    "SwissProt_GO_CC": Style("#66a61e", "o", "//"),
    "UniProt_mmseqs2": Style("#e6ab02", "s", ".."),
}
MODALITIES: dict[str, Style] = {"rna": Style("#1b7837", "o"), "protein": Style("#762a83", "s")}

ROLES: dict[str, str] = {
    "pool": "#c8c8c8",        # the whole pool behind a coreset
    "picked": "#5a5a5a",      # "picked" in a legend whose rows carry their own colour
    "neutral": "#7f7f7f",     # bars and points whose colour means nothing (a single series)
    "points": "#3366aa",      # scatter of two score vectors
    "identity": "#7f7f7f",    # the y = x line
    "grid": "#9e9e9e",        # stratum edges
    "cutoff": "#d62728",      # CCI's hard cutoff
    "entropy": "#c51b7d",     # the unigram (residue-frequency) entropy line
    "edge": "#333333",        # bar edges, error bars
}
SERIES: tuple[Style, ...] = (Style("#332288", "o"), Style("#cc6677", "s"), Style("#117733", "^"),
                             Style("#882255", "D"), Style("#44aa99", "v"))
"""Unnamed series (notebook 01's check curves), in order."""
SEQUENTIAL, DIVERGING = "viridis", "vlag"   # heat maps: overlaps (0..1) and correlations (-1..1)


def method_style(name: str) -> Style:
    """The colour and marker of a method / arm / selector; an unknown name is an error naming this module."""
    key = ALIASES.get(name, name)
    if key not in METHODS:
        raise KeyError(f"method {name!r} has no style: add it to corelib/report/style.py (METHODS)")
    return METHODS[key]


def source_style(source: str) -> Style:
    """The colour and marker of a pool source (Rfam, SILVA_SSU, ...)."""
    if source not in SOURCES:
        raise KeyError(f"source {source!r} has no style: add it to corelib/report/style.py (SOURCES)")
    return SOURCES[source]


def palette_colours() -> set[str]:
    """Every colour the figures may use (lower-case hex), for the tests."""
    styles = [*METHODS.values(), *SOURCES.values(), *MODALITIES.values(), *SERIES]
    return {s.colour.lower() for s in styles} | {c.lower() for c in ROLES.values()}
