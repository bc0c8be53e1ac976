"""Storing the gate's equilibrium energy statistics with a model.

The physics gate compares each generated frame's relaxed intramolecular energy
with the same quantity over equilibrium MD (:class:`~.gate.EnergyReference`).
For shipped weights these statistics are measured once, on reference MD the
model never trained on, and written into the checkpoint's provenance under
``gate_reference[<energy-model key>]``; a propagator on the same system finds
them there instead of calibrating at start-up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from biomd_core.io import load_model, save_model

from .gate import EnergyReference, GateConfig, PhysicsGate
from .solute_system import build_solute_system


def gate_for(model, loaded, config: GateConfig = GateConfig()) -> tuple[PhysicsGate, np.ndarray]:
    """The gate a default propagator would build for a loaded system; also returns the modelled atoms."""
    positions = np.asarray(loaded.positions, dtype=np.float64)
    graph = model.featurize(loaded.topology, positions_nm=positions)
    solute = build_solute_system(loaded.system, graph.atom_indices)
    gate = PhysicsGate(solute, graph.bonds, graph.element_labels, positions[graph.atom_indices], config)
    return gate, graph.atom_indices


def attach_gate_reference(model_path: str | Path, system_name: str, md_dir: str | Path,
                          n_frames: int = 500) -> EnergyReference:
    """Measure the gate statistics on ``n_frames`` frames of a generate-data run and store them in the checkpoint."""
    from ..data.md import load_frames, read_metadata
    from ..data.systems import get_system

    model = load_model(model_path)
    gate, atoms = gate_for(model, get_system(system_name).load())
    replicas = len(read_metadata(md_dir)["frames_per_replica"])
    frames = np.concatenate([load_frames(md_dir, r)[:, atoms] for r in range(replicas)])
    picked = frames[np.linspace(0, len(frames) - 1, min(n_frames, len(frames))).astype(int)]
    reference = gate.calibrate(picked, f"{len(picked)} frames of reference MD ({Path(md_dir).name}), evenly spaced")
    model.provenance.setdefault("gate_reference", {})[reference.key] = reference.to_dict()
    save_model(model, model_path)
    return reference
