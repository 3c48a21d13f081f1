"""Selection layer (numpy and pandas only, never torch): Algorithm 1 and baselines, score files and
coreset folders, diagnostics.
"""
from corelib.selection.diagnostics import (
    clumping,
    composition,
    coreset_diagnostics,
    distribution_shift,
    jaccard,
    overlap_matrix,
    selector_profile,
    strata_table,
)
from corelib.selection.files import (
    SCORE_COLUMNS,
    read_coreset,
    read_scores,
    score_file,
    write_coreset,
    write_scores,
)
from corelib.selection.methods import (
    after_cutoff,
    as_scores,
    bottom_k,
    cci,
    cci_official,
    cluster_capped,
    length_matched,
    length_stratified,
    loss_band,
    random,
    resolve_budget,
    stratum_of,
    top_k,
    within_tokens,
)
from corelib.selection.registry import METHODS, REGISTRY, Method, get_method, score_sign, select_coreset, select_indices

__all__ = ['selector_profile', 'as_scores', 'resolve_budget', 'random', 'top_k', 'bottom_k', 'stratum_of', 'after_cutoff', 'cci', 'cci_official', 'loss_band', 'length_stratified', 'cluster_capped', 'strata_table', 'jaccard', 'overlap_matrix', 'clumping', 'composition', 'distribution_shift', 'coreset_diagnostics', 'SCORE_COLUMNS', 'write_scores', 'score_file', 'read_scores', 'write_coreset', 'read_coreset', 'METHODS', 'select_indices', 'length_matched', 'within_tokens', 'REGISTRY', 'Method', 'get_method',
           'score_sign', 'select_coreset']
