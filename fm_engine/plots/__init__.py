"""Pure plotting functions returning plotly figures."""

from fm_engine.plots.datasets import task_data_figure
from fm_engine.plots.design import (
    compare_runs,
    element_frequency,
    pareto_front,
    recipe_heatmap,
    seed_vs_optimized,
    trajectory_figure,
)
from fm_engine.plots.predictions import class_probabilities, predicted_curve
from fm_engine.plots.ptable import element_position, ptable_heatmap

__all__ = [
    "class_probabilities",
    "compare_runs",
    "element_frequency",
    "element_position",
    "pareto_front",
    "predicted_curve",
    "ptable_heatmap",
    "recipe_heatmap",
    "seed_vs_optimized",
    "task_data_figure",
    "trajectory_figure",
]
