"""Reading and writing models (checkpoints)."""

from .checkpoint import CheckpointError, load_model, save_model

__all__ = ["CheckpointError", "load_model", "save_model"]
