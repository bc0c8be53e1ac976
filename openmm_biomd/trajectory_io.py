"""Writing generated frames as standard files (PDB topology, DCD with a time axis).

OpenMM's ``DCDFile`` records the time between frames in the DCD header, so
viewers and analysis tools see the right time axis.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from biomd_core.io.dcd import dcd_cut_short, dcd_layout, load_quietly
from biomd_core.io.frame_times import TIMED_FORMATS, spacing_from_times


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


#: what mdtraj raises for a file it cannot read (an empty PDB: IndexError; garbage: ValueError, KeyError, ...)
_MDTRAJ_READ_ERRORS = (OSError, ValueError, IndexError, KeyError, TypeError, AttributeError)

#: formats mdtraj reads coordinates from but that hold no topology
_COORDINATES_ONLY = (".dcd", ".xtc", ".trr", ".nc", ".ncdf", ".binpos", ".netcdf")


def read_trajectory(path: str | Path, what: str, topology: str | Path | None = None,
                    topology_flag: str | None = None):
    """``mdtraj.Trajectory`` of ``path`` (with ``topology`` for a coordinates-only format), or a ``ValueError``
    that names ``what`` the file was given as and what to do (mdtraj's own errors name neither: an empty PDB was an
    IndexError, a DCD without a topology "topology is loaded by filename extension")."""

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is an empty file: give a structure or trajectory file")
    if topology is None and path.suffix.lower() in _COORDINATES_ONLY:
        flag = f" with {topology_flag}" if topology_flag else ""
        raise ValueError(f"{what} {path} holds coordinates only: give the topology it was written with{flag} "
                         "(a PDB of the same atoms)")
    if topology is not None:  # (a bad one had been blamed on the trajectory)
        topology = read_topology(topology, f"the topology ({topology_flag or 'topology'}) of the {what}")
    try:
        traj = load_quietly(path, top=topology)
    except _MDTRAJ_READ_ERRORS as exc:
        raise ValueError(f"{what} {path} cannot be read ({type(exc).__name__}: {exc}): give a structure or trajectory "
                         "file mdtraj reads (PDB, DCD/XTC with a topology, ...)") from None
    if traj.n_frames == 0 or traj.n_atoms == 0:
        raise ValueError(f"{what} {path} holds no atoms or no frames")
    return traj


def read_topology(path: str | Path, what: str):
    """``mdtraj.Topology`` of the file ``path`` (a run's ``topology.pdb``), or a ``ValueError`` naming ``what``
    it is (an empty PDB had been mdtraj's bare IndexError)."""
    import mdtraj

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        topology = mdtraj.load_topology(str(path))
    except _MDTRAJ_READ_ERRORS as exc:
        topology, reason = None, f"{type(exc).__name__}: {exc}"
    else:
        reason = "it holds no atoms"
    if topology is None or topology.n_atoms == 0:
        raise ValueError(f"{what} {path} cannot be read as a topology ({reason}): restore it from a copy, or run "
                         "again what wrote it")
    return topology


def frame_spacing_ps(traj, path: str | Path) -> float | None:
    """Time between the frames of ``traj`` read from ``path`` (ps), where the file says it: a DCD's header, the
    frame times of the :data:`TIMED_FORMATS`; ``None`` when it does not (a PDB, mdtraj's placeholder step)."""
    from .data.md import dcd_frame_spacing_ps, read_dcd_header

    suffix = Path(path).suffix.lower()
    if suffix == ".dcd":
        return dcd_frame_spacing_ps(read_dcd_header(path))
    return spacing_from_times(traj.time) if suffix in TIMED_FORMATS else None


def check_dcd_whole(path: str | Path) -> None:
    """Refuse (``ValueError``) a DCD file given as input that is cut short (:func:`dcd_cut_short`)."""
    why = dcd_cut_short(path)
    if why:
        raise ValueError(f"{path} is cut short: {why}. Give the whole file (restore it from a copy, or rerun what "
                         "wrote it)")


_LOST_FRAMES = "Restore it from a copy, or start again in a new output directory (frames were lost)."


def truncate_dcd(path: str | Path, n_frames: int) -> None:
    """Cut a DCD file back to its first ``n_frames`` frames (for resuming a killed run).

    A missing file is fine when ``n_frames`` is 0.  Raises ``ValueError`` when
    the file holds fewer frames than that (frames were lost: do not append).
    """
    import struct

    path = Path(path)
    if not path.exists():
        if n_frames:
            raise ValueError(f"{path} is missing but should hold {n_frames} frames. {_LOST_FRAMES}")
        return
    with open(path, "r+b") as fh:
        header, frame, first_step, interval = dcd_layout(fh)
        size = header + n_frames * frame
        available = (path.stat().st_size - header) // frame
        if available < n_frames:
            raise ValueError(f"{path} holds {available} complete frames, fewer than the {n_frames} expected. "
                             f"{_LOST_FRAMES}")
        fh.truncate(size)
        fh.seek(8)
        fh.write(struct.pack("<i", n_frames))
        fh.seek(20)
        fh.write(struct.pack("<i", first_step + max(n_frames - 1, 0) * interval))
        fh.flush()
        os.fsync(fh.fileno())


def truncate_csv_after_step(path: str | Path, last_step: int) -> None:
    """Drop rows of a ``StateDataReporter`` CSV whose step (first column) is beyond ``last_step``."""
    path = Path(path)
    if not path.exists():
        return
    def keep(line: str) -> bool:
        if line.startswith("#"):
            return True
        try:
            return line.endswith("\n") and int(float(line.split(",")[0])) <= last_step
        except ValueError:  # a row cut short by a kill
            return False

    kept = [ln for ln in path.read_text().splitlines(keepends=True) if keep(ln)]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
