"""The BioMD network and the model object that carries it."""

from .biomd import BioMDModel, BoundModel
from .presets import PRESETS, get_preset
from .system import SystemBatch, batch_systems
from .velocity_net import VelocityNet, VocabSizes

__all__ = ["BioMDModel", "BoundModel", "PRESETS", "SystemBatch", "VelocityNet", "VocabSizes", "batch_systems", "get_preset"]
