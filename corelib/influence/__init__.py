"""Influence layer: per-sample gradients, the diagonal Fisher (Eq. 9), self-influence (Eq. 11), exact
small-model tools (Appendix C) and the scoring stage.
"""
from corelib.influence import exact
from corelib.influence.diagnostics import diagnose, write_diagnostics
from corelib.influence.fisher import (
    diagonal_fisher,
    per_sample_gradient_matrix,
    resolve_damping,
    self_influence,
)
from corelib.influence.hooks import (
    SCOPES,
    PerSampleGradients,
    only_requires_grad,
    param_group,
    scope_params,
)
from corelib.influence.rules import RULES, Rule, find_rule, rule_for
from corelib.influence.scoring import COMPAT, ensure_scores, iter_shards, run_scoring

__all__ = ['diagnose', 'write_diagnostics', 'SCOPES', 'scope_params', 'param_group', 'PerSampleGradients', 'Rule', 'RULES', 'find_rule', 'rule_for', 'only_requires_grad', 'diagonal_fisher', 'resolve_damping', 'self_influence', 'per_sample_gradient_matrix', 'exact', 'COMPAT', 'iter_shards', 'run_scoring', 'ensure_scores']
