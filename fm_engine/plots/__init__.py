"""Pure plotting functions returning plotly figures."""

from fm_engine.plots.calibration import calibration_figure
from fm_engine.plots.datasets import task_data_figure
from fm_engine.plots.design import (
    compare_runs,
    element_frequency,
    pareto_front,
    recipe_heatmap,
    seed_vs_optimized,
    trajectory_figure,
)
from fm_engine.plots.predictions import class_probabilities, predicted_curve, predictions_with_error_bars
from fm_engine.plots.ptable import element_position, ptable_heatmap
from fm_engine.plots.rehearsal import forgetting_figure
from fm_engine.plots.scaling import scaling_figure
from fm_engine.plots.training import loss_figure, metric_figure

__all__ = [
    "calibration_figure",
    "class_probabilities",
    "compare_runs",
    "element_frequency",
    "element_position",
    "forgetting_figure",
    "loss_figure",
    "metric_figure",
    "pareto_front",
    "predicted_curve",
    "predictions_with_error_bars",
    "ptable_heatmap",
    "recipe_heatmap",
    "scaling_figure",
    "seed_vs_optimized",
    "task_data_figure",
    "trajectory_figure",
]
