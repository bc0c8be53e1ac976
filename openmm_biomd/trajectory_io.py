"""Writing generated frames as standard files (PDB topology, DCD with a time axis).

OpenMM's ``DCDFile`` records the time between frames in the DCD header, so
viewers and analysis tools see the right time axis.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def subset_topology(topology, atom_indices: np.ndarray):
    """OpenMM topology of only ``atom_indices`` (e.g. the modelled atoms)."""
    import mdtraj

    return mdtraj.Topology.from_openmm(topology).subset(np.asarray(atom_indices)).to_openmm()


def write_pdb(path: str | Path, topology, positions_nm: np.ndarray) -> None:
    """One frame ``[N, 3]`` nm as PDB."""
    from openmm import unit
    from openmm.app import PDBFile

    with open(path, "w") as f:
        PDBFile.writeFile(topology, np.asarray(positions_nm, dtype=np.float64) * unit.nanometer, f, keepIds=True)


def write_dcd(path: str | Path, topology, frames_nm: np.ndarray, frame_interval_ps: float, first_step: int = 0) -> None:
    """Frames ``[F, N, 3]`` nm as DCD whose header says they are ``frame_interval_ps`` apart."""
    from openmm import unit
    from openmm.app import DCDFile

    frames = np.ascontiguousarray(frames_nm, dtype=np.float64)
    with open(path, "wb") as f:
        dcd = DCDFile(f, topology, frame_interval_ps * unit.picosecond, firstStep=first_step, interval=1)
        for frame in frames:
            dcd.writeModel(frame * unit.nanometer)
