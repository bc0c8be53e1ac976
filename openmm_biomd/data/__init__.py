"""Training data from physical MD: bundled systems, user inputs, plain MD and dissociation paths.

- :mod:`.systems` — :data:`BUNDLED_SYSTEMS` (``alanine-dipeptide``, ``host-guest``,
  ``t4l-pxylene``) built from openmmtools' shipped inputs; :func:`get_system`.
- :mod:`.inputs` — :func:`load_inputs` for Amber, OpenMM XML, PDB + force field, GROMACS.
- :mod:`.md` — :func:`generate_md`: seeded replicas written in DCD chunks with
  checkpoints, resumable after a kill; :func:`load_frames` / :func:`iter_replica_trajectories`.
- :mod:`.metadynamics` — :func:`generate_dissociation`: well-tempered metadynamics
  on the ligand–pocket centroid distance, stopped once the ligand has left.
- :mod:`.tables` — :func:`~.tables.write_csv` / :func:`~.tables.read_csv`: the small CSV tables (CV rows,
  profiles) every command writes, read back with their damage named.

Everything returns or reads nm, ps, K, kJ/mol.
"""

from .inputs import load_input_files, load_inputs
from .md import (
    MDBlewUpError,
    MDSettings,
    RunMismatchError,
    generate_md,
    iter_replica_trajectories,
    load_frames,
    load_trajectory,
    parse_time_ps,
    read_metadata,
    replica_seed,
    resume_md,
    select_platform,
)
from .metadynamics import DissociationSettings, generate_dissociation
from .systems import BUNDLED_SYSTEMS, BundledSystem, LoadedSystem, get_system

__all__ = [
    "BUNDLED_SYSTEMS",
    "BundledSystem",
    "DissociationSettings",
    "LoadedSystem",
    "MDBlewUpError",
    "MDSettings",
    "RunMismatchError",
    "generate_dissociation",
    "generate_md",
    "get_system",
    "iter_replica_trajectories",
    "load_frames",
    "load_input_files",
    "load_inputs",
    "load_trajectory",
    "parse_time_ps",
    "read_metadata",
    "replica_seed",
    "resume_md",
    "select_platform",
]
