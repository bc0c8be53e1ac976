"""Single source of the package version (read by pyproject and checkpoints)."""

__version__ = "0.1.0"
