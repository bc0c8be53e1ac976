"""Samplers: schedules, ODE/SDE solvers, window sampling, hierarchical rollouts, bond constraints, physics
steering."""

from .constraints import RigidBonds
from .hierarchical import HierarchicalSampler
from .schedules import SCHEDULES, WindowPlan, autoregressive_block, forecast, inpaint, interpolate, transition_path
from .solvers import SolverConfig, integrate
from .steering import GeometryPrior, SteeredModel, SteeringConfig
from .window import sample_window

__all__ = [
    "GeometryPrior", "HierarchicalSampler", "RigidBonds", "SCHEDULES", "SolverConfig", "SteeredModel", "SteeringConfig",
    "WindowPlan", "autoregressive_block", "forecast", "inpaint", "integrate", "interpolate", "sample_window",
    "transition_path",
]
