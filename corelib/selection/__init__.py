"""Selection layer (numpy and pandas only, never torch): Algorithm 1 and baselines, score files and
coreset folders, diagnostics.
"""
from corelib.selection.diagnostics import coreset_diagnostics, jaccard, overlap_matrix, selector_profile, strata_table
from corelib.selection.files import read_scores, write_coreset
from corelib.selection.methods import bottom_k, cci, cci_official, cluster_capped, length_stratified, random, top_k
from corelib.selection.strategies import METHODS, select_coreset, select_indices

__all__ = [
    "METHODS",
    "bottom_k",
    "cci",
    "cci_official",
    "cluster_capped",
    "coreset_diagnostics",
    "jaccard",
    "length_stratified",
    "overlap_matrix",
    "random",
    "read_scores",
    "select_coreset",
    "select_indices",
    "selector_profile",
    "strata_table",
    "top_k",
    "write_coreset",
]
