"""Checks of coordinate frames a user hands in: paths, starting frames, trajectories to analyse.

A frame is refused before MD starts from it or an energy is computed on it when

- it is *damaged*: a coordinate is not finite or lies beyond :data:`MAX_COORDINATE_NM`
  (a blown-up simulation written to disk, or a file cut short);
- it *does not fit the system*: one of the system's stiff bonds or constraints is
  stretched or squeezed far beyond thermal motion.  That is what a trajectory of
  another topology looks like, or of this one with its atoms in another order (same
  atom count, so no shape check notices), or a frame torn apart by a blow-up.

Only stiff terms count (constraints, and harmonic bonds with a force constant of at
least :data:`STIFF_BOND_K`): covalent bonds are 10⁵–10⁶ kJ/mol/nm², whereas harmonic
*restraints* a user adds (flat-bottom or not) are softer and may legitimately be
stretched along a dissociation path.

Units: nm, kJ/mol/nm².
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest |coordinate| an input frame may have, nm: beyond it a frame is taken for damaged (a blow-up without NaN).
MAX_COORDINATE_NM = 1.0e4

#: Harmonic bonds at least this stiff (kJ/mol/nm²) are covalent bonds a sound frame keeps near their length.
STIFF_BOND_K = 5.0e4

#: A stiff bond is broken when longer than ``STRETCH_FACTOR × length + STRETCH_SLACK_NM`` or shorter than
#: ``SQUEEZE_FACTOR × length``: at 300 K a covalent bond moves by ~0.005 nm, a gated generated frame by < 0.03 nm.
STRETCH_FACTOR, STRETCH_SLACK_NM, SQUEEZE_FACTOR = 1.5, 0.05, 0.5

#: Frames whose bond vectors are computed at once (bounds memory at ~24 bytes × frames × bonds).
_FRAMES_PER_CHUNK = 64


@dataclass(frozen=True)
class BrokenBond:
    """The first stiff bond found out of shape: in ``frame``, between system atoms ``atoms`` (0-based)."""

    frame: int
    atoms: tuple[int, int]
    length_nm: float
    reference_nm: float


def first_damaged_frame(frames_nm: np.ndarray) -> int | None:
    """Index of the first ``[..., N, 3]`` nm frame with a coordinate that is not finite or lies beyond
    :data:`MAX_COORDINATE_NM` (``frames_nm`` ``[T, N, 3]``); ``None`` when every frame is sound."""
    sound = np.all(np.isfinite(frames_nm) & (np.abs(frames_nm) < MAX_COORDINATE_NM), axis=(-2, -1))
    return None if sound.all() else int(np.argmin(sound))


def stiff_bonds(system: Any) -> tuple[np.ndarray, np.ndarray]:
    """The constraints and stiff harmonic bonds of an OpenMM ``system``: ``(pairs [B, 2] int, lengths [B] nm)``.

    Bonds of a ``HarmonicBondForce`` that uses periodic boundary conditions are
    left out (their length is a minimum-image one, which a frame alone does not give).
    """
    import openmm

    pairs, lengths = [], []
    for i in range(system.getNumConstraints()):
        a, b, length = system.getConstraintParameters(i)
        pairs.append((a, b))
        lengths.append(length.value_in_unit(openmm.unit.nanometer) if openmm.unit.is_quantity(length) else length)
    for force in system.getForces():
        if not isinstance(force, openmm.HarmonicBondForce) or force.usesPeriodicBoundaryConditions():
            continue
        for i in range(force.getNumBonds()):
            a, b, length, k = force.getBondParameters(i)
            if k.value_in_unit(openmm.unit.kilojoule_per_mole / openmm.unit.nanometer**2) >= STIFF_BOND_K:
                pairs.append((a, b))
                lengths.append(length.value_in_unit(openmm.unit.nanometer))
    return np.asarray(pairs, dtype=int).reshape(-1, 2), np.asarray(lengths, dtype=np.float64)


def first_broken_bond(frames_nm: np.ndarray, system: Any, atoms: np.ndarray | None = None,
                      box_nm: np.ndarray | None = None) -> BrokenBond | None:
    """The first stiff bond of ``system`` out of shape in ``frames_nm`` ``[T, N, 3]`` nm, or ``None``.

    ``atoms`` ``[N]``: the system atom each frame atom is (frames of a subset, e.g. a
    model's atoms; default: all, in order); bonds with an atom outside it are not
    checked.  ``box_nm`` ``[3, 3]`` or ``[T, 3, 3]`` nm (rows a, b, c, OpenMM's reduced
    form): bond vectors are taken to their minimum image, for trajectories wrapped atom
    by atom.
    """
    pairs, lengths = stiff_bonds(system)
    if atoms is not None:
        position = np.full(system.getNumParticles(), -1)
        position[np.asarray(atoms, dtype=int)] = np.arange(len(atoms))
        kept = (position[pairs] >= 0).all(axis=1)
        pairs, lengths, system_pairs = position[pairs[kept]], lengths[kept], pairs[kept]
    else:
        system_pairs = pairs
    if len(pairs) == 0:
        return None
    frames = np.asarray(frames_nm, dtype=np.float64)
    box = None if box_nm is None else np.asarray(box_nm, dtype=np.float64)
    if box is not None and box.ndim == 2:
        box = np.broadcast_to(box, (len(frames), 3, 3))
    for start in range(0, len(frames), _FRAMES_PER_CHUNK):
        chunk = frames[start:start + _FRAMES_PER_CHUNK]
        vectors = chunk[:, pairs[:, 1]] - chunk[:, pairs[:, 0]]  # [t, B, 3]
        if box is not None:
            vectors = minimum_image(vectors, box[start:start + _FRAMES_PER_CHUNK])
        distance = np.linalg.norm(vectors, axis=-1)  # [t, B]
        broken = (distance > STRETCH_FACTOR * lengths + STRETCH_SLACK_NM) | (distance < SQUEEZE_FACTOR * lengths)
        if broken.any():
            t, b = np.unravel_index(int(np.argmax(broken)), broken.shape)
            return BrokenBond(start + int(t), (int(system_pairs[b, 0]), int(system_pairs[b, 1])),
                              float(distance[t, b]), float(lengths[b]))
    return None


def check_frames_sound(frames_nm: np.ndarray, what: str) -> None:
    """Raise ``ValueError`` naming the first damaged frame (:func:`first_damaged_frame`) of ``frames_nm``
    ``[T, N, 3]`` nm, ``what`` saying whose frames they are."""
    damaged = first_damaged_frame(frames_nm)
    if damaged is not None:
        raise ValueError(f"frame {damaged} of the {what} holds coordinates that are not finite or lie beyond "
                         f"{MAX_COORDINATE_NM:g} nm (a damaged file or a blown-up simulation): give frames from "
                         "sound MD or a generated path")


#: two atoms closer than this (nm) lie on one spot: the shortest real distance, H–H in H₂, is 0.074 nm
OVERLAP_NM = 0.05


def check_no_overlaps(frame_nm: np.ndarray, what: str, min_nm: float = OVERLAP_NM) -> None:
    """Raise ``ValueError`` when two atoms of ``frame_nm`` ``[N, 3]`` nm lie within ``min_nm`` of each other (a
    structure with an atom's coordinates copied onto another's had been sampled from)."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(np.asarray(frame_nm, dtype=np.float64)).query_pairs(min_nm, output_type="ndarray")
    if len(pairs):
        a, b = (int(v) for v in pairs[0])
        d = float(np.linalg.norm(np.asarray(frame_nm)[a] - np.asarray(frame_nm)[b]))
        raise ValueError(f"the {what} puts atoms {a} and {b} (0-based) {d:.3f} nm apart, on one spot "
                         f"(< {min_nm:g} nm; {len(pairs)} such pair(s)): give a structure with every atom in its place")


def check_frames_fit(frames_nm: np.ndarray, system: Any, what: str = "path", atoms: np.ndarray | None = None,
                     box_nm: np.ndarray | None = None) -> None:
    """Raise ``ValueError`` naming the first damaged frame of ``frames_nm`` ``[T, N, 3]`` nm, or the first
    whose stiff bonds do not fit ``system`` (``atoms``, ``box_nm``: as :func:`first_broken_bond`)."""
    check_frames_sound(frames_nm, what)
    broken = first_broken_bond(frames_nm, system, atoms, box_nm)
    if broken is not None:
        a, b = broken.atoms
        raise ValueError(
            f"frame {broken.frame} of the {what} does not fit the system: atoms {a} and {b} (0-based), bonded at "
            f"{broken.reference_nm:.3f} nm, are {broken.length_nm:.3f} nm apart. The frames belong to another "
            "topology, or to this one with the atoms in another order, or the frame was torn apart by a blow-up: "
            "give frames of this system with its atoms in its order (the topology the trajectory was written with)"
        )


def minimum_image(d: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Minimum-image displacements as OpenMM reduces them (c, then b, then a) for reduced triclinic boxes.

    Parameters
    ----------
    d : ``[t, ..., 3]`` nm displacements
    box : ``[t, 3, 3]`` nm box vectors (rows)
    """
    shape = (box.shape[0],) + (1,) * (d.ndim - 2)
    for axis in (2, 1, 0):
        vec = box[:, axis].reshape(shape + (3,))  # [t, 1.., 3]
        shift = np.round(d[..., axis] / box[:, axis, axis].reshape(shape))  # [t, ...]
        d = d - shift[..., None] * vec
    return d
