"""Report layer: every figure and table of the notebooks, written through one helper."""
from corelib.report.figures import (
    plot_agreement,
    plot_cci_strata,
    plot_coreset_distributions,
    plot_downstream,
    plot_lines,
    plot_loss_curves,
    plot_loss_panels,
    plot_overlap,
    plot_pool_overview,
    plot_scatter,
    plot_score_panels,
)
from corelib.report.output import save_table, savefig
from corelib.report.tables import paper_results, save_paper_table

__all__ = [
    "paper_results",
    "plot_agreement",
    "plot_cci_strata",
    "plot_coreset_distributions",
    "plot_downstream",
    "plot_lines",
    "plot_loss_curves",
    "plot_loss_panels",
    "plot_overlap",
    "plot_pool_overview",
    "plot_scatter",
    "plot_score_panels",
    "save_paper_table",
    "save_table",
    "savefig",
]
