"""Inverse design: targets, constraints, composition- and latent-space optimisation, results."""

from fm_engine.inverse.composition import optimize_composition
from fm_engine.inverse.constraints import PRESET_DESCRIPTIONS, DesignConstraints, element_presets
from fm_engine.inverse.design import DesignConfig, DesignResult, replay, run_design
from fm_engine.inverse.latent import optimize_latent
from fm_engine.inverse.seeds import SeedConfig
from fm_engine.inverse.targets import Target

__all__ = [
    "PRESET_DESCRIPTIONS",
    "DesignConfig",
    "DesignConstraints",
    "DesignResult",
    "SeedConfig",
    "Target",
    "element_presets",
    "optimize_composition",
    "optimize_latent",
    "replay",
    "run_design",
]
