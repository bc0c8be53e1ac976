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
