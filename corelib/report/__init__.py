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
    plot_pruning_curve,
    plot_scatter,
    plot_score_panels,
)
from corelib.report.output import FIGURE_NAME, output_name, output_path, save_table, savefig
from corelib.report.style import method_style, source_style
from corelib.report.tables import (
    experiment_long,
    paper_results,
    paper_style_table,
    save_experiment_tables,
    save_paper_table,
    size_label,
)

__all__ = ['FIGURE_NAME', 'output_name', 'output_path', 'method_style', 'source_style', 'savefig', 'save_table', 'plot_pool_overview', 'plot_loss_curves', 'plot_score_panels', 'plot_agreement', 'plot_cci_strata', 'plot_coreset_distributions', 'plot_overlap', 'plot_lines', 'plot_scatter', 'plot_loss_panels', 'plot_downstream', 'plot_pruning_curve', 'paper_results', 'paper_style_table', 'save_paper_table', 'size_label', 'experiment_long', 'save_experiment_tables']
