"""Influence layer: per-sample gradients, the diagonal Fisher (Eq. 9), self-influence (Eq. 11), exact
small-model tools (Appendix C) and the scoring stage.
"""
from corelib.influence import exact
from corelib.influence.fisher import diagonal_fisher, per_sample_gradient_matrix, self_influence
from corelib.influence.hooks import param_group
from corelib.influence.score_checks import diagnose
from corelib.influence.scoring import ensure_scores, run_scoring

__all__ = [
    "diagnose",
    "diagonal_fisher",
    "ensure_scores",
    "exact",
    "param_group",
    "per_sample_gradient_matrix",
    "run_scoring",
    "self_influence",
]
