"""Training: windows and tasks from trajectories, the objective, the trainer."""

from .objective import flow_matching_loss
from .trainer import Trainer
from .windows import TrajectorySet, WindowSampler

__all__ = ["Trainer", "TrajectorySet", "WindowSampler", "flow_matching_loss"]
