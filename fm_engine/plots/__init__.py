"""Pure plotting functions returning plotly figures."""

from fm_engine.plots.design import (
    compare_runs,
    element_frequency,
    pareto_front,
    recipe_heatmap,
    seed_vs_optimized,
    trajectory_figure,
)
from fm_engine.plots.ptable import element_position, ptable_heatmap

__all__ = [
    "compare_runs",
    "element_frequency",
    "element_position",
    "pareto_front",
    "ptable_heatmap",
    "recipe_heatmap",
    "seed_vs_optimized",
    "trajectory_figure",
]
