"""The generative propagator: OpenMM simulations advanced by gated generative jumps.

- :class:`GenerativePropagator` (``step``, ``jump``, checkpoints) and
  :class:`PropagatorCheckpointReporter`;
- :class:`PhysicsGate`, :class:`GateConfig`, :class:`EnergyReference`;
- :class:`HandBackConfig`;
- :func:`alternate` (alternating ML and MD);
- :class:`GenerativeJumpMove` (openmmtools), imported lazily from :mod:`.mcmc`.
"""

from .compatibility import TopologyMismatchError, check_compatibility
from .gate import EnergyReference, GateConfig, GateVerdict, PhysicsGate
from .handback import HandBackConfig
from .propagator import (
    GenerativePropagator,
    PropagatorCheckpointError,
    PropagatorCheckpointReporter,
    PropagatorStatistics,
)

__all__ = [
    "EnergyReference", "GateConfig", "GateVerdict", "GenerativePropagator", "HandBackConfig", "PhysicsGate",
    "PropagatorCheckpointError", "PropagatorCheckpointReporter", "PropagatorStatistics", "TopologyMismatchError",
    "check_compatibility",
]

#: Names served lazily from :mod:`.mcmc`, so importing the propagator does not import openmmtools.
_MCMC_NAMES = ("GenerativeJumpMove", "JumpMoveSettings", "ModelMismatchError", "UnsupportedSystemError")


def __getattr__(name: str):
    if name in _MCMC_NAMES:
        from . import mcmc

        return getattr(mcmc, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
