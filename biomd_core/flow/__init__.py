"""Flow matching with noise-as-masking: spaces, noising, losses, augmentation."""

from .matching import clean_estimate, interpolate, sample_tau, velocity_loss
from .space import AbsoluteSpace, IdentitySpace, RelativeSpace, centroid, make_space

__all__ = [
    "AbsoluteSpace", "IdentitySpace", "RelativeSpace", "centroid", "make_space",
    "clean_estimate", "interpolate", "sample_tau", "velocity_loss",
]
