"""Samplers: schedules, ODE/SDE solvers, window sampling, hierarchical rollouts."""

from .hierarchical import HierarchicalSampler
from .schedules import SCHEDULES, WindowPlan, autoregressive_block, forecast, inpaint, interpolate, transition_path
from .solvers import SolverConfig, integrate
from .window import sample_window

__all__ = [
    "HierarchicalSampler", "SCHEDULES", "SolverConfig", "WindowPlan", "autoregressive_block", "forecast",
    "inpaint", "integrate", "interpolate", "sample_window", "transition_path",
]
